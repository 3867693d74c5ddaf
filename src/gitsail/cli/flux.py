"""Flux's verbs over the API: ``get``, ``reconcile``, ``suspend``, ``resume``.

Shaped like the ``flux`` CLI (same nouns, flags and table columns), and like it they never
run the engine: they read status and write what a controller acts on.

- ``get sources git`` / ``get kustomizations``: NAME, REVISION, SUSPENDED, READY,
  MESSAGE (NAMESPACE first with ``-A``) from the live objects' status; ``-o json|yaml``
  prints the objects;
- ``reconcile source git NAME`` / ``reconcile kustomization NAME [--with-source]``: set
  ``reconcile.fluxcd.io/requestedAt`` to the time now (RFC 3339), then watch the object
  until its ``status.lastHandledReconcileAt`` equals it and ``Ready`` is decided; print
  the revision, or the Ready message and exit 1 when ``Ready=False``;
- ``suspend`` / ``resume`` ``kustomization`` and ``source git``: patch ``spec.suspend``;
  ``resume`` also requests a reconcile and waits for it, as ``flux resume`` does.

- ``diff kustomization NAME [--path DIR]``: build the Kustomization exactly as the reconciler
  does (``flux_kustomization_build``: from the source's artifact revision, or from a local
  directory), server-side dry-run every object as ``kustomize-controller`` (``dryRun=All``:
  nothing is written), compare with the live objects (``gitsail.diff``: normalized, Secrets
  masked) and print ``► Kind/ns/name created|drifted|deleted`` with the changed fields;
  ``deleted`` are the inventory entries the build lost, when ``spec.prune`` is on. Exit
  status as ``flux diff``: 0 no differences, 1 differences, 2 the diff failed;
- ``diff helmrelease NAME``: the composed values against the latest release's (Secret-derived
  values masked), then the chart rendered as the controller would, dry-run as
  ``helm-controller`` and compared with the live objects (``flux_helmrelease_inspect``);
  same flags, output and exit status as ``diff kustomization``;
- ``tree kustomization NAME``: the inventory as a tree, nested Kustomizations expanded by
  their inventories and (beyond Flux) Argo CD Applications by their ``status.resources``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from gitsail.cli.app import ContextOption, KubeconfigOption, run
from gitsail.cli.kindget import (
    get_command,
    guarded,
    open_kube,
    read_objects,
    show_objects,
)
from gitsail.cli.output import Format, OutputOption, console, emit, err_console, fail
from gitsail.diff.sealed import opener_from_cluster
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_helmrelease import parse_helmrelease
from gitsail.kinds.flux_helmrelease_inspect import (
    InspectError,
    ReleaseDiff,
    compare_release,
    render_release_diff,
)
from gitsail.kinds.flux_inspect import (
    FAILED,
    ObjectChange,
    TreeNode,
    compare_build,
    managed_tree,
    render_changes,
)
from gitsail.kinds.flux_kustomization import Kustomization, parse_kustomization
from gitsail.kinds.flux_kustomization_build import build, build_local
from gitsail.kinds.flux_receiver import REQUESTED_AT, rfc3339_nano
from gitsail.kinds.status import ReconcileError
from gitsail.kube import Gone, Kube, KubeError
from gitsail.model import Obj, ResourceKey
from gitsail.policy import Policy, PolicyError
from gitsail.render import Renderer
from gitsail.source import GitSource
from gitsail.sync import Inventory

__all__ = [
    "diff_app",
    "get_app",
    "reconcile_app",
    "resume_app",
    "suspend_app",
    "tree_app",
]

DEFAULT_NAMESPACE = "flux-system"
FIELD_MANAGER = "gitsail-cli"


@dataclass(frozen=True)
class FluxKind:
    """How the verbs name and read one Flux kind."""

    kind: str
    api_version: str
    noun: str  # as messages say it: "source git", "kustomization"
    done: str  # what a successful reconcile did: "fetched revision", "applied revision"
    plural: str = ""  # the ``get`` noun: "kustomizations"; a source's is its ``noun`` word
    aliases: tuple[str, ...] = ()  # hidden short nouns: "ks", "hr"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def is_source(self) -> bool:
        return self.noun.startswith("source ")

    @property
    def word(self) -> str:
        """The noun after ``source`` for sources ("git", "helm"), else the noun itself."""
        return self.noun.removeprefix("source ")

    def revision(self, obj: Obj) -> str:
        """What ``get`` shows as REVISION: a source's artifact revision, a Kustomization's
        last applied revision, a HelmRelease's deployed chart version (its newest history
        snapshot, else the last attempted revision)."""
        status = obj.get("status") or {}
        if self.is_source:
            artifact = status.get("artifact")
            return str(artifact.get("revision") or "") if isinstance(artifact, dict) else ""
        if self.kind == "HelmRelease":
            history = status.get("history")
            if isinstance(history, list) and history and isinstance(history[0], dict):
                version = history[0].get("chartVersion")
                if version:
                    return str(version)
            return str(status.get("lastAttemptedRevision") or "")
        return str(status.get("lastAppliedRevision") or "")


_SOURCE = "source.toolkit.fluxcd.io/v1"
GIT_REPOSITORY = FluxKind("GitRepository", _SOURCE, "source git", "fetched revision")
HELM_REPOSITORY = FluxKind("HelmRepository", _SOURCE, "source helm", "fetched revision")
HELM_CHART = FluxKind("HelmChart", _SOURCE, "source chart", "fetched revision")
OCI_REPOSITORY = FluxKind("OCIRepository", _SOURCE, "source oci", "fetched revision")
KUSTOMIZATION = FluxKind(
    "Kustomization",
    "kustomize.toolkit.fluxcd.io/v1",
    "kustomization",
    "applied revision",
    plural="kustomizations",
    aliases=("kustomization", "ks"),
)
HELM_RELEASE = FluxKind(
    "HelmRelease",
    "helm.toolkit.fluxcd.io/v2",
    "helmrelease",
    "applied revision",
    plural="helmreleases",
    aliases=("helmrelease", "hr"),
)
SOURCES = (GIT_REPOSITORY, HELM_REPOSITORY, HELM_CHART, OCI_REPOSITORY)
APPLIERS = (KUSTOMIZATION, HELM_RELEASE)

get_app = typer.Typer(help="Show Flux sources and Kustomizations with their status.")
get_sources = typer.Typer(help="Show Flux sources.")
get_app.add_typer(get_sources, name="sources")
reconcile_app = typer.Typer(help="Ask the controller to reconcile a Flux object now, and wait.")
reconcile_source = typer.Typer(help="Reconcile a Flux source.")
reconcile_app.add_typer(reconcile_source, name="source")
suspend_app = typer.Typer(help="Suspend the reconciliation of a Flux object.")
suspend_source = typer.Typer(help="Suspend a Flux source.")
suspend_app.add_typer(suspend_source, name="source")
resume_app = typer.Typer(help="Resume a suspended Flux object and wait for its reconcile.")
resume_source = typer.Typer(help="Resume a Flux source.")
resume_app.add_typer(resume_source, name="source")

NamespaceOption = typer.Option(
    DEFAULT_NAMESPACE, "--namespace", "-n", help="namespace of the Flux objects"
)
TimeoutOption = typer.Option(300.0, "--timeout", help="seconds to wait for the reconcile")


# -- get ------------------------------------------------------------------------------------


def _ready(obj: Obj) -> tuple[str, str]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown"), str(condition.get("message") or "")
    return "Unknown", ""


def _row(flux: FluxKind, obj: Obj) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    ready, message = _ready(obj)
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "revision": flux.revision(obj),
        "suspended": "True" if (obj.get("spec") or {}).get("suspend") is True else "False",
        "ready": ready,
        "message": message,
    }


def _get(
    flux: FluxKind,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: Format,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    async def main() -> list[Obj]:
        async with open_kube(kubeconfig, context) as kube:
            return await read_objects(
                kube, flux.api_version, flux.kind, name, namespace, all_namespaces=all_namespaces
            )

    where = "any namespace" if all_namespaces else f"namespace {namespace}"
    show_objects(
        guarded(main()),
        one=name is not None,
        output=output,
        rows=lambda o: _row(flux, o),
        columns=("name", "revision", "suspended", "ready", "message"),
        with_namespace=all_namespaces,
        empty=f"no {flux.kind} objects found in {where}",
    )


def _get_command(flux: FluxKind) -> Callable[..., None]:
    return get_command(
        flux.kind,
        f"Show {flux.kind} objects: revision, suspended, Ready and its message.",
        lambda *args: _get(flux, *args),
        NamespaceOption,
    )


for _flux in SOURCES:
    get_sources.command(_flux.word)(_get_command(_flux))
for _flux in APPLIERS:
    get_app.command(_flux.plural)(_get_command(_flux))
    for _alias in _flux.aliases:
        get_app.command(_alias, hidden=True)(_get_command(_flux))


# -- reconcile --------------------------------------------------------------------------------


def _say(symbol: str, message: str) -> None:
    console.print(Text(f"{symbol} {message}"), highlight=False, soft_wrap=True)


async def _fetch(kube: Kube, flux: FluxKind, name: str, namespace: str) -> Obj:
    obj = await kube.get(flux.api_version, flux.kind, name, namespace)
    if obj is None:
        raise fail(f"{flux.kind} {name} not found in namespace {namespace}")
    return obj


def _handled(obj: Obj, stamp: str) -> str | None:
    """``Ready``'s status once the controller has handled request ``stamp``, else None."""
    if (obj.get("status") or {}).get("lastHandledReconcileAt") != stamp:
        return None
    ready, _ = _ready(obj)
    return ready if ready in ("True", "False") else None


