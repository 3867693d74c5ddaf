"""The delivery driver: source → render → diff → sync → health → status, for one
``Delivery`` (a kind-neutral record a kind adapter in ``gitsail.kinds`` reads from its
object: today the Argo CD ``Application``).

``AppEngine`` is what the CLI runs in-process and what the controller runs continuously;
both go through the same methods. It holds two clients: ``control`` (the control plane:
the kind's objects, settings, repository Secrets, status writes) and ``target`` (the cluster
the objects are delivered to: discovery, dry runs, live objects, apply, prune). They are the
same client unless a caller says otherwise.

- ``compare(app)`` fetches the source, renders it, dry-runs every object with server-side
  apply and diffs the result against the live objects (plus the inventory's leftovers), and
  computes sync status and health. It changes nothing in the cluster.
- ``sync(app, …)`` runs one sync operation on a fresh comparison and records the
  operation state and a history entry.
- ``write_status(app, comparison)`` writes the kind's ``status``, as computed by the kind's
  adapter (``Delivery.adapter.status_patch``). Still Argo-shaped here, until operations
  become resumable records: the operation record a sync writes (``operationState``,
  ``history``, the ``SyncError`` condition) and the ``operation`` field a client sets.

A failed fetch or render never reaches the sync stage, so it can never prune; the error
lands in ``status.conditions`` (``ComparisonError``) and the operation message. A
``ComparisonError`` is a ``gitsail.errors`` ``ReconcileError`` that says what happens next:
``transient`` (the fetch failed, the API server did not answer: retry with backoff) or not
(a render, a spec or a manifest error: wait for a change of the spec or the source).

- ``reassess_health(comparison)`` re-reads only the live objects of an earlier comparison
  and recomputes health: a status-only change of a managed object (a Deployment becoming
  Available) shows within seconds, without a fetch, a render or a dry run.
- A failed sync with a retry strategy is rescheduled the way Argo CD does it: the operation
  stays ``Running`` with ``finishedAt`` set and ``retryCount`` one higher, and retry number
  *n* may start ``duration × factorⁿ⁻¹`` (capped at ``maxDuration``) after that time
  (``Retry.delay``). The caller (the controller) waits; the engine only records.
- A running sync records its progress in ``operationState`` (the step reached, the results
  so far, Argo CD's "waiting for …" message; see ``gitsail.sync.progress``) where resuming
  differs from running again: a hook started or ended, a health wait began. A sync without
  hooks in one wave writes no progress: its final status carries the result. Run again while
  that state is still ``Running`` for the same operation with no ``finishedAt`` (the
  controller was restarted), it resumes at the recorded revision and step instead of
  starting over: a hook that succeeded is not run twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitsail.app.admission import INVALID_SPEC, Admission
from gitsail.app.model import IN_CLUSTER, Delivery, KindAdapter, Retry
from gitsail.app.sops import render_decrypted
from gitsail.app.targets import Target, Targets, TargetUnavailable
from gitsail.diff import DiffError, ResourceDiff, diff_resource, parse_ignore_differences
from gitsail.diff.sealed import SealedOpener
from gitsail.errors import ReconcileError, Stalled, Transient
from gitsail.health import (
    Health,
    HealthStatus,
    aggregate,
    application_health_configured,
    resource_health,
)
from gitsail.kube import Conflict, Kube, KubeError, NotFoundKind, PreconditionFailed, check_names
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered, Renderer, RenderError
from gitsail.source import (
    AuthError,
    GitSource,
    HelmRepoSource,
    InvalidSource,
    PathNotFound,
    RevisionNotFound,
    SourceError,
    UnknownHostKey,
    known_hosts_from,
    match_credentials,
)
from gitsail.source.oci import OCIClient
from gitsail.sync.engine import (
    TERMINATED_MESSAGE,
    Changes,
    Checkpoint,
    OperationProgress,
    ResourceResult,
    SyncRequest,
    SyncResult,
    run_sync,
)
from gitsail.sync.inventory import Inventory
from gitsail.sync.ownership import shared_resource_warning
from gitsail.sync.plan import hook_types
from gitsail.sync.predictions import Predictions, applies_as_is, live_version

__all__ = [
    "AppEngine",
    "Comparison",
    "ComparisonError",
    "OperationOutcome",
    "PipelineObserver",
    "now",
    "operation_start",
    "restamped",
]

# Argo CD's Application: what ``get_application``/``list_applications`` read until the
# controller's registry of kinds reads objects itself (issue 8, C1b).
_ARGO_API_VERSION = "argoproj.io/v1alpha1"
_ARGO_KIND = "Application"

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# An app with at most this many objects is diffed on the event loop (a thread hop costs
# more than diffing a few small objects); a bigger one in a thread.
INLINE_DIFFS = 8
STAMP_HEAD = 6  # items of a comparison stamp before the objects' versions (stamp_head)


def _sealed(obj: Obj | None) -> bool:
    """A SealedSecret: its diff may decrypt (RSA), never on the event loop."""
    return obj is not None and obj.get("kind") == "SealedSecret"


class ComparisonError(ReconcileError):
    """Fetching, rendering or dry-running the app failed; nothing was changed.

    ``revision`` is the commit the failure happened at when the source was fetched ("" when
    the fetch itself failed), so a caller can tell a new revision from the same failure.
    ``transient`` says what happens next: True when the world may change on its own (the
    fetch failed, the API server did not answer): retry with backoff; False when only a
    change of the spec or the source helps (a render error, a bad manifest, a bad rule).
    ``reason`` is the CamelCase word for a condition (``FetchFailed``, ``RenderFailed``...).
    """

    def __init__(
        self,
        message: str,
        *,
        revision: str = "",
        transient: bool = False,
        reason: str = "",
    ) -> None:
        super().__init__(reason or "ComparisonFailed", message)
        self.revision = revision
        self._transient = transient

    @property
    def transient(self) -> bool:
        return self._transient

    def typed(self) -> Transient | Stalled:
        """The same failure as the error tree's ``Transient`` or ``Stalled``."""
        if self._transient:
            return Transient(self.reason, self.message)
        return Stalled(self.reason, self.message)


