"""`gitsail app …`: Argo CD Applications from the command line.

As Argo CD's CLI, the commands that change an Application's state ask the controller
through the API and watch for its answer (``gitsail.cli.operation``): ``sync`` writes the
``operation`` field, ``get --refresh`` the refresh annotation, ``wait`` only watches. The
CLI never writes status then. ``--in-process`` runs the engine the controller runs
(``gitsail.app.engine``) here instead, for use without a controller; ``diff``, ``rollback``
and ``delete`` always run here (``diff`` writes nothing). Read commands take
``-o json|yaml``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer
from rich.markup import escape

from gitsail.app.engine import AppEngine, Comparison, ComparisonError
from gitsail.cli.operation import (
    API_VERSION,
    ApplicationGone,
    NoOperation,
    OperationInProgress,
    OperationView,
    WaitTimedOut,
    app_conditions,
    check_sync_allowed,
    follow,
    operation_view,
    refreshed,
    request_operation,
    request_refresh,
    request_termination,
    retry_strategy,
    sync_operation,
    watch_application,
)
from gitsail.cli.output import (
    Format,
    OutputOption,
    SyncProgress,
    console,
    emit,
    err_console,
    fail,
)
from gitsail.diff.sealed import opener_from_cluster
from gitsail.kinds.argo_application import App, AppSpecError, parse_retry
from gitsail.kinds.argo_appproject_admission import ProjectAdmission, in_process_admission
from gitsail.kinds.argo_cluster import (
    CLUSTER_SECRETS,
    IN_CLUSTER,
    IN_CLUSTER_NAME,
    ClusterConfigError,
    read_cluster_secret,
)
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj, ResourceKey
from gitsail.policy import Policy, PolicyError
from gitsail.render import Renderer
from gitsail.source import GitSource, HelmRepoSource, redact_url
from gitsail.sync.engine import ResourceResult

app = typer.Typer(help="Argo CD Applications: list, get, diff, sync, wait, history, rollback.")

KubeconfigOption = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file")
ContextOption = typer.Option(None, "--context", help="kubeconfig context")
AppNamespaceOption = typer.Option(
    "argocd", "--app-namespace", "-N", help="namespace of the Application objects"
)

InProcessOption = typer.Option(
    False,
    "--in-process",
    help="without a controller: run the engine in this process and write the "
    "Application's status from here (otherwise the controller is asked through the API)",
)
HintAfterOption = typer.Option(
    30.0,
    "--hint-after",
    envvar="GITSAIL_HINT_AFTER",
    help="seconds without an answer from the controller before hinting that none runs",
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
            renderer=Renderer(policy=policy),
            admission=in_process_admission(kube, namespace),  # AppProject rules here too
        )


async def _load(eng: AppEngine, name: str) -> App:
    obj = await eng.get_application(name)
    if obj is None:
        raise fail(f"application {name} not found in namespace {eng.control_namespace}")
    return _checked(obj)


def _checked(obj: Obj) -> App:
    """The Application read into the engine's terms; a spec it cannot read is an error."""
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
    refresh: bool = typer.Option(
        False, "--refresh", help="ask the controller to compare with Git and the cluster first"
    ),
    hard_refresh: bool = typer.Option(
        False, "--hard-refresh", help="as --refresh, and forget cached manifests and refs"
    ),
    timeout: float = typer.Option(
        300.0, "--timeout", help="seconds to wait for the refresh (0: no limit)"
    ),
    in_process: bool = InProcessOption,
    hint_after: float = HintAfterOption,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Show an Application: source, status and its resources.

    --refresh sets `argocd.argoproj.io/refresh` and waits until the controller has compared
    and written status (it removes the annotation then). Without a controller,
    --refresh --in-process compares in this process and writes the status from here.
    """
    refresh = refresh or hard_refresh

    async def in_process_main() -> Obj:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            if refresh:
                await eng.refresh(current)
            obj = await eng.get_application(name)
            assert obj is not None
            return obj

    async def main() -> Obj:
        async with client(kubeconfig, context) as kube:
            if not refresh:
                obj = await kube.get(API_VERSION, "Application", name, namespace)
                if obj is None:
                    raise ApplicationGone(namespace, name)
                _checked(obj)
                return obj
            current = await kube.get(API_VERSION, "Application", name, namespace)
            if current is None:
                raise ApplicationGone(namespace, name)
            _checked(current)
            written = await request_refresh(kube, namespace, name, hard=hard_refresh)
            return await follow(
                watch_application(kube, namespace, name, _version(written)),
                written,
                refreshed,
                picked_up=refreshed,
                hint_after=hint_after,
                hint=_no_controller_hint("refresh", hint_after),
                give_up_after=timeout,
            )

    try:
        if in_process:
            obj = _guard(lambda: run(in_process_main()))
        elif refresh and output is Format.table:
            with console.status(f"refreshing {name}"):
                obj = _guard(lambda: run(main()))
        else:
            obj = _guard(lambda: run(main()))
    except WaitTimedOut:
        raise fail(
            f"timed out after {timeout:g}s waiting for the controller to refresh "
            f"{namespace}/{name}: is it running? (--in-process refreshes without one)"
        ) from None
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
    sealed_keys_namespace: str = typer.Option(
        "kube-system",
        "--sealed-secrets-keys-namespace",
        help="where the Sealed Secrets keys are (read if allowed: a re-sealed, unchanged "
        "SealedSecret value then shows as in sync)",
    ),
) -> None:
    """Show what a sync would change. Exits 1 when there is a difference, 0 when in sync."""

    async def main() -> Comparison:
        async with engine(kubeconfig, context, namespace) as eng:
            # Re-sealed, unchanged SealedSecret values are in sync when the keys are readable.
            eng.open_sealed = await opener_from_cluster(eng.control, sealed_keys_namespace)
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


@asynccontextmanager
async def client(kubeconfig: str | None, context: str | None) -> AsyncIterator[Kube]:
    """A client of the control plane: what the CLI needs to ask the controller."""
    path = kubeconfig.split(":")[0] if kubeconfig else None
    async with Kube(await load_kubeconfig(path, context)) as kube:
        yield kube


def _no_controller_hint(what: str, seconds: float) -> Callable[[], None]:
    def hint() -> None:
        err_console.print(
            f"[yellow]hint:[/] nothing has picked up the {what} after {seconds:g}s: is the "
            "controller running (`gitsail controller`)? Use --in-process to run it without "
            "one. Still waiting.",
            highlight=False,
            soft_wrap=True,
        )

    return hint


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@app.command()
def sync(
    name: str,
    prune: bool = typer.Option(False, "--prune", help="delete resources no longer in Git"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and show, change nothing"),
    allow_empty: bool = typer.Option(
        False,
        "--allow-empty",
        help="with --in-process: allow pruning everything when the source renders nothing",
    ),
    revision: str | None = typer.Option(None, "--revision", help="sync this revision"),
    resource: list[str] = typer.Option(
        None, "--resource", help="only GROUP:KIND:NAME (repeatable); hooks are not run"
    ),
    retry_limit: int = typer.Option(
        0, "--retry-limit", help="retry a failed sync this many times (negative: no limit)"
    ),
    retry_backoff_duration: str = typer.Option(
        "5s", "--retry-backoff-duration", help="wait before the first retry"
    ),
    retry_backoff_max_duration: str = typer.Option(
        "3m0s", "--retry-backoff-max-duration", help="longest wait between retries"
    ),
    retry_backoff_factor: int = typer.Option(
        2, "--retry-backoff-factor", help="each wait is this many times the previous one"
    ),
    timeout: float = typer.Option(
        0.0, "--timeout", help="seconds to wait for the result (0: no limit)"
    ),
    async_: bool = typer.Option(
        False, "--async", help="return once the sync is requested; do not wait for it"
    ),
    in_process: bool = InProcessOption,
    hint_after: float = HintAfterOption,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Sync an Application: ask the controller and follow the operation as it runs.

    The sync is requested in the Application's `operation` field, as `argocd app sync`
    does; the controller runs it and records `status.operationState`, shown here live.
    Refused while another operation is in progress. Exits 1 unless it succeeds.
    Without a controller, --in-process runs the sync in this process instead.
    """
    resources = [_parse_resource(r) for r in resource] if resource else []
    if allow_empty and not in_process:
        raise fail(
            "--allow-empty applies to --in-process syncs; the controller allows an empty "
            "render only with syncPolicy.automated.allowEmpty"
        )
    if in_process:
        if async_:
            raise fail("--async asks the controller; it cannot be combined with --in-process")
        _sync_in_process(
            name,
            prune=prune,
            dry_run=dry_run,
            allow_empty=allow_empty,
            revision=revision,
            resources=resources,
            output=output,
            kubeconfig=kubeconfig,
            context=context,
            namespace=namespace,
        )
        return
    retry = retry_strategy(
        retry_limit,
        duration=retry_backoff_duration,
        max_duration=retry_backoff_max_duration,
        factor=retry_backoff_factor,
    )
    try:
        parse_retry(retry, automated=False)  # what the controller will read
    except AppSpecError as exc:
        raise fail(f"invalid --retry-* options: {exc}") from None
    live = output is Format.table and not async_
    progress = SyncProgress(f"sync {name}")

    def show(obj: Obj, written: Obj) -> None:
        view = operation_view(obj, written)
        if view.state is None:
            return
        for row in view.resources:
            progress.resource(row)
        progress.state(view.phase, view.message)

    async def main() -> tuple[Obj, OperationView | None]:
        async with client(kubeconfig, context) as kube:
            current = await kube.get(API_VERSION, "Application", name, namespace)
            if current is None:
                raise fail(f"application {name} not found in namespace {namespace}")
            _checked(current)  # a spec the controller cannot read: say so, request nothing
            refusal = check_sync_allowed(current, revision, dry_run)
            if refusal:
                raise fail(f"{namespace}/{name}: {refusal}")
            operation = sync_operation(
                current,
                revision=revision,
                prune=prune,
                dry_run=dry_run,
                resources=resources,
                retry=retry,
            )
            written = await request_operation(kube, namespace, name, operation)
            if async_:
                return written, None
            if live:
                progress.state("Requested", "waiting for the controller to start the sync")
            final = await follow(
                watch_application(kube, namespace, name, _version(written)),
                written,
                lambda obj: operation_view(obj, written).done,
                seen=(lambda obj: show(obj, written)) if live else (lambda _obj: None),
                picked_up=lambda obj: operation_view(obj, written).picked_up,
                hint_after=hint_after,
                hint=_no_controller_hint("sync", hint_after),
                give_up_after=timeout,
            )
            return written, operation_view(final, written)

    try:
        if live:
            with progress:
                written, view = _guard(lambda: run(main()))
        else:
            written, view = _guard(lambda: run(main()))
    except WaitTimedOut as exc:
        raise fail(
            f"timed out after {timeout:g}s waiting for the sync of {namespace}/{name}"
            f"{_where(exc.last)}; it goes on: follow it with `gitsail app wait {name} "
            f"-N {namespace} --operation`"
        ) from None
    if view is None:
        if output is Format.table:
            console.print(f"sync of {namespace}/{name} requested", highlight=False)
        else:
            emit(written.get("operation") or {}, output)
        return
    _report_operation(name, view, output, dry_run=dry_run, shown=live and progress.plain)


