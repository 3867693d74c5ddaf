"""`gitsail get externalsecrets|secretstores|clustersecretstores` and
`gitsail reconcile externalsecret NAME` (ESO's force-sync annotation, then wait).

The tables show what ESO's printer columns show (store, refresh interval, Ready and its
reason and message); ``-o json|yaml`` prints the objects as stored. A reconcile writes
``metadata.annotations.force-sync=<unix time>`` (what ESO's users write with kubectl) and
waits until ``status.syncedResourceVersion`` records that annotation, or until the timeout,
printing the ``Ready`` message either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import typer
from rich.text import Text

from gitsail.cli.app import ContextOption, KubeconfigOption
from gitsail.cli.flux import (
    AllNamespacesOption,
    _guarded,
    _kube,
    _print_rows,
)
from gitsail.cli.output import (
    Format,
    OutputOption,
    console,
    emit,
    err_console,
    fail,
)
from gitsail.kinds.externalsecret import ANNOTATION_FORCE_SYNC, synced_resource_version
from gitsail.model import Obj

__all__ = ["register"]

API = "external-secrets.io/v1"
NamespaceOption = typer.Option("default", "--namespace", "-n", help="namespace of the objects")


def _ready(obj: Obj) -> tuple[str, str, str]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return (
                str(c.get("status") or ""),
                str(c.get("reason") or ""),
                str(c.get("message") or ""),
            )
    return "Unknown", "", ""


def _row(kind: str, obj: Obj) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ready, reason, message = _ready(obj)
    row = {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "ready": ready,
        "status": reason,
        "message": message,
    }
    if kind == "ExternalSecret":
        ref = spec.get("secretStoreRef") or {}
        row["store"] = f"{ref.get('kind') or 'SecretStore'}/{ref.get('name') or ''}"
        row["refresh"] = str(spec.get("refreshInterval") or "1h")
        row["refreshed"] = str((obj.get("status") or {}).get("refreshTime") or "")
    else:
        provider = spec.get("provider") or {}
        row["provider"] = next(iter(provider), "") if isinstance(provider, dict) else ""
    return row


def _get(kind: str, name: str | None, namespace: str, all_namespaces: bool, output: Format,
         kubeconfig: str | None, context: str | None) -> None:  # fmt: skip
    cluster = kind.startswith("Cluster")

    async def main() -> list[Obj]:
        async with _kube(kubeconfig, context) as kube:
            if name is not None and (cluster or not all_namespaces):
                obj = await kube.get(API, kind, name, None if cluster else namespace)
                if obj is None:
                    raise fail(
                        f"{kind} {name} not found"
                        + ("" if cluster else f" in namespace {namespace}")
                    )
                return [obj]
            objs = await kube.list(API, kind, None if (cluster or all_namespaces) else namespace)
            if name is not None:
                objs = [o for o in objs if (o.get("metadata") or {}).get("name") == name]
            return sorted(
                objs, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])
            )

    objs: list[Obj] = _guarded(main())
    if output is not Format.table:
        emit(objs[0] if name is not None and len(objs) == 1 else objs, output)
        return
    if not objs:
        err_console.print(f"no {kind} objects found", highlight=False)
        return
    detail = ("store", "refresh", "refreshed") if kind == "ExternalSecret" else ("provider",)
    columns: tuple[str, ...] = ("name", *detail, "ready", "status", "message")
    if all_namespaces and not cluster:
        columns = ("namespace", *columns)
    _print_rows([_row(kind, o) for o in objs], columns)


def _get_command(kind: str) -> Callable[..., None]:
    def command(
        name: str | None = typer.Argument(None, help=f"one {kind} (default: all)"),
        namespace: str = NamespaceOption,
        all_namespaces: bool = AllNamespacesOption,
        output: Format = OutputOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        _get(kind, name, namespace, all_namespaces, output, kubeconfig, context)

    command.__doc__ = f"Show {kind} objects: Ready, its reason and message."
    return command


def reconcile_externalsecret(
    name: str = typer.Argument(..., help="the ExternalSecret"),
    namespace: str = NamespaceOption,
    timeout: float = typer.Option(60.0, "--timeout", help="seconds to wait for the sync"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Sync an ExternalSecret now, past the cache (ESO's force-sync annotation), and wait."""

    async def main() -> tuple[bool, str]:
        async with _kube(kubeconfig, context) as kube:
            stamp = str(int(time.time() * 1000))
            try:
                obj = await kube.merge_patch(
                    API, "ExternalSecret", name,
                    {"metadata": {"annotations": {ANNOTATION_FORCE_SYNC: stamp}}},
                    namespace=namespace,
                )  # fmt: skip
            except Exception as exc:
                raise fail(f"ExternalSecret {name} in {namespace}: {exc}") from None
            want = synced_resource_version(obj)
            deadline = time.monotonic() + timeout
            while True:
                live = await kube.get(API, "ExternalSecret", name, namespace) or {}
                status = live.get("status") or {}
                _, _, message = _ready(live)
                if status.get("syncedResourceVersion") == want:
                    return True, message
                if time.monotonic() > deadline:
                    return False, message or "no status yet (is the controller running?)"
                await asyncio.sleep(0.5)

    ok, message = _guarded(main())
    if not ok:
        raise fail(f"ExternalSecret {namespace}/{name} not synced within {timeout:.0f}s: {message}")
    console.print(
        Text(f"✔ ExternalSecret {namespace}/{name}: {message}"), highlight=False, soft_wrap=True
    )


def register(get_app: typer.Typer, reconcile_app: typer.Typer) -> None:
    """Add the External Secrets verbs to ``gitsail get`` and ``gitsail reconcile``."""
    for plural, kind, aliases in (
        ("externalsecrets", "ExternalSecret", ("externalsecret", "es")),
        ("secretstores", "SecretStore", ("secretstore", "ss")),
        ("clustersecretstores", "ClusterSecretStore", ("clustersecretstore", "css")),
        ("clusterexternalsecrets", "ClusterExternalSecret", ("ces",)),
    ):
        get_app.command(plural)(_get_command(kind))
        for alias in aliases:
            get_app.command(alias, hidden=True)(_get_command(kind))
    reconcile_app.command("externalsecret")(reconcile_externalsecret)
    reconcile_app.command("es", hidden=True)(reconcile_externalsecret)