@dataclass(frozen=True)
class Comparison:
    app: Delivery
    artifact: Artifact
    rendered: Rendered
    desired: tuple[Obj, ...]  # prepared (namespace, tracking) — hooks excluded
    hooks: tuple[Obj, ...]
    diffs: tuple[ResourceDiff, ...]
    live: dict[ResourceKey, Obj]
    owned_live: tuple[Obj, ...]
    health: dict[ResourceKey, Health | None]
    shared: tuple[str, ...] = ()  # SharedResourceWarning messages: objects another app tracks

    # Both computed once per comparison (a comparison is never changed: ``replace`` makes a
    # new one), since every idle poll of an app asks them of its kept comparison again.
    @functools.cached_property
    def sync_status(self) -> str:
        return "Synced" if all(d.status == "Synced" for d in self.diffs) else "OutOfSync"

    @functools.cached_property
    def app_health(self) -> HealthStatus:
        """The health of the desired objects, except those the delivery's health settings
        leave out (``HealthSettings.ignore_annotation`` set to ``"true"``)."""
        annotation = self.app.health.ignore_annotation
        ignored = {
            k
            for k, obj in self.live.items()
            if annotation
            and ((obj.get("metadata") or {}).get("annotations") or {}).get(annotation) == "true"
        }
        desired = {ResourceKey.of(o) for o in self.desired}
        return aggregate(h for k, h in self.health.items() if k in desired and k not in ignored)


@dataclass(frozen=True)
class OperationOutcome:
    result: SyncResult
    revision: str
    comparison: Comparison | None
    retry_at: float | None = None  # epoch seconds of the scheduled retry; None: completed


Progress = Callable[[ResourceResult], None]


def _inventory_keys(inventory: Inventory) -> list[tuple[str, ResourceKey]]:
    """(apiVersion, key) of every entry of an inventory."""
    return [(e.api_version, e.key) for e in inventory]


def _fetch_failure(exc: SourceError) -> tuple[bool, str]:
    """Whether a failed fetch may succeed without a change of the spec or the source (the
    server answers again, a Secret or known_hosts is fixed, the branch is pushed), and the
    reason a condition shows."""
    if isinstance(exc, PathNotFound):
        return False, "PathNotFound"
    if isinstance(exc, InvalidSource):
        return False, "InvalidSource"
    if isinstance(exc, AuthError):
        return True, "AuthenticationFailed"
    if isinstance(exc, RevisionNotFound):
        return True, "RevisionNotFound"
    if isinstance(exc, UnknownHostKey):
        return True, "UnknownHostKey"
    return True, "FetchFailed"


def _is_own(app: Delivery, live: Obj) -> bool:
    """Carries the app's mark and no other owner's (never prune what another claims)."""
    return app.owner.owns(live) and app.owner.claimant(live) is None


def _adapter(app: Delivery) -> KindAdapter:
    """The kind adapter of ``app``; every record the engine writes status for has one."""
    if app.adapter is None:
        raise TypeError(f"{app.kind} {app.display}: no kind adapter to write its status")
    return app.adapter