async def _wait_handled(
    kube: Kube, flux: FluxKind, name: str, namespace: str, stamp: str, since: Obj, seconds: float
) -> Obj:
    """Watch the object (from ``since``'s resourceVersion) until it handled ``stamp``."""
    obj = since
    try:
        async with asyncio.timeout(seconds):
            while _handled(obj, stamp) is None:
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                try:
                    async for event in kube.watch(
                        flux.api_version,
                        flux.kind,
                        namespace,
                        resource_version=rv or None,
                        timeout_seconds=60,
                        field_selector=f"metadata.name={name}",
                    ):
                        if event.type == "DELETED":
                            raise fail(f"{flux.kind} {namespace}/{name} was deleted")
                        if event.type != "BOOKMARK":
                            obj = event.object
                            if _handled(obj, stamp) is not None:
                                break
                except Gone:
                    obj = await _fetch(kube, flux, name, namespace)
    except TimeoutError:
        raise fail(
            f"{flux.kind} {namespace}/{name} did not handle the reconcile request within "
            f"{seconds:g}s (is the controller running?)"
        ) from None
    return obj


async def _request_and_wait(
    kube: Kube,
    flux: FluxKind,
    name: str,
    namespace: str,
    seconds: float,
    *,
    patch: dict[str, Any] | None = None,
) -> None:
    stamp = rfc3339_nano(datetime.now(UTC))
    body: dict[str, Any] = {"metadata": {"annotations": {REQUESTED_AT: stamp}}, **(patch or {})}
    patched = await kube.merge_patch(
        flux.api_version, flux.kind, name, body, namespace, field_manager=FIELD_MANAGER
    )
    _say("✔", f"{flux.kind} annotated")
    _say("◎", f"waiting for {flux.kind} reconciliation")
    obj = await _wait_handled(kube, flux, name, namespace, stamp, patched, seconds)
    ready, message = _ready(obj)
    if ready == "False":
        raise fail(f"{flux.kind} {namespace}/{name} is not ready: {message}")
    _say("✔", f"{flux.kind} reconciliation completed")
    revision = flux.revision(obj)
    if revision:
        _say("✔", f"{flux.done} {revision}")


