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

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gitsail.cli.app import ContextOption, KubeconfigOption, run
from gitsail.cli.flux import (
    FluxKind,
    NamespaceOption,
    TimeoutOption,
    _ready,
    _reconcile,
    _resume_command,
    _suspend_command,
)
from gitsail.cli.output import Format, OutputOption, console, emit, err_console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj

__all__ = ["IMAGE_KINDS", "register"]

_API = "image.toolkit.fluxcd.io/v1"
AllNamespacesOption = typer.Option(
    False, "--all-namespaces", "-A", help="list the objects of every namespace"
)


# The same small helpers as the Flux verbs' (kept here so this module depends only on
# ``gitsail.cli.flux``'s kind table and reconcile/suspend/resume verbs).
@asynccontextmanager
async def _kube(kubeconfig: str | None, context: str | None) -> AsyncIterator[Kube]:
    path = kubeconfig.split(":")[0] if kubeconfig else None
    async with Kube(await load_kubeconfig(path, context)) as kube:
        yield kube


def _guarded(coro: Any) -> Any:
    try:
        return run(coro)
    except KubeError as exc:
        raise fail(str(exc)) from None


def _print_rows(rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """A table like flux's: plain columns; never cut or wrapped when piped."""
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.upper(), no_wrap=True)
    for row in rows:
        table.add_row(*(Text(row[c]) for c in columns))  # tenant text: never markup
    out = console if console.is_terminal else Console(width=100_000, soft_wrap=True)
    out.print(table)


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
        async with _kube(kubeconfig, context) as kube:
            for flux in kinds:
                if name is not None and not all_namespaces:
                    obj = await kube.get(flux.api_version, flux.kind, name, namespace)
                    if obj is None:
                        raise fail(f"{flux.kind} {name} not found in namespace {namespace}")
                    found.append((flux, [obj]))
                    continue
                objs = await kube.list(
                    flux.api_version, flux.kind, None if all_namespaces else namespace
                )
                if name is not None:
                    objs = [o for o in objs if (o.get("metadata") or {}).get("name") == name]
                objs.sort(
                    key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])
                )
                found.append((flux, objs))
        return found

    found: list[tuple[FluxKind, list[Obj]]] = _guarded(main())
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
        _print_rows([_columns(flux, o) for o in objs], columns)


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
    def command(
        name: str = typer.Argument(..., help=f"the {flux.kind}"),
        namespace: str = NamespaceOption,
        timeout: float = TimeoutOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        async def main() -> None:
            async with _kube(kubeconfig, context) as kube:
                await _reconcile(kube, flux, name, namespace, timeout)

        _guarded(main())

    command.__doc__ = f"Reconcile the {flux.kind} now (reconcile.fluxcd.io/requestedAt); wait."
    return command


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
