"""`gitsail app …`: Argo CD Applications from the command line, run in-process.

Every command loads the Application from the cluster and runs the same engine the
controller runs (``gitsail.app.engine``). Read commands take ``-o json|yaml``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer
from rich.live import Live
from rich.table import Table

from gitsail.app.engine import AppEngine, Comparison, ComparisonError
from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.kinds.argo_application import App, AppSpecError
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj, ResourceKey
from gitsail.policy import Policy, PolicyError
from gitsail.source import GitSource, HelmRepoSource, redact_url
from gitsail.sync.engine import ResourceResult

app = typer.Typer(help="Argo CD Applications: list, get, diff, sync, wait, history, rollback.")

KubeconfigOption = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file")
ContextOption = typer.Option(None, "--context", help="kubeconfig context")
AppNamespaceOption = typer.Option(
    "argocd", "--app-namespace", "-N", help="namespace of the Application objects"
)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@asynccontextmanager
async def engine(
    kubeconfig: str | None, context: str | None, namespace: str
) -> AsyncIterator[AppEngine]:
    path = kubeconfig.split(":")[0] if kubeconfig else None
    config = await load_kubeconfig(path, context)
    try:
        policy = Policy.from_env()  # GITSAIL_ALLOW_FILE_URLS=true for local repositories
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    async with Kube(config) as kube:
        yield AppEngine(
            kube,
            control_namespace=namespace,
            git=GitSource(policy=policy),
            helm_repos=HelmRepoSource(policy=policy),
        )


async def _load(eng: AppEngine, name: str) -> App:
    obj = await eng.get_application(name)
    if obj is None:
        raise fail(f"application {name} not found in namespace {eng.control_namespace}")
    try:
        return App.from_application(obj)
    except AppSpecError as exc:
        raise fail(str(exc)) from exc


def _summary(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    source = spec.get("source") or {}
    return {
        "name": obj["metadata"]["name"],
        "project": spec.get("project", ""),
        "sync": (status.get("sync") or {}).get("status", "Unknown"),
        "health": (status.get("health") or {}).get("status", "Unknown"),
        "revision": ((status.get("sync") or {}).get("revision") or "")[:12],
        "repo": redact_url(str(source.get("repoURL", ""))),
        "path": source.get("path") or source.get("chart", ""),
        "destination": (spec.get("destination") or {}).get("namespace", ""),
        "operation": (status.get("operationState") or {}).get("phase", ""),
    }


@app.command("list")
def list_apps(
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """List Applications with their sync and health status."""

    async def main() -> list[Obj]:
        async with engine(kubeconfig, context, namespace) as eng:
            return await eng.list_applications()

    apps = _guard(lambda: run(main()))
    if output is Format.table:
        emit(
            [_summary(a) for a in apps],
            output,
            columns=("name", "sync", "health", "revision", "repo", "path", "destination"),
        )
    else:
        emit(apps, output)


@app.command()
def get(
    name: str,
    refresh: bool = typer.Option(False, "--refresh", help="compare with Git and the cluster first"),
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Show an Application: source, status and its resources."""

    async def main() -> Obj:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            if refresh:
                await eng.refresh(current)
            obj = await eng.get_application(name)
            assert obj is not None
            return obj

    obj = _guard(lambda: run(main()))
    if output is not Format.table:
        emit(obj, output)
        return
    summary = _summary(obj)
    for key in ("name", "project", "repo", "path", "destination", "sync", "health", "revision"):
        console.print(f"[bold]{key.capitalize():<12}[/] {summary[key]}", highlight=False)
    status = obj.get("status") or {}
    for condition in status.get("conditions") or []:
        console.print(
            f"[red]{condition.get('type')}[/]: {condition.get('message')}", highlight=False
        )
    op = status.get("operationState") or {}
    if op:
        console.print(
            f"[bold]{'Operation':<12}[/] {op.get('phase')}: {op.get('message')}", highlight=False
        )
    rows = [
        {
            "kind": r.get("kind"),
            "namespace": r.get("namespace", ""),
            "name": r.get("name"),
            "status": r.get("status"),
            "health": (r.get("health") or {}).get("status", ""),
            "prune": "requires pruning" if r.get("requiresPruning") else "",
        }
        for r in status.get("resources") or []
    ]
    if rows:
        emit(rows, Format.table, columns=("kind", "namespace", "name", "status", "health", "prune"))