async def _reconcile(kube: Kube, flux: FluxKind, name: str, namespace: str, seconds: float) -> None:
    obj = await _fetch(kube, flux, name, namespace)
    if (obj.get("spec") or {}).get("suspend") is True:
        raise fail(
            f"{flux.kind} {namespace}/{name} is suspended; "
            f"resume it first: gitsail resume {flux.noun} {name} -n {namespace}"
        )
    _say("►", f"annotating {flux.kind} {name} in {namespace} namespace")
    await _request_and_wait(kube, flux, name, namespace, seconds)


async def _source_of(
    kube: Kube, flux: FluxKind, name: str, namespace: str
) -> tuple[FluxKind, str, str]:
    """The source a Kustomization or a HelmRelease reads: its ``sourceRef``; a HelmRelease's
    generated HelmChart (``status.helmChart``) or its ``chartRef``."""
    obj = await _fetch(kube, flux, name, namespace)
    spec = obj.get("spec") or {}
    by_kind = {s.kind: s for s in SOURCES}
    if flux is HELM_RELEASE:
        ref = spec.get("chartRef") or {}
        if not ref:
            chart = str((obj.get("status") or {}).get("helmChart") or "")
            chart_ns, _, chart_name = chart.partition("/")
            if not chart_name:
                raise fail(
                    f"HelmRelease {namespace}/{name} has no HelmChart yet "
                    "(status.helmChart is empty); reconcile it without --with-source first"
                )
            return HELM_CHART, chart_name, chart_ns
    else:
        ref = spec.get("sourceRef") or {}
    source = by_kind.get(str(ref.get("kind") or ""))
    if source is None or not ref.get("name"):
        raise fail(
            f"{flux.kind} {namespace}/{name}: --with-source needs a source reference of "
            f"kind {', '.join(by_kind)}, not {ref.get('kind') or 'none'}"
        )
    return source, str(ref["name"]), str(ref.get("namespace") or namespace)


