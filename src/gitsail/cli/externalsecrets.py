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
from gitsail.cli.kindget import get_command, guarded, open_kube, read_objects, show_objects
from gitsail.cli.output import (
    Format,
    console,
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
        async with open_kube(kubeconfig, context) as kube:
            return await read_objects(
                kube, API, kind, name, namespace,
                all_namespaces=all_namespaces, cluster_scoped=cluster,
            )  # fmt: skip

    detail = ("store", "refresh", "refreshed") if kind == "ExternalSecret" else ("provider",)
    show_objects(
        guarded(main()),
        one=name is not None,
        output=output,
        rows=lambda o: _row(kind, o),
        columns=("name", *detail, "ready", "status", "message"),
        with_namespace=all_namespaces and not cluster,
        empty=f"no {kind} objects found",
    )


def _get_command(kind: str) -> Callable[..., None]:
    return get_command(
        kind,
        f"Show {kind} objects: Ready, its reason and message.",
        lambda *args: _get(kind, *args),
        NamespaceOption,
    )


def reconcile_externalsecret(
    name: str = typer.Argument(..., help="the ExternalSecret"),
    namespace: str = NamespaceOption,
    timeout: float = typer.Option(60.0, "--timeout", help="seconds to wait for the sync"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Sync an ExternalSecret now, past the cache (ESO's force-sync annotation), and wait."""

    async def main() -> tuple[bool, str]:
        async with open_kube(kubeconfig, context) as kube:
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

    ok, message = guarded(main())
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