def _where(app_obj: Obj) -> str:
    state = (app_obj.get("status") or {}).get("operationState") or {}
    if not app_obj.get("operation"):
        return ""
    if not state:
        return " (not started: is the controller running?)"
    return f" (phase {state.get('phase')}: {state.get('message')})"


def _report_operation(
    name: str, view: OperationView, output: Format, *, dry_run: bool, shown: bool
) -> None:
    """Print the outcome of a finished operation; exit 1 unless it succeeded.

    ``shown``: the progress lines already said the final phase and message.
    """
    state = view.state
    if state is None:
        # The field was cleared without a state for it: today's controller records nothing
        # for a dry run; anything else means someone removed the request.
        if output is not Format.table:
            emit({}, output)
        if dry_run:
            (console if output is Format.table else err_console).print(
                f"{name}: the controller ran the dry run and recorded no result "
                "(use --in-process to see one)",
                highlight=False,
            )
            return
        raise fail(f"the sync of {name} was withdrawn before the controller recorded a result")
    if output is not Format.table:
        emit(state, output)
    else:
        if not shown:
            color = "green" if view.phase == "Succeeded" else "red"
            console.print(
                f"[{color}]{escape(view.phase)}[/]: {escape(view.message)}", highlight=False
            )
        revision = (state.get("syncResult") or {}).get("revision")
        if revision:
            console.print(f"revision {revision}", highlight=False)
    if view.phase != "Succeeded":
        raise fail(f"sync of {name} {view.phase.lower()}: {view.message}")