def plain_reconcile_command(flux: FluxKind, doc: str) -> Callable[..., None]:
    """``reconcile <kind> NAME``: request a reconcile of one object and wait for it."""

    def command(
        name: str = typer.Argument(..., help=f"the {flux.kind}"),
        namespace: str = NamespaceOption,
        timeout: float = TimeoutOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        async def main() -> None:
            async with open_kube(kubeconfig, context) as kube:
                await _reconcile(kube, flux, name, namespace, timeout)

        guarded(main())

    command.__doc__ = doc
    return command


def _reconcile_command(flux: FluxKind) -> Callable[..., None]:
    if flux.is_source:
        return plain_reconcile_command(
            flux, f"Fetch a {flux.kind} now (reconcile.fluxcd.io/requestedAt) and wait for it."
        )

    def command(
        name: str = typer.Argument(..., help=f"the {flux.kind}"),
        with_source: bool = typer.Option(
            False, "--with-source", help="reconcile its source first (a new fetch)"
        ),
        namespace: str = NamespaceOption,
        timeout: float = TimeoutOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        async def main() -> None:
            async with open_kube(kubeconfig, context) as kube:
                if with_source:
                    source, source_name, source_ns = await _source_of(kube, flux, name, namespace)
                    await _reconcile(kube, source, source_name, source_ns, timeout)
                await _reconcile(kube, flux, name, namespace, timeout)

        guarded(main())

    command.__doc__ = f"Apply a {flux.kind} now (reconcile.fluxcd.io/requestedAt) and wait for it."
    return command


for _flux in SOURCES:
    reconcile_source.command(_flux.word)(_reconcile_command(_flux))
for _flux in APPLIERS:
    reconcile_app.command(_flux.noun)(_reconcile_command(_flux))
    for _alias in _flux.aliases[1:]:
        reconcile_app.command(_alias, hidden=True)(_reconcile_command(_flux))


# -- suspend / resume -------------------------------------------------------------------------


def _suspend(
    flux: FluxKind, name: str, namespace: str, kubeconfig: str | None, context: str | None
) -> None:
    async def main() -> None:
        async with open_kube(kubeconfig, context) as kube:
            await _fetch(kube, flux, name, namespace)
            _say("►", f"suspending {flux.noun} {name} in {namespace} namespace")
            await kube.merge_patch(
                flux.api_version,
                flux.kind,
                name,
                {"spec": {"suspend": True}},
                namespace,
                field_manager=FIELD_MANAGER,
            )
            _say("✔", f"{flux.noun} suspended")

    guarded(main())


def _resume(
    flux: FluxKind,
    name: str,
    namespace: str,
    wait: bool,
    timeout: float,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    async def main() -> None:
        async with open_kube(kubeconfig, context) as kube:
            await _fetch(kube, flux, name, namespace)
            _say("►", f"resuming {flux.noun} {name} in {namespace} namespace")
            resume = {"spec": {"suspend": False}}
            if not wait:
                await kube.merge_patch(
                    flux.api_version,
                    flux.kind,
                    name,
                    resume,
                    namespace,
                    field_manager=FIELD_MANAGER,
                )
                _say("✔", f"{flux.noun} resumed")
                return
            await _request_and_wait(kube, flux, name, namespace, timeout, patch=resume)

    guarded(main())


WaitOption = typer.Option(True, "--wait/--no-wait", help="wait for the reconcile that follows")


def _suspend_command(flux: FluxKind) -> Callable[..., None]:
    def command(
        name: str = typer.Argument(..., help=f"the {flux.kind}"),
        namespace: str = NamespaceOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        _suspend(flux, name, namespace, kubeconfig, context)

    command.__doc__ = f"Stop reconciling a {flux.kind} (spec.suspend: true)."
    return command


def _resume_command(flux: FluxKind) -> Callable[..., None]:
    def command(
        name: str = typer.Argument(..., help=f"the {flux.kind}"),
        namespace: str = NamespaceOption,
        wait: bool = WaitOption,
        timeout: float = TimeoutOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        _resume(flux, name, namespace, wait, timeout, kubeconfig, context)

    command.__doc__ = f"Reconcile a suspended {flux.kind} again (spec.suspend: false), and wait."
    return command


for _flux in SOURCES:
    suspend_source.command(_flux.word)(_suspend_command(_flux))
    resume_source.command(_flux.word)(_resume_command(_flux))
for _flux in APPLIERS:
    suspend_app.command(_flux.noun)(_suspend_command(_flux))
    resume_app.command(_flux.noun)(_resume_command(_flux))
    for _alias in _flux.aliases[1:]:
        suspend_app.command(_alias, hidden=True)(_suspend_command(_flux))
        resume_app.command(_alias, hidden=True)(_resume_command(_flux))


# -- diff -------------------------------------------------------------------------------------

diff_app = typer.Typer(help="Show what applying a Flux object would change, without applying.")
tree_app = typer.Typer(help="Show the objects a Flux object manages, as a tree.")


async def _load_kustomization(kube: Kube, name: str, namespace: str) -> tuple[Obj, Kustomization]:
    obj = await kube.get(KUSTOMIZATION.api_version, KUSTOMIZATION.kind, name, namespace)
    if obj is None:  # exit 2: 1 means "differences" to diff's callers
        raise fail(f"Kustomization {name} not found in namespace {namespace}", code=2)
    try:
        return obj, parse_kustomization(obj)
    except SpecError as exc:
        raise fail(f"Kustomization {namespace}/{name}: {exc}", code=2) from None


def _inventory(obj: Obj) -> Inventory:
    meta = obj.get("metadata") or {}
    try:
        return Inventory.from_flux((obj.get("status") or {}).get("inventory"))
    except ValueError as exc:
        raise fail(
            f"Kustomization {meta.get('namespace')}/{meta.get('name')}: status.inventory is "
            f"unreadable: {exc}",
            code=2,
        ) from None


@diff_app.command("kustomization")
def diff_kustomization(
    name: str = typer.Argument(..., help="the Kustomization"),
    path: Path | None = typer.Option(
        None,
        "--path",
        help="a local directory to build instead of the source's artifact: what "
        "spec.path names, with your changes",
    ),
    progress_bar: bool = typer.Option(
        True, "--progress-bar/--no-progress-bar", help="show progress while dry-running"
    ),
    sealed_keys_namespace: str = typer.Option(
        "kube-system",
        "--sealed-secrets-keys-namespace",
        help="where the Sealed Secrets keys are (read if allowed: a re-sealed, unchanged "
        "SealedSecret value then shows as in sync)",
    ),
    namespace: str = NamespaceOption,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Build a Kustomization as the controller would, dry-run it on the cluster, and show
    what would change. Exit status: 0 no differences, 1 differences, 2 the diff failed."""
    try:
        policy = Policy.from_env()  # GITSAIL_ALLOW_FILE_URLS=true for local repositories
    except PolicyError as exc:
        raise fail(str(exc), code=2) from exc

    async def main() -> list[ObjectChange]:
        async with open_kube(kubeconfig, context) as kube:
            obj, ks = await _load_kustomization(kube, name, namespace)
            inventory = _inventory(obj)
            # Re-sealed, unchanged SealedSecret values are in sync when the keys are readable.
            opener = await opener_from_cluster(kube, sealed_keys_namespace)
            with tempfile.TemporaryDirectory(prefix="gitsail-diff-") as work:
                renderer = Renderer(work_dir=Path(work), policy=policy)
                if path is not None:
                    built = await build_local(kube, ks, path, renderer=renderer, policy=policy)
                else:
                    git = GitSource(policy=policy)
                    built = await build(kube, ks, git=git, renderer=renderer, policy=policy)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console,
                transient=True,
                disable=not progress_bar or not err_console.is_terminal,
            ) as progress:
                task = progress.add_task("dry-run", total=len(built.objects))
                return await compare_build(
                    kube,
                    ks,
                    inventory,
                    built.objects,
                    advance=lambda: progress.advance(task),
                    open_sealed=opener,
                )

    try:
        changes = run(main())
    except ReconcileError as exc:
        raise fail(f"Kustomization {namespace}/{name}: {exc.message}", code=2) from None
    except KubeError as exc:
        raise fail(str(exc), code=2) from None
    if output is not Format.table:
        emit([c.to_dict() for c in changes], output)
    else:
        sys.stdout.write(render_changes(changes))
    if any(c.action == FAILED for c in changes):
        raise typer.Exit(2)
    if changes:
        raise typer.Exit(1)


diff_app.command("ks", hidden=True)(diff_kustomization)


HELMRELEASE_API_VERSION = "helm.toolkit.fluxcd.io/v2"


@diff_app.command("helmrelease")
def diff_helmrelease(
    name: str = typer.Argument(..., help="the HelmRelease"),
    progress_bar: bool = typer.Option(
        True, "--progress-bar/--no-progress-bar", help="show progress while dry-running"
    ),
    namespace: str = NamespaceOption,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Compare a HelmRelease's values with its latest release, render its chart as the
    controller would, dry-run it on the cluster, and show what would change (values from a
    Secret are masked). Exit status: 0 no differences, 1 differences, 2 the diff failed."""
    try:
        policy = Policy.from_env()
    except PolicyError as exc:
        raise fail(str(exc), code=2) from exc

    async def main() -> ReleaseDiff:
        async with open_kube(kubeconfig, context) as kube:
            obj = await kube.get(HELMRELEASE_API_VERSION, "HelmRelease", name, namespace)
            if obj is None:
                raise fail(f"HelmRelease {name} not found in namespace {namespace}", code=2)
            try:
                hr = parse_helmrelease(obj)
            except SpecError as exc:
                raise fail(f"HelmRelease {namespace}/{name}: {exc}", code=2) from None
            with (
                tempfile.TemporaryDirectory(prefix="gitsail-diff-") as work,
                Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    console=err_console,
                    transient=True,
                    disable=not progress_bar or not err_console.is_terminal,
                ) as progress,
            ):
                task = progress.add_task("dry-run", total=None)
                renderer = Renderer(work_dir=Path(work), policy=policy)
                return await compare_release(
                    kube,
                    hr,
                    renderer=renderer,
                    policy=policy,
                    advance=lambda: progress.advance(task),
                )

    try:
        found = run(main())
    except InspectError as exc:
        raise fail(f"HelmRelease {namespace}/{name}: {exc}", code=2) from None
    except KubeError as exc:
        raise fail(str(exc), code=2) from None
    if output is not Format.table:
        emit(found.to_dict(), output)
    else:
        for note in found.notes:
            err_console.print(f"[yellow]![/] {note}")
        sys.stdout.write(render_release_diff(found))
    if any(c.action == FAILED for c in found.objects):
        raise typer.Exit(2)
    if found.differs:
        raise typer.Exit(1)


diff_app.command("hr", hidden=True)(diff_helmrelease)


# -- tree -------------------------------------------------------------------------------------


@tree_app.command("kustomization")
def tree_kustomization(
    name: str = typer.Argument(..., help="the Kustomization"),
    namespace: str = NamespaceOption,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Show the objects a Kustomization applied (its inventory), nested Kustomizations and
    Argo CD Applications expanded."""

    async def main() -> TreeNode:
        async with open_kube(kubeconfig, context) as kube:
            await _fetch(kube, KUSTOMIZATION, name, namespace)
            return await managed_tree(
                kube, ResourceKey(KUSTOMIZATION.group, "Kustomization", namespace, name)
            )

    tree: TreeNode = guarded(main())
    if output is not Format.table:
        emit(tree.to_dict(), output)
        return
    sys.stdout.write("\n".join(tree.lines()) + "\n")


tree_app.command("ks", hidden=True)(tree_kustomization)
