"""Flux-shaped verbs for the image automation kinds, as the ``flux`` CLI has them:

    gitsail get images repository|policy|update|all [NAME] [-n NS] [-A] [-o json|yaml]
    gitsail reconcile image repository|update NAME [-n NS] [--timeout S]
    gitsail suspend image repository|update NAME / gitsail resume image repository|update NAME

``get`` prints flux's columns (a repository's last scan and tag count, a policy's latest
image, an automation's last run and pushed commit) with Ready and its message; ``-o``
prints the objects. ``reconcile`` writes ``reconcile.fluxcd.io/requestedAt`` and waits for
the controller to handle it, as for the other Flux kinds (``gitsail.cli.flux``).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from gitsail.cli.app import ContextOption, KubeconfigOption
from gitsail.cli.flux import (
    FluxKind,
    NamespaceOption,
    _ready,
    _resume_command,
    _suspend_command,
    plain_reconcile_command,
)
from gitsail.cli.kindget import (
    AllNamespacesOption,
    guarded,
    open_kube,
    print_rows,
    read_objects,
)
from gitsail.cli.output import Format, OutputOption, emit, err_console
from gitsail.model import Obj

__all__ = ["IMAGE_KINDS", "register"]

_API = "image.toolkit.fluxcd.io/v1"

REPOSITORY = FluxKind("ImageRepository", _API, "image repository", "scanned")
POLICY = FluxKind("ImagePolicy", _API, "image policy", "resolved")
UPDATE = FluxKind("ImageUpdateAutomation", _API, "image update", "ran")
IMAGE_KINDS = {"repository": REPOSITORY, "policy": POLICY, "update": UPDATE}


def _columns(flux: FluxKind, obj: Obj) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready, message = _ready(obj)
    row = {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "suspended": "True" if (obj.get("spec") or {}).get("suspend") is True else "False",
        "ready": ready,
        "message": message,
    }
    if flux is REPOSITORY:
        scan = status.get("lastScanResult") or {}
        row["last scan"] = str(scan.get("scanTime") or "")
        row["tags"] = str(scan.get("tagCount") if scan.get("tagCount") is not None else "")
    elif flux is POLICY:
        latest = status.get("latestRef") or {}
        row["latest image"] = f"{latest['name']}:{latest['tag']}" if latest.get("tag") else ""
    else:
        row["last run"] = str(status.get("lastAutomationRunTime") or "")
        row["last push"] = str(status.get("lastPushCommit") or "")[:12]
    return row


_COLUMNS = {
    "ImageRepository": ("name", "last scan", "tags", "suspended", "ready", "message"),
    "ImagePolicy": ("name", "latest image", "ready", "message"),
    "ImageUpdateAutomation": ("name", "last run", "last push", "suspended", "ready", "message"),
}


def _list(
    kinds: list[FluxKind],
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: Format,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    async def main() -> list[tuple[FluxKind, list[Obj]]]:
        found: list[tuple[FluxKind, list[Obj]]] = []
        async with open_kube(kubeconfig, context) as kube:
            for flux in kinds:
                objs = await read_objects(
                    kube, flux.api_version, flux.kind, name, namespace,
                    all_namespaces=all_namespaces,
                )  # fmt: skip
                found.append((flux, objs))
        return found

    found: list[tuple[FluxKind, list[Obj]]] = guarded(main())
    if output is not Format.table:
        everything = [o for _, objs in found for o in objs]
        single = name is not None and len(kinds) == 1 and len(everything) == 1
        emit(everything[0] if single else everything, output)
        return
    for flux, objs in found:
        if not objs:
            where = "any namespace" if all_namespaces else f"namespace {namespace}"
            err_console.print(f"no {flux.kind} objects found in {where}", highlight=False)
            continue
        columns = _COLUMNS[flux.kind]
        if all_namespaces:
            columns = ("namespace", *columns)
        print_rows([_columns(flux, o) for o in objs], columns)


def _get_command(kinds: list[FluxKind]) -> Callable[..., None]:
    def command(
        name: str | None = typer.Argument(None, help="one object (default: all)"),
        namespace: str = NamespaceOption,
        all_namespaces: bool = AllNamespacesOption,
        output: Format = OutputOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        _list(kinds, name, namespace, all_namespaces, output, kubeconfig, context)

    shown = ", ".join(k.kind for k in kinds)
    command.__doc__ = f"Show {shown} objects with their status."
    return command


def _reconcile_command(flux: FluxKind) -> Callable[..., None]:
    return plain_reconcile_command(
        flux, f"Reconcile the {flux.kind} now (reconcile.fluxcd.io/requestedAt); wait."
    )


def register(
    get_app: typer.Typer,
    reconcile_app: typer.Typer,
    suspend_app: typer.Typer | None = None,
    resume_app: typer.Typer | None = None,
) -> None:
    """Add ``images``/``image`` to ``gitsail get``, ``reconcile``, ``suspend``, ``resume``."""
    images = typer.Typer(help="Show Flux image automation objects.")
    for noun, flux in IMAGE_KINDS.items():
        images.command(noun)(_get_command([flux]))
    images.command("all")(_get_command(list(IMAGE_KINDS.values())))
    get_app.add_typer(images, name="images")
    reconcile = typer.Typer(help="Reconcile a Flux image automation object.")
    for noun in ("repository", "update"):
        reconcile.command(noun)(_reconcile_command(IMAGE_KINDS[noun]))
    reconcile_app.add_typer(reconcile, name="image")
    for app, resume in ((suspend_app, False), (resume_app, True)):
        if app is None:
            continue
        sub = typer.Typer(help=f"{'Resume' if resume else 'Suspend'} a Flux image object.")
        for noun in ("repository", "update"):
            make = _resume_command if resume else _suspend_command
            sub.command(noun)(make(IMAGE_KINDS[noun]))
        app.add_typer(sub, name="image")