@app.command()
def diff(
    name: str,
    revision: str | None = typer.Option(None, "--revision", help="compare this revision instead"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Show what a sync would change. Exits 1 when there is a difference, 0 when in sync."""

    async def main() -> Comparison:
        async with engine(kubeconfig, context, namespace) as eng:
            return await eng.compare(await _load(eng, name), revision=revision)

    comparison = _guard(lambda: run(main()))
    changed = [d for d in comparison.diffs if d.status != "Synced"]
    for d in sorted(changed, key=lambda d: d.key):
        label = "to be pruned" if d.requires_pruning else ("missing" if d.missing else "changed")
        console.rule(f"{d.key} ({label})", style="yellow")
        sys.stdout.write(
            d.unified if d.unified.endswith("\n") or not d.unified else d.unified + "\n"
        )
    if changed:
        raise typer.Exit(1)
    console.print(f"{name} is in sync with {comparison.artifact.revision[:12]}")


def _parse_resource(spec: str) -> ResourceKey:
    """``GROUP:KIND:NAME`` or ``GROUP:KIND:NAMESPACE/NAME`` (as ``argocd app sync --resource``)."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise fail(f"--resource {spec!r}: use GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME")
    group, kind, rest = parts
    ns, _, obj_name = rest.rpartition("/")
    return ResourceKey(group, kind, ns, obj_name)


class _ProgressTable:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, ResourceKey], ResourceResult] = {}
        self.started = time.monotonic()

    def update(self, result: ResourceResult) -> None:
        self.rows[(result.sync_phase + result.hook_type, result.key)] = result

    def render(self) -> Table:
        table = Table(title=f"sync ({time.monotonic() - self.started:.1f}s)", header_style="bold")
        for col in ("phase", "kind", "namespace", "name", "status", "message"):
            table.add_column(col.upper())
        colors = {"Synced": "green", "Pruned": "yellow", "SyncFailed": "red", "PruneSkipped": "dim"}
        for result in self.rows.values():
            color = colors.get(result.status, "white")
            phase = result.sync_phase + (f"/{result.hook_type}" if result.hook_type else "")
            table.add_row(
                phase,
                result.key.kind,
                result.key.namespace,
                result.key.name,
                f"[{color}]{result.status}[/]",
                result.message[:80],
            )
        return table