def _sync_in_process(
    name: str,
    *,
    prune: bool,
    dry_run: bool,
    allow_empty: bool,
    revision: str | None,
    resources: list[ResourceKey],
    output: Format,
    kubeconfig: str | None,
    context: str | None,
    namespace: str,
) -> None:
    """Run the sync here, with the engine the controller runs, and record it in status."""
    progress = SyncProgress(f"sync {name}")

    async def main() -> Any:
        def on_progress(result: ResourceResult) -> None:
            if output is Format.table:
                progress.resource(result.to_status())

        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            return await eng.sync(
                current,
                revision=revision,
                prune=prune,
                dry_run=dry_run,
                resources=resources or None,
                allow_empty=allow_empty,
                progress=on_progress,
            )

    if output is Format.table:
        with progress:
            outcome = _guard(lambda: run(main()))
    else:
        outcome = _guard(lambda: run(main()))
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
        console.print(f"[{color}]{result.phase}[/]: {escape(result.message)}", highlight=False)
        if outcome.revision:
            console.print(f"revision {outcome.revision}")
    if result.phase != "Succeeded":
        raise typer.Exit(1)


@app.command()
def wait(
    name: str,
    sync_: bool = typer.Option(False, "--sync", help="wait until Synced"),
    health: bool = typer.Option(False, "--health", help="wait until Healthy"),
    operation: bool = typer.Option(
        False, "--operation", help="wait until no operation is in progress"
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds (0: no limit)"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Watch the Application until it is synced, healthy and/or without an operation.

    With none of --sync, --health, --operation, waits for all three (as `argocd app wait`).
    Only watches: the controller keeps the status current.
    """
    if not (sync_ or health or operation):
        sync_ = health = operation = True

    def holds(obj: Obj) -> bool:
        return app_conditions(obj).holds(sync=sync_, health=health, operation=operation)

    async def main() -> Obj:
        async with client(kubeconfig, context) as kube:
            current = await kube.get(API_VERSION, "Application", name, namespace)
            if current is None:
                raise fail(f"application {name} not found in namespace {namespace}")
            return await follow(
                watch_application(kube, namespace, name, _version(current)),
                current,
                holds,
                give_up_after=timeout,
            )

    try:
        with console.status(f"waiting for {name}"):
            final = _guard(lambda: run(main()))
    except WaitTimedOut as exc:
        raise fail(
            f"timed out after {timeout:g}s waiting for {name} ({app_conditions(exc.last)})"
        ) from None
    console.print(f"{name}: {app_conditions(final)}", highlight=False)


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


@app.command("terminate-op")
def terminate_op(
    name: str,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """Stop the app's operation (as `argocd app terminate-op`): a running sync stops before
    its next wave and ends Failed, "Operation terminated"; one not started is withdrawn."""

    async def main() -> str:
        async with engine(kubeconfig, context, namespace) as eng:
            _, what = await request_termination(eng.kube, namespace, name)
            return what

    what = _guard(lambda: run(main()))
    typer.echo(
        {
            "terminating": f"Application '{name}' operation terminating",
            "already": f"Application '{name}' operation already terminating",
            "withdrawn": f"Application '{name}' pending operation withdrawn",
        }[what]
    )


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
            # The Application read above, not one created again under its name meanwhile.
            uid = str((current.raw.get("metadata") or {}).get("uid") or "")
            await eng.kube.delete(
                "argoproj.io/v1alpha1",
                "Application",
                name,
                namespace,
                preconditions={"uid": uid},
            )
            return deleted

    deleted = _guard(lambda: run(main()))
    for key in deleted:
        console.print(f"deleted {key}")
    console.print(f"application {name} deleted" + ("" if cascade else " (resources kept)"))


@app.command()
def resources(
    name: str,
    orphaned: bool = typer.Option(
        False,
        "--orphaned",
        help="the orphaned resources of its destination namespace instead (its AppProject "
        "must set orphanedResources)",
    ),
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """List an Application's resources, or with --orphaned the objects of its destination
    namespace that nothing tracks (as `argocd app resources --orphaned`). Read-only: an
    orphan is never changed or deleted."""

    async def main() -> list[dict[str, Any]]:
        async with engine(kubeconfig, context, namespace) as eng:
            current = await _load(eng, name)
            if not orphaned:
                status = current.raw.get("status") or {}
                return [
                    {
                        "group": r.get("group", ""),
                        "kind": r.get("kind", ""),
                        "namespace": r.get("namespace", ""),
                        "name": r.get("name", ""),
                        "orphaned": False,
                    }
                    for r in status.get("resources") or []
                ]
            return await _orphan_rows(eng, current)

    rows = _guard(lambda: run(main()))
    if output is Format.table:
        emit(rows, output, columns=("group", "kind", "namespace", "name", "orphaned"))
    else:
        emit(rows, output)


async def _orphan_rows(eng: AppEngine, current: App) -> list[dict[str, Any]]:
    admission = eng.admission
    assert isinstance(admission, ProjectAdmission)
    project, problem = await admission.project_for(current)
    if project is None:
        raise fail(problem)
    if project.orphaned_warn is None:
        raise fail(
            f"project {project.name} does not monitor orphaned resources "
            "(set spec.orphanedResources in the AppProject)"
        )
    if not current.destination_namespace:
        raise fail(f"application {current.name} has no destination namespace")
    async with _destination(eng, current) as kube:
        managed = sorted(current.inventory.keys())
        found = await admission.orphans(current, kube, managed, warn_only=False)
    assert found is not None
    if found.truncated:
        err_console.print(
            f"[yellow]warning:[/] namespace {found.namespace} holds more objects than are "
            "read at once: the list is incomplete",
            highlight=False,
        )
    return [{**row, "orphaned": True} for row in found.rows()]


@asynccontextmanager
async def _destination(eng: AppEngine, current: App) -> AsyncIterator[Kube]:
    """A client of the app's destination: the control plane for in-cluster, else the
    cluster its Secret registers (read here; its credentials are never printed)."""
    server, cluster = current.destination_server, current.destination_name
    if server in ("", IN_CLUSTER) and cluster in ("", IN_CLUSTER_NAME):
        yield eng.control
        return
    for secret in await eng.control.list("v1", "Secret", eng.control_namespace, CLUSTER_SECRETS):
        try:
            entry = read_cluster_secret(secret)
        except ClusterConfigError:
            continue
        if (server and entry.server == server.rstrip("/")) or (cluster and entry.name == cluster):
            async with Kube(entry.config) as kube:
                yield kube
            return
    raise fail(f"destination {server or cluster} is not a registered cluster")


def _guard(call: Callable[[], T]) -> T:
    """Turn expected failures into one clear line and a non-zero exit."""
    try:
        return call()
    except (
        KubeError,
        ComparisonError,
        AppSpecError,
        OSError,
        OperationInProgress,
        ApplicationGone,
        NoOperation,
    ) as exc:
        raise fail(str(exc)) from exc


__all__ = ["app"]