def _require_name(obj: Obj, number: int, *, generate_name_ok: bool) -> None:
    """A rendered object must name itself (a hook may use ``generateName`` instead)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if isinstance(name, str) and name:
        return
    if generate_name_ok and isinstance(meta.get("generateName"), str) and meta["generateName"]:
        return
    what = f"{obj.get('apiVersion', '?')} {obj.get('kind', '?')}"
    if isinstance(meta.get("namespace"), str) and meta["namespace"]:
        what += f" in namespace {meta['namespace']}"
    problem = (
        "has no metadata.name" if name in (None, "") else "has a metadata.name that is not a string"
    )
    raise ComparisonError(
        f"resource {number} of the rendered manifests ({what}) {problem}; every resource needs "
        "a name (only hooks may use metadata.generateName)",
        reason="InvalidManifest",
    )


SYNC_ERROR = "SyncError"


@dataclass(frozen=True)
class _Resume:
    """Where an interrupted run of the requested operation stopped (see ``_resume_point``)."""

    progress: OperationProgress
    started: str
    revision: str


def _resume_point(app_obj: Obj, operation: dict[str, Any] | None) -> _Resume | None:
    """The progress a run of ``operation`` recorded before it was interrupted (a controller
    restart): its state is still ``Running`` for this very operation, with no ``finishedAt``
    (that would be a failed attempt waiting for its retry, which starts over) and a step
    recorded. None: start from the beginning."""
    if operation is None:
        return None
    state = (app_obj.get("status") or {}).get("operationState")
    if not isinstance(state, dict) or state.get("operation") != operation:
        return None
    if state.get("phase") != "Running" or state.get("finishedAt"):
        return None
    progress = OperationProgress.from_state(state)
    if progress is None:
        return None
    revision = str((state.get("syncResult") or {}).get("revision") or "")
    return _Resume(progress, str(state.get("startedAt") or now()), revision)


TERMINATING = "Terminating"


def restamped(stamp: tuple[Any, ...], live: Mapping[ResourceKey, Obj]) -> tuple[Any, ...]:
    """``stamp`` (``AppEngine.comparison_stamp``) with the versions of the ``live`` objects
    moved to theirs: objects read again since the stamp was taken and found changed in
    their status only (``AppEngine.reassess_health``), which a comparison ignores but for
    their health, assessed again with them. Every other object keeps its version."""
    current = {
        (key.kind, key.namespace, key.name): (obj.get("metadata") or {}).get("resourceVersion")
        for key, obj in live.items()
    }
    versions = (
        (kind, ns, name, current.get((kind, ns, name), rv))
        for kind, ns, name, rv in stamp[STAMP_HEAD:]
    )
    return (*stamp[:STAMP_HEAD], *versions)


TERMINATION_POLL_SECONDS = 1.0  # a running sync reads its Application at most this often


def terminating(app_obj: Obj | None) -> bool:
    """Whether the operation was asked to stop: ``operationState.phase: Terminating``, what
    ``DELETE /api/v1/applications/{name}/operation`` (Argo CD's path) writes."""
    state = ((app_obj or {}).get("status") or {}).get("operationState")
    return isinstance(state, dict) and state.get("phase") == TERMINATING


@dataclass
class _Termination:
    """What a running sync knows of a request to stop it. Read from the Application
    (throttled); once seen, it stays seen, and progress is no longer written over it."""

    read: Callable[[], Awaitable[Obj | None]]
    clock: Callable[[], float] = time.monotonic
    seen: bool = False
    _last: float = -1e9

    async def __call__(self) -> bool:
        if self.seen:
            return True
        now = self.clock()
        if now - self._last < TERMINATION_POLL_SECONDS:
            return False
        self._last = now
        try:
            self.seen = terminating(await self.read())
        except KubeError as exc:  # unknown: go on, and ask again later
            log.warning("could not read whether the operation was terminated: %s", exc)
        return self.seen


def operation_start(operation: dict[str, Any], started: str, retry_count: int = 0) -> Obj:
    """``operationState`` as an attempt of ``operation`` starts (Argo CD's ``Running``).

    A caller that sets the ``operation`` field itself (the controller's automated sync) may
    write this in the same patch; ``AppEngine.sync`` then does not write it again.
    """
    return {
        "operation": operation,
        "phase": "Running",
        "message": "sync started",
        "startedAt": started,
        # A retry starts over: no finish time, no result; the count stays (merge patch
        # semantics: None removes a field, as Argo CD's omitempty leaves it out).
        "finishedAt": None,
        "syncResult": None,
        "retryCount": retry_count or None,
        "progress": None,
    }


def _start_recorded(app_obj: Obj, start: Obj) -> str:
    """The ``startedAt`` of ``start`` when the Application already records exactly that
    start (any time), nothing more; "" otherwise."""
    state = (app_obj.get("status") or {}).get("operationState")
    if not isinstance(state, dict) or not state.get("startedAt"):
        return ""
    same = all(state.get(k) == v for k, v in start.items() if k != "startedAt")
    return str(state["startedAt"]) if same else ""


def _with_sync_error(app_obj: Obj, result: SyncResult, revision: str) -> Obj:
    """``app_obj`` with Argo CD's ``SyncError`` condition set by a failed sync (kept, with its
    time, while the same failure repeats) and cleared by a successful one."""
    status = app_obj.get("status") or {}
    current = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    others = [c for c in current if c.get("type") != SYNC_ERROR]
    conditions = others
    if result.phase != "Succeeded":
        message = f"Failed sync attempt to {revision or 'the target revision'}: {result.message}"
        same = [c for c in current if c.get("type") == SYNC_ERROR and c.get("message") == message]
        conditions = [
            *others,
            *(same[:1] or [{"type": SYNC_ERROR, "message": message, "lastTransitionTime": now()}]),
        ]
    if conditions == current:
        return app_obj
    return {**app_obj, "status": {**status, "conditions": conditions}}


LiveLookup = Callable[[str, str, str, str | None], Awaitable[Obj | None]]


class PipelineObserver:
    """Told how long fetches and renders take (the controller turns this into metrics)."""

    def fetched(self, seconds: float) -> None:
        """A git fetch (revision resolved with ls-remote, fetched if new) finished."""

    def rendered(self, tool: str, seconds: float, cache_hit: bool) -> None:
        """A render finished, from the cache or by running the tool."""


@dataclass
class AppEngine:
    """The delivery pipeline, over a control-plane client and a target-cluster client.

    ``control`` reads the kind's objects and settings (ConfigMaps, repository Secrets in
    ``control_namespace``) and writes their status; ``target`` (default: ``control``) is the
    cluster delivered to: discovery, dry runs, live objects, apply and prune. ``live`` looks
    up live objects in the target (default: a GET per object; the controller passes its
    watch caches, so a steady-state comparison costs no API request). Dry-run predictions
    are memoized by (desired object, live resourceVersion): while neither changes, the
    server would answer the same, so it is not asked again.
    """

    control: Kube
    target: Kube | None = None
    control_namespace: str = "argocd"
    git: GitSource = field(default_factory=GitSource)
    helm_repos: HelmRepoSource = field(default_factory=HelmRepoSource)
    renderer: Renderer = field(default_factory=Renderer)
    field_manager: str = "gitsail"
    live: LiveLookup | None = None
    changes: Changes | None = None  # wakes health waits on watch events (with ``live``)
    observer: PipelineObserver = field(default_factory=lambda: PipelineObserver())
    settings_ttl: float = 30.0
    admission: Admission | None = None  # AppProject checks (gitsail.app.admission)
    # Sealed Secrets keys: re-sealed, unchanged SealedSecret values diff as in sync.
    open_sealed: SealedOpener | None = None
    # Reads the kind's object as the control plane has it, with every write of this engine
    # in it (the controller answers from its watch cache when it holds our last write;
    # default: a GET). (api_version, kind, name, namespace) as ``live``.
    read_own: LiveLookup | None = None
    # Other clusters (gitsail.app.targets): each entry point runs on a view bound to the
    # delivery's destination; ``bound`` is the destination of such a view.
    targets: Targets | None = None
    bound: Target | None = None
    _predictions: Predictions = field(default_factory=Predictions, repr=False)
    _settings_cache: dict[str, tuple[float, Any]] = field(default_factory=dict, repr=False)
    _settings_loaders: dict[str, Callable[[], Awaitable[Any]]] = field(
        default_factory=dict, repr=False
    )

    @property
    def kube(self) -> Kube:
        """The control-plane client (the name callers used before the split)."""
        return self.control

    async def _read_own(self, app: Delivery) -> Obj | None:
        """The delivery's object with our own writes in it (``read_own``, or a GET)."""
        if self.read_own is not None:
            return await self.read_own(app.api_version, app.kind, app.name, app.namespace)
        return await self.control.get(app.api_version, app.kind, app.name, app.namespace)

    @property
    def oci_charts(self) -> OCIClient:
        """The OCI registry client of ``helm_repos`` (Flux's HelmCharts of OCI repositories
        pull through it too: one client, one policy)."""
        return self.helm_repos.oci

    @property
    def cluster(self) -> Kube:
        """The target-cluster client: ``target``, or ``control`` when none was given."""
        return self.target if self.target is not None else self.control

    async def get_live(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        if self.live is not None:
            return await self.live(api_version, kind, name, namespace)
        return await self.cluster.get(api_version, kind, name, namespace)

    async def _route(self, app: Delivery) -> AppEngine:
        """The engine to run ``app`` on: a view bound to its destination cluster (see
        ``gitsail.app.targets``), or this engine. ``ComparisonError`` when the destination
        is not registered or does not answer."""
        if self.bound is not None:
            return self
        if self.targets is None:
            if app.destination_server not in (IN_CLUSTER, "") or app.destination_name not in (
                "",
                "in-cluster",
            ):
                where = app.destination_server or app.destination_name
                raise ComparisonError(
                    f"destination {where} is not registered; only {IN_CLUSTER} (the cluster "
                    "gitsail runs against) is known here",
                    reason="DestinationUnknown",
                )
            return self
        try:
            target = await self.targets.resolve(app)
        except TargetUnavailable as exc:
            raise ComparisonError(exc.message, transient=exc.transient, reason=exc.reason) from None
        return replace(
            self,
            targets=None,
            bound=target,
            target=target.kube,
            live=target.live,
            changes=target.changes,
            _predictions=target.predictions,
        )

    async def destination_client(self, app: Delivery) -> Kube:
        """The client of ``app``'s destination cluster (``ComparisonError`` when it is not
        registered or does not answer), for reads beyond the delivery (orphaned
        resources)."""
        return (await self._route(app)).cluster

    # -- reading ----------------------------------------------------------------------

    async def get_application(self, name: str, namespace: str | None = None) -> Obj | None:
        return await self.control.get(
            _ARGO_API_VERSION, _ARGO_KIND, name, namespace or self.control_namespace
        )

    async def list_applications(self, namespace: str | None = None) -> list[Obj]:
        return await self.control.list(
            _ARGO_API_VERSION, _ARGO_KIND, namespace or self.control_namespace
        )

    async def _settings(self, what: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """Cluster settings read at most every ``settings_ttl`` seconds (not once per app)."""
        cached = self._settings_cache.get(what)
        if cached is not None and time.monotonic() - cached[0] < self.settings_ttl:
            return cached[1]
        value = await load()
        self._settings_cache[what] = (time.monotonic(), value)
        self._settings_loaders[what] = load
        return value

    async def comparison_stamp(
        self,
        app: Delivery,
        objects: Sequence[tuple[str, str, str, str]],
        head: tuple[Any, ...] | None = None,
    ) -> tuple[Any, ...] | None:
        """What a comparison of ``app`` reads, in a form cheap to get and to compare: the
        fetched revision and input digest, the cluster settings (re-read when due), the
        project, the discovery in use, the inventory (``stamp_head``; ``head`` when taken
        already) and the version of each of ``objects`` (apiVersion, kind, namespace, name)
        in the watch caches. Two equal stamps mean a comparison would find what it found
        before; None: cannot tell (the caller compares). Not for apps whose comparison reads
        more (SOPS keys, Sealed Secrets keys): the caller leaves those out."""
        if head is None:
            head = await self.stamp_head(app)
            if head is None:
                return None
        try:
            engine = await self._route(app)
            if engine is not self:
                return await engine.comparison_stamp(app, objects, head)
            versions = []
            for api_version, kind, namespace, name in objects:
                live = await self.get_live(api_version, kind, name, namespace or None)
                meta = (live or {}).get("metadata") or {}
                versions.append((kind, namespace, name, meta.get("resourceVersion")))
        except (SourceError, KubeError, ReconcileError, RuntimeError):
            return None
        return (*head, *versions)

    async def stamp_head(self, app: Delivery) -> tuple[Any, ...] | None:
        """The part of ``comparison_stamp`` that is not the objects' versions (its first
        ``STAMP_HEAD`` items; the revision first). Taken before a comparison, it may be
        completed after it: what the comparison read from Git and the settings is then
        what it was when it began."""
        try:
            engine = await self._route(app)
            if engine is not self:
                return await engine.stamp_head(app)
            artifact = await self.fetch(app)
            for what, load in list(self._settings_loaders.items()):
                await self._settings(what, load)
            project = await self.admission.stamp(app) if self.admission else None
            mapper = id(self.cluster.mapper)
        except (SourceError, KubeError, ReconcileError, RuntimeError):
            return None
        settings = tuple(sorted((k, v[1]) for k, v in self._settings_cache.items()))
        inventory = tuple(_inventory_keys(app.inventory))
        return (artifact.revision, artifact.digest, settings, project, mapper, inventory)

    async def child_application_health(self) -> bool:
        """Whether child Applications count towards their parent's health (app of apps).

        Argo CD stopped assessing ``argoproj.io/Application`` in 1.8; operators bring it back
        with a ``resource.customizations.health.argoproj.io_Application`` health check in
        ``argocd-cm`` (or the older ``resource.customizations`` block naming the kind). With
        it a child's own ``status.health`` is used; without it a child has no health.
        """

        async def load() -> bool:
            try:
                cm = await self.control.get("v1", "ConfigMap", "argocd-cm", self.control_namespace)
            except KubeError:
                return False
            return application_health_configured((cm or {}).get("data") or {})

        return bool(await self._settings("argocd-cm:application-health", load))

    async def _credentials_for(self, repo_url: str) -> Any:
        secrets = await self._settings(
            "repo-secrets",
            lambda: self.control.list(
                "v1",
                "Secret",
                self.control_namespace,
                label_selector="argocd.argoproj.io/secret-type in (repository,repo-creds)",
            ),
        )
        return match_credentials(repo_url, secrets)

    async def fetch(self, app: Delivery, revision: str | None = None) -> Artifact:
        source = app.source
        creds = await self._credentials_for(source.url)
        wanted = revision or source.revision
        if source.is_helm_repo:
            return await self.helm_repos.fetch_chart(
                source.url, source.chart, "" if wanted == "HEAD" else wanted, creds
            )
        if source.url.startswith("ssh://") or "@" in source.url.split("://")[-1].split("/")[0]:
            cm = await self._settings(
                "known-hosts",
                lambda: self.control.get(
                    "v1", "ConfigMap", "argocd-ssh-known-hosts-cm", self.control_namespace
                ),
            )
            self.git.known_hosts = known_hosts_from(cm)
        started = time.monotonic()
        artifact = await self.git.fetch(
            source.url,
            wanted,
            source.path,
            creds,
            inputs_options={"value_files": list(source.value_files)},
        )
        self.observer.fetched(time.monotonic() - started)
        return artifact

    async def render(
        self, app: Delivery, artifact: Artifact, *, scratch: Path | None = None
    ) -> Rendered:
        """Render ``artifact`` with the app's options; RenderError when they are unusable.
        ``scratch``: where the renderer's temporary copy goes (a private SOPS workspace)."""
        options = app.render
        if options is None:
            raise RenderError(app.render_problem or f"{app.display}: no render options")
        server = getattr(getattr(self.cluster, "config", None), "server", "")
        version = await self._settings(f"version:{server}", self.cluster.server_version)
        mapper = await self.cluster.discover()
        hits = self.renderer.stats.hits
        started = time.monotonic()
        rendered = await self.renderer.render(
            artifact,
            options,
            kube_version=str(version.get("gitVersion", "")),
            api_versions=mapper.api_versions(),
            scratch=scratch,
        )
        self.observer.rendered(
            rendered.tool, time.monotonic() - started, self.renderer.stats.hits > hits
        )
        return rendered

    async def compare(self, app: Delivery, *, revision: str | None = None) -> Comparison:
        """Fetch, render, dry-run and diff; raises ComparisonError, changes nothing."""
        engine = await self._route(app)
        if engine is not self:
            return await engine.compare(app, revision=revision)
        if self.admission is not None:  # AppProject: repo and destination, before any fetch
            refused = await self.admission.admit(app)
            if refused:
                raise ComparisonError(refused, reason=INVALID_SPEC)
        try:
            artifact = await self.fetch(app, revision)
        except SourceError as exc:
            transient, reason = _fetch_failure(exc)
            raise ComparisonError(str(exc), transient=transient, reason=reason) from exc
        try:
            # SOPS: an opt-in for Applications (gitsail.app.sops): decrypted in memory, and
            # encrypted generator inputs in a private copy, never in the shared checkout.
            rendered = await render_decrypted(
                self.control,
                self.control_namespace,
                app,
                artifact,
                lambda source, scratch: self.render(app, source, scratch=scratch),
                work_dir=self.renderer.work_dir,
                policy=self.renderer.policy,
            )
        except (SourceError, RenderError) as exc:
            raise ComparisonError(
                str(exc), revision=artifact.revision, reason="RenderFailed"
            ) from exc
        except ReconcileError as exc:
            raise ComparisonError(
                exc.message,
                revision=artifact.revision,
                transient=exc.transient,
                reason=exc.reason,
            ) from None
        try:
            # Off the event loop: jq expressions are compiled in a worker, with a deadline.
            rules = (
                await asyncio.to_thread(parse_ignore_differences, list(app.ignore_differences))
                if app.ignore_differences
                else parse_ignore_differences([])
            )
        except (DiffError, ValueError) as exc:
            raise ComparisonError(
                f"ignoreDifferences: {exc}", revision=artifact.revision, reason="InvalidSpec"
            ) from exc
        desired: list[Obj] = []
        hooks: list[Obj] = []
        for number, obj in enumerate(rendered.manifests, start=1):
            is_hook = bool(hook_types(obj))
            _require_name(obj, number, generate_name_ok=is_hook)
            (hooks if is_hook else desired).append(obj)
        try:
            prepared = [await self._prepare(app, obj) for obj in desired]
            for hook in hooks:  # not compared, but a bad name is an error all the same
                await self._prepare(app, hook)
        except ComparisonError as exc:
            raise ComparisonError(str(exc), revision=artifact.revision, reason=exc.reason) from exc
        except KubeError as exc:  # discovery failed: the API server may answer next time
            raise ComparisonError(
                str(exc), revision=artifact.revision, transient=True, reason="DiscoveryFailed"
            ) from exc
        if self.bound is not None:  # the cluster Secret's namespaces / clusterResources
            for obj in [*prepared, *hooks]:
                refused = self.bound.allows(str((obj.get("metadata") or {}).get("namespace") or ""))
                if refused:
                    raise ComparisonError(refused, revision=artifact.revision, reason=INVALID_SPEC)
        if self.admission is not None:  # AppProject: kinds and namespaces, before dry runs
            refused = await self.admission.admit_objects(app, [*prepared, *hooks])
            if refused:
                raise ComparisonError(refused, revision=artifact.revision, reason=INVALID_SPEC)
        child_health = await self.child_application_health()
        live: dict[ResourceKey, Obj] = {}
        pairs: list[tuple[Obj | None, Obj | None]] = []
        health: dict[ResourceKey, Health | None] = {}
        shared: list[str] = []
        desired_keys = set()
        for obj in prepared:
            key = ResourceKey.of(obj)
            desired_keys.add(key)
            try:
                current = await self.get_live(
                    str(obj["apiVersion"]), key.kind, key.name, key.namespace or None
                )
            except NotFoundKind:
                current = None  # not served (yet): a CRD in this app, or an error the sync names
            if current is not None:
                live[key] = current
                warning = shared_resource_warning(current, app.owner)
                if warning is not None:
                    shared.append(warning)
            predicted = await self._dry_run(obj, current)
            pairs.append((predicted, current))
            health[key] = resource_health(current, child_applications=child_health)
        owned: list[Obj] = []
        for api_version, key in _inventory_keys(app.inventory):
            if key in desired_keys:
                if key in live and _is_own(app, live[key]):
                    owned.append(live[key])
                continue
            try:
                current = await self.get_live(
                    api_version, key.kind, key.name, key.namespace or None
                )
            except KubeError:
                continue
            if current is not None and _is_own(app, current):
                owned.append(current)
                live[key] = current
                pairs.append((None, current))
                health[key] = resource_health(current, child_applications=child_health)

        def diff_all() -> list[ResourceDiff]:
            opener = self.open_sealed
            return [diff_resource(d, c, rules=rules, open_sealed=opener) for d, c in pairs]

        try:
            # A big app's diffs take one hop off the event loop (jq runs in a worker process);
            # a small one's cost less than the hop.
            small = len(pairs) <= INLINE_DIFFS and not rules  # (no jq to wait for)
            if small and not any(_sealed(d) or _sealed(c) for d, c in pairs):
                diffs = diff_all()
            else:
                diffs = await asyncio.to_thread(diff_all)
        except DiffError as exc:
            raise ComparisonError(f"ignoreDifferences: {exc}") from exc
        return Comparison(
            app=app,
            artifact=artifact,
            rendered=rendered,
            desired=tuple(prepared),
            hooks=tuple(hooks),
            diffs=tuple(diffs),
            live=live,
            owned_live=tuple(owned),
            health=health,
            shared=tuple(shared),
        )

    async def reassess_health(self, comparison: Comparison, app: Delivery) -> Comparison | None:
        """``comparison`` with its live objects read again and their health recomputed.

        The desired objects, diffs and revision stay those of ``comparison``: diffs ignore
        ``status``, so a status change does not change them. None when an object the
        comparison saw is gone, or changed beyond its status (its generation or metadata):
        then only a full comparison is right.
        """
        try:
            engine = await self._route(app)
        except ComparisonError:
            return None
        if engine is not self:
            return await engine.reassess_health(comparison, app)
        live: dict[ResourceKey, Obj] = {}
        health = dict(comparison.health)
        for key, seen in comparison.live.items():
            try:
                current = await self.get_live(
                    str(seen.get("apiVersion", "")), key.kind, key.name, key.namespace or None
                )
            except KubeError:
                return None
            if current is None or live_version(current) != live_version(seen):
                return None
            live[key] = current
            health[key] = resource_health(current)
        owned = tuple(live.get(ResourceKey.of(obj), obj) for obj in comparison.owned_live)
        return replace(comparison, app=app, live=live, owned_live=owned, health=health)

    async def _prepare(self, app: Delivery, obj: Obj) -> Obj:
        api_version = str(obj.get("apiVersion", ""))
        kind = str(obj.get("kind", ""))
        prepared = {**obj, "metadata": dict(obj.get("metadata") or {})}
        meta = prepared["metadata"]
        try:
            info = await self.cluster.resource_for(api_version, kind)
        except NotFoundKind:
            # Served only once a CRD in this app is applied; compared as "missing".
            info = None
        if info is not None and info.namespaced:
            meta["namespace"] = meta.get("namespace") or app.destination_namespace
        elif info is not None:
            meta.pop("namespace", None)
        name = meta.get("name")
        try:
            group = info.group if info else api_version.rpartition("/")[0]
            check_names(group, kind, str(name) if name else None, meta.get("namespace") or None)
        except KubeError as exc:
            raise ComparisonError(
                f"{api_version} {kind} {name or ''}: {exc.message}", reason="InvalidManifest"
            ) from exc
        return app.owner.mark(prepared)

    async def _dry_run(self, obj: Obj, current: Obj | None) -> Obj:
        """What the object would look like after apply; the manifest itself if that is
        unknown. A missing object is not asked about: it diffs as missing whatever the
        server would default, and the sync validates the create before it applies."""
        if current is None:
            return obj
        if applies_as_is(obj, current, field_manager=self.field_manager):
            return current  # this manager's apply of this very manifest, unchanged since
        known = self._predictions.get(obj, current, field_manager=self.field_manager)
        if known is not None:
            return known
        try:
            predicted = await self.cluster.apply(
                obj, field_manager=self.field_manager, force=True, dry_run=True
            )
        except KubeError:
            # Invalid, or the kind is not served any more: the sync's own validation
            # reports it; for the comparison the object is simply out of sync.
            return obj
        self._predictions.put(obj, current, predicted, field_manager=self.field_manager)
        return predicted

    # -- status ------------------------------------------------------------------------

    async def write_status(
        self,
        app: Delivery,
        comparison: Comparison | None,
        *,
        error: str = "",
        extra: dict[str, Any] | None = None,
        clear_operation: bool = False,
    ) -> Obj:
        """Write the kind's status after a comparison (``error``: why there is none), as its
        adapter computes it, in one merge patch on the control plane; with
        ``clear_operation`` the same patch removes the ``operation`` request (as Argo CD
        does: no moment where the result is recorded and the request still pending)."""
        status = self.application_status(app, comparison, error=error, extra=extra)
        body: dict[str, Any] = {"status": status}
        if clear_operation:
            body["operation"] = None
        return await self.control.merge_patch(
            app.api_version, app.kind, app.name, body, namespace=app.namespace
        )

    @staticmethod
    def application_status(
        app: Delivery,
        comparison: Comparison | None,
        *,
        error: str = "",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The kind's ``status`` for ``comparison`` (or for one that failed with ``error``) as
        a merge-patch fragment, from its adapter; ``extra`` is merged last. Pure: the
        controller collects it into its one status patch per reconcile."""
        return _adapter(app).status_patch(app, comparison, error=error, extra=extra)

    async def set_condition(self, obj: Obj, ctype: str, message: str) -> bool:
        """Put one condition on an Application, replacing any of the same type.

        Nothing is written when the same condition (type and message) is already there, so
        an error that repeats leaves the status unchanged (no write, no watch event, no new
        reconcile). Returns whether it wrote.
        """
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        current = [
            c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)
        ]
        if not isinstance(name, str) or not name:
            return False  # nothing to address the write to
        if any(c.get("type") == ctype and c.get("message") == message for c in current):
            return False
        conditions = [c for c in current if c.get("type") != ctype]
        conditions.append({"type": ctype, "message": message, "lastTransitionTime": now()})
        await self.kube.merge_patch(  # the control plane (``kube`` is ``control``)
            str(obj.get("apiVersion") or _ARGO_API_VERSION),
            str(obj.get("kind") or _ARGO_KIND),
            name,
            {"status": {"conditions": conditions}},
            namespace=meta.get("namespace"),
        )
        return True

    async def refresh(self, app: Delivery) -> Comparison | None:
        """Compare and write status; a comparison error is written as a condition."""
        try:
            comparison = await self.compare(app)
        except ComparisonError as exc:
            await self.write_status(app, None, error=str(exc))
            return None
        await self.write_status(app, comparison)
        return comparison

    # -- operations --------------------------------------------------------------------

    async def sync(
        self,
        app: Delivery,
        *,
        revision: str | None = None,
        prune: bool = False,
        dry_run: bool = False,
        resources: Sequence[ResourceKey] | None = None,
        initiated_by: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        allow_empty: bool = False,
        operation: dict[str, Any] | None = None,
        progress: Progress = lambda _r: None,
        retry: Retry | None = None,
        retry_count: int = 0,
        clear_operation: bool = False,
        compared: Comparison | None = None,
    ) -> OperationOutcome:
        """Run one sync operation and record it (operationState, history, status).

        ``operation`` is the Argo CD operation being run (recorded verbatim in
        ``operationState.operation``); without it one is described from the arguments.
        With ``retry``, this is attempt ``retry_count + 1`` of it; a failure with retries
        left is recorded as a scheduled retry (``OperationOutcome.retry_at``), not as the
        end of the operation. With ``clear_operation`` the Application's ``operation``
        request is removed by the write that records the end of the operation.
        ``compared`` is a comparison of this very spec just made by the caller (the
        controller's automated sync): used instead of comparing again when it is of the
        revision to sync and no other source or resumed run is asked for.
        """
        try:
            engine = await self._route(app)
        except ComparisonError:
            engine = self  # its comparison fails the same way, and is recorded as the result
        if engine is not self:
            return await engine.sync(
                app,
                revision=revision,
                prune=prune,
                dry_run=dry_run,
                resources=resources,
                initiated_by=initiated_by,
                source=source,
                allow_empty=allow_empty,
                operation=operation,
                progress=progress,
                retry=retry,
                retry_count=retry_count,
                clear_operation=clear_operation,
                compared=compared,
            )
        resume = _resume_point(app.origin, operation) if not dry_run else None
        started = resume.started if resume is not None else now()
        if resume is not None:
            log.info(
                "resuming the sync of %s/%s at %s wave %d, where it stopped (%s)",
                app.namespace,
                app.name,
                resume.progress.phase,
                resume.progress.wave,
                resume.progress.message,
            )
            # The revision the interrupted run was syncing, not a newer one.
            revision = resume.revision or revision
        operation = operation or {
            "sync": {
                "revision": revision or app.source.revision,
                "prune": prune,
                "dryRun": dry_run,
            },
            "initiatedBy": initiated_by or {"username": "gitsail-cli"},
        }
        if resources and "resources" not in operation["sync"]:
            operation["sync"]["resources"] = [
                {"group": k.group, "kind": k.kind, "namespace": k.namespace, "name": k.name}
                for k in resources
            ]
        if source is not None:
            # In the kind's own terms (Argo CD: a history entry's ``source``).
            app = _adapter(app).with_source(app, source)
        if terminating(app.origin) and not dry_run:
            # Asked to stop before this attempt began (e.g. while a retry was waiting).
            result = SyncResult("Failed", TERMINATED_MESSAGE, terminated=True)
            await self._finish(
                app, operation, result, started, "", None, False, None, 0, clear_operation
            )
            return OperationOutcome(result, "", None, None)
        termination = _Termination(lambda: self._read_own(app))
        if self.admission is not None and not dry_run and resume is None:  # sync windows
            automated = bool((operation.get("initiatedBy") or {}).get("automated"))
            refused = await self.admission.sync_refused(app, automated=automated)
            if refused:
                result = SyncResult("Failed", refused)
                await self._finish(
                    app, operation, result, started, "", None, False, None, 0, clear_operation
                )
                return OperationOutcome(result, "", None, None)
        running = operation_start(operation, started, retry_count)
        recorded = _start_recorded(app.origin, running)
        if recorded:  # written with the operation (an automated sync): not written again
            started = running["startedAt"] = recorded
        elif not dry_run and resume is None:  # a resumed run keeps what it recorded
            await self.control.merge_patch(
                app.api_version,
                app.kind,
                app.name,
                {"status": {"operationState": running}},
                namespace=app.namespace,
            )
        try:
            if (
                compared is not None
                and source is None
                and resume is None
                and revision is not None
                and compared.artifact.revision == revision
            ):
                comparison = compared
            else:
                comparison = await self.compare(app, revision=revision)
        except ComparisonError as exc:
            result = SyncResult("Error", str(exc))
            retry_at = await self._finish(
                app,
                operation,
                result,
                started,
                "",
                None,
                dry_run,
                retry,
                retry_count,
                clear_operation,
            )
            return OperationOutcome(result, "", None, retry_at)
        if prune and not allow_empty and not comparison.desired and comparison.owned_live:
            result = SyncResult(
                "Failed",
                f"refusing to prune all {len(comparison.owned_live)} resources of {app.name}: "
                "the source rendered no objects. If that is intended, allow it with "
                "syncPolicy.automated.allowEmpty=true (or `gitsail app sync --allow-empty`)",
            )
            retry_at = await self._finish(
                app,
                operation,
                result,
                started,
                comparison.artifact.revision,
                comparison,
                dry_run,
                retry,
                retry_count,
                clear_operation,
            )
            return OperationOutcome(result, comparison.artifact.revision, comparison, retry_at)
        result = await run_sync(
            self.cluster,
            SyncRequest(
                owner=app.owner,
                inventory=app.inventory,
                destination_namespace=app.destination_namespace,
                desired=comparison.desired + comparison.hooks,
                owned_live=comparison.owned_live,
                options=app.policy.options,
                prune=prune,
                dry_run=dry_run,
                resources=frozenset(resources) if resources else None,
                in_sync=frozenset(d.key for d in comparison.diffs if d.status == "Synced"),
                hooks=not resources,
                managed_namespace_metadata=app.policy.managed_namespace_metadata,
                field_manager=self.field_manager,
                resume=resume.progress if resume is not None else None,
            ),
            progress,
            lookup=self.live,
            changes=self.changes,
            checkpoint=self._checkpoint(app, comparison.artifact.revision, termination),
            predictions=self._predictions,
            terminated=termination if not dry_run else None,
        )
        revision_done = comparison.artifact.revision
        retry_at = await self._finish(
            app,
            operation,
            result,
            started,
            revision_done,
            comparison,
            dry_run,
            retry,
            retry_count,
            clear_operation,
        )
        return OperationOutcome(result, revision_done, comparison, retry_at)

    def _checkpoint(
        self, app: Delivery, revision: str, termination: _Termination | None = None
    ) -> Checkpoint:
        """Writes the progress of the running sync into ``operationState`` (Argo CD's
        ``phase: Running``, ``message``, ``syncResult``), for a restarted controller; called
        by the sync only where a resume differs from a rerun (``gitsail.sync.engine``).

        With ``termination``, the write is conditional on the Application's
        resourceVersion and never replaces a ``Terminating`` phase: a request to stop that
        lands while progress is written is not lost."""

        async def write(progress: OperationProgress) -> None:
            state = progress.to_state()
            state["syncResult"].update(revision=revision, source=_adapter(app).source_status(app))
            try:
                for _ in range(5):
                    guard: dict[str, Any] = {}
                    if termination is not None:
                        if termination.seen:
                            return
                        current = await self._read_own(app)
                        if terminating(current):
                            termination.seen = True
                            return
                        version = ((current or {}).get("metadata") or {}).get("resourceVersion")
                        guard = {"metadata": {"resourceVersion": version}} if version else {}
                    try:
                        await self.control.merge_patch(
                            app.api_version,
                            app.kind,
                            app.name,
                            {**guard, "status": {"operationState": state}},
                            namespace=app.namespace,
                        )
                        return
                    except Conflict:
                        continue  # changed meanwhile: read again (maybe a termination)
            except KubeError as exc:  # the sync goes on; a restart would start it over
                log.warning("progress of %s/%s not recorded: %s", app.namespace, app.name, exc)

        return write

    async def _finish(
        self,
        app: Delivery,
        operation: dict[str, Any],
        result: SyncResult,
        started: str,
        revision: str,
        comparison: Comparison | None,
        dry_run: bool,
        retry: Retry | None = None,
        retry_count: int = 0,
        clear_operation: bool = False,
    ) -> float | None:
        """Record the attempt; the epoch time of the scheduled retry, or None when done
        (then, with ``clear_operation``, the same write removes the request)."""
        if dry_run:
            if clear_operation:
                await self.clear_operation(app)
            return None
        if result.terminated:
            retry = None  # stopping was asked for: never retried
        finished = now()
        phase, message, retry_at = result.phase, result.message, None
        if phase in ("Failed", "Error") and retry is not None:
            if retry.limit < 0 or retry_count < retry.limit:
                # Argo CD: the operation stays Running, finishedAt marks the failed attempt
                # and retryCount counts the retries started so far, this one included.
                delay = retry.delay(retry_count)
                retry_at = time.time() + delay
                at = dt.datetime.fromtimestamp(retry_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                phase = "Running"
                message = (
                    f"{message.rstrip('.')}. Retrying attempt #{retry_count + 1} in {delay:g}s"
                    f" (at {at})."
                )
            elif retry_count > 0:
                message = f"{message} (retried {retry_count} times)."
        state = {
            "operation": operation,
            "phase": phase,
            "message": message,
            "startedAt": started,
            "finishedAt": finished,
            "retryCount": (retry_count + 1 if retry_at is not None else retry_count) or None,
            "progress": None,  # only a running attempt has one
            "syncResult": {
                "revision": revision,
                "source": _adapter(app).source_status(app),
                "resources": [r.to_status() for r in result.resources],
            },
        }
        extra: dict[str, Any] = {"operationState": state}
        fresh = await self._read_own(app) or app.origin
        if result.phase == "Succeeded":
            history = list((fresh.get("status") or {}).get("history") or [])
            next_id = max((int(h.get("id", 0)) for h in history), default=-1) + 1
            history.append(
                {
                    "id": next_id,
                    "revision": revision,
                    "deployedAt": finished,
                    "deployStartedAt": started,
                    "source": _adapter(app).source_status(app),
                    "initiatedBy": operation.get("initiatedBy", {}),
                }
            )
            limit = app.history_limit
            extra["history"] = history[len(history) - limit :] if limit else None
        fresh = _with_sync_error(fresh, result, revision)
        app = _adapter(app).read(fresh)
        try:
            after = await self.compare(app) if comparison is not None else None
        except ComparisonError:
            after = comparison
        await self.write_status(
            app, after, extra=extra, clear_operation=clear_operation and retry_at is None
        )
        return retry_at

    async def run_requested_operation(
        self,
        app: Delivery,
        progress: Progress = lambda _r: None,
        *,
        clear: bool = True,
        retry: Retry | None = None,
        retry_count: int = 0,
        compared: Comparison | None = None,
    ) -> OperationOutcome | None:
        """Run the sync requested in the Application's ``operation`` field.

        This is how Argo CD clients (``argocd app sync``, the UI, kubectl patch) ask for a
        sync. With ``clear`` the field is removed afterwards (the controller clears it
        itself, once retries are over). Returns None when no operation is requested.
        """
        operation = app.origin.get("operation")
        if not isinstance(operation, dict) or not isinstance(operation.get("sync"), dict):
            return None
        spec = operation["sync"]
        automated = bool((operation.get("initiatedBy") or {}).get("automated"))
        resources = [ResourceKey.from_ref(r) for r in spec.get("resources") or []]
        # A rollback carries the history entry's source: this operation renders it, not spec.
        source = spec.get("source")
        return await self.sync(
            app,
            source=source if isinstance(source, dict) and source else None,
            revision=str(spec["revision"]) if spec.get("revision") else None,
            prune=bool(spec.get("prune", False)),
            dry_run=bool(spec.get("dryRun", False)),
            resources=resources or None,
            initiated_by=operation.get("initiatedBy") or {"username": "unknown"},
            allow_empty=automated
            and bool(app.policy.automated and app.policy.automated.allow_empty),
            operation=operation,
            progress=progress,
            retry=retry,
            retry_count=retry_count,
            clear_operation=clear,
            compared=compared,
        )

    async def clear_operation(self, app: Delivery) -> None:
        await self.control.merge_patch(
            app.api_version, app.kind, app.name, {"operation": None}, namespace=app.namespace
        )

    async def owned_objects(self, app: Delivery) -> list[tuple[str, Obj]]:
        """(apiVersion, live object) of the inventory rows that still carry the app's mark.
        ``ComparisonError`` when the destination cluster is unknown or down."""
        engine = await self._route(app)
        if engine is not self:
            return await engine.owned_objects(app)
        owned = []
        for api_version, key in _inventory_keys(app.inventory):
            try:
                live = await self.cluster.get(
                    api_version, key.kind, key.name, key.namespace or None
                )
            except KubeError:
                continue
            if live is not None and _is_own(app, live):
                owned.append((api_version, live))
        return owned

    async def delete_resources(
        self, app: Delivery, *, propagation: str = "Foreground"
    ) -> list[ResourceKey]:
        """Delete every object in the app's inventory that still carries its tracking mark.
        ``ComparisonError`` when the destination cluster is unknown or down."""
        engine = await self._route(app)
        if engine is not self:
            return await engine.delete_resources(app, propagation=propagation)
        deleted = []
        for api_version, live in reversed(await self.owned_objects(app)):
            key = ResourceKey.of(live)
            namespace = key.namespace or None
            meta = live.get("metadata") or {}
            # Only the object read (and found ours) just now: not a replacement, not a changed one.
            seen = {
                "uid": str(meta.get("uid") or ""),
                "resourceVersion": str(meta.get("resourceVersion") or ""),
            }
            try:
                if await self.cluster.delete(
                    api_version,
                    key.kind,
                    key.name,
                    namespace,
                    propagation=propagation,
                    preconditions=seen,
                ):
                    deleted.append(key)
            except PreconditionFailed:
                continue  # changed since read: looked at again on the next pass
        return deleted