@app.command()
def sync(
    name: str,
    prune: bool = typer.Option(False, "--prune", help="delete resources no longer in Git"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and show, change nothing"),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="allow pruning everything when the source renders nothing"
    ),
    revision: str | None = typer.Option(None, "--revision", help="sync this revision"),
    resource: list[str] = typer.Option(
        None, "--resource", help="only GROUP:KIND:NAME (repeatable); hooks are not run"
    ),
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Sync an Application now, showing each resource as it goes."""
    resources = [_parse_resource(r) for r in resource] if resource else None
    progress = _ProgressTable()

    async def main(live: Live | None) -> Any:
        def on_progress(result: ResourceResult) -> None:
            progress.update(result)
            if live is not None:
                live.update(progress.render())

        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            return await eng.sync(
                current,
                revision=revision,
                prune=prune,
                dry_run=dry_run,
                resources=resources,
                allow_empty=allow_empty,
                progress=on_progress,
            )

    if output is Format.table:
        with Live(progress.render(), console=console, refresh_per_second=8) as live:
            outcome = _guard(lambda: run(main(live)))
    else:
        outcome = _guard(lambda: run(main(None)))
    result = outcome.result
    if output is not Format.table:
        emit(
            {
                "phase": result.phase,
                "message": result.message,
                "revision": outcome.revision,
                "resources": [r.to_status() for r in result.resources],
            },
            output,
        )
    else:
        color = "green" if result.phase == "Succeeded" else "red"
        console.print(f"[{color}]{result.phase}[/]: {result.message}", highlight=False)
        if outcome.revision:
            console.print(f"revision {outcome.revision}")
    if result.phase != "Succeeded":
        raise typer.Exit(1)


@app.command()
def wait(
    name: str,
    sync_: bool = typer.Option(False, "--sync", help="wait until Synced"),
    health: bool = typer.Option(False, "--health", help="wait until Healthy"),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Wait until the Application is synced and/or healthy (both when neither is given)."""
    want_sync = sync_ or not health
    want_health = health or not sync_

    async def main() -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        async with engine(kubeconfig, context, namespace) as eng:
            last = ""
            while True:
                current = await _load(eng, name)
                comparison = await eng.refresh(current)
                if comparison is not None:
                    sync_ok = comparison.sync_status == "Synced"
                    health_ok = str(comparison.app_health) == "Healthy"
                    last = f"sync {comparison.sync_status}, health {comparison.app_health}"
                    if (sync_ok or not want_sync) and (health_ok or not want_health):
                        return True, last
                if time.monotonic() > deadline:
                    return False, last or "comparison failed"
                await asyncio.sleep(1.0)

    with console.status(f"waiting for {name}"):
        ok, state = _guard(lambda: run(main()))
    if not ok:
        raise fail(f"timed out after {timeout:.0f}s waiting for {name} ({state})")
    console.print(f"{name}: {state}")


@app.command()
def history(
    name: str,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """List the deployments recorded for an Application (newest last)."""

    async def main() -> list[dict[str, Any]]:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            return list((current.raw.get("status") or {}).get("history") or [])

    entries = _guard(lambda: run(main()))
    if output is not Format.table:
        emit(entries, output)
        return
    rows = [
        {
            "id": h.get("id"),
            "deployed": h.get("deployedAt"),
            "revision": str(h.get("revision", ""))[:12],
            "path": (h.get("source") or {}).get("path", ""),
            "by": (h.get("initiatedBy") or {}).get("username")
            or ("automated" if (h.get("initiatedBy") or {}).get("automated") else ""),
        }
        for h in entries
    ]
    emit(rows, Format.table, columns=("id", "deployed", "revision", "path", "by"))


@app.command()
def rollback(
    name: str,
    history_id: int = typer.Argument(
        ..., help="history ID to redeploy (see `gitsail app history`)"
    ),
    prune: bool = typer.Option(False, "--prune", help="delete resources not in that revision"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Redeploy a previous history entry (refused while automated sync is on)."""

    async def main() -> Any:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            if current.automated is not None:
                raise fail(
                    f"rollback cannot be initiated when auto-sync is enabled: {name} would "
                    "immediately sync back to Git. Disable it first, e.g. "
                    f"kubectl -n {namespace} patch application {name} --type=json "
                    '-p \'[{"op":"remove","path":"/spec/syncPolicy/automated"}]\''
                )
            entries = (current.raw.get("status") or {}).get("history") or []
            entry = next((h for h in entries if int(h.get("id", -1)) == history_id), None)
            if entry is None:
                known = ", ".join(str(h.get("id")) for h in entries) or "none"
                raise fail(f"{name} has no history entry {history_id} (known: {known})")
            return await eng.sync(
                current,
                revision=str(entry["revision"]),
                prune=prune,
                source={
                    **(entry.get("source") or current.spec_source),
                    "targetRevision": entry["revision"],
                },
                initiated_by={"username": "gitsail-cli"},
            )

    outcome = _guard(lambda: run(main()))
    color = "green" if outcome.result.phase == "Succeeded" else "red"
    console.print(f"[{color}]{outcome.result.phase}[/]: {outcome.result.message}", highlight=False)
    if outcome.result.phase != "Succeeded":
        raise typer.Exit(1)


@app.command()
def delete(
    name: str,
    cascade: bool = typer.Option(True, "--cascade/--no-cascade", help="delete its resources too"),
    propagation: str = typer.Option("foreground", "--propagation-policy"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Delete an Application; with --cascade (default) also the resources it owns."""

    async def main() -> list[ResourceKey]:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            deleted: list[ResourceKey] = []
            if cascade:
                deleted = await eng.delete_resources(current, propagation=propagation.capitalize())
            # Drop our finalizers: the resources are handled (or deliberately kept).
            finalizers = [
                f for f in current.finalizers if not f.startswith("resources-finalizer.argocd")
            ]
            await eng.kube.merge_patch(
                "argoproj.io/v1alpha1",
                "Application",
                name,
                {"metadata": {"finalizers": finalizers or None}},
                namespace=namespace,
            )
            await eng.kube.delete("argoproj.io/v1alpha1", "Application", name, namespace)
            return deleted

    deleted = _guard(lambda: run(main()))
    for key in deleted:
        console.print(f"deleted {key}")
    console.print(f"application {name} deleted" + ("" if cascade else " (resources kept)"))


def _guard(call: Callable[[], T]) -> T:
    """Turn expected failures into one clear line and a non-zero exit."""
    try:
        return call()
    except (KubeError, ComparisonError, AppSpecError, OSError) as exc:
        raise fail(str(exc)) from exc


__all__ = ["app"]
