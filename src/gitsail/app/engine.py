"""The pipeline for one Application: source → render → diff → sync → health → status.

``AppEngine`` is what the CLI runs in-process and what the controller runs continuously;
both go through the same methods:

- ``compare(app)`` fetches the source, renders it, dry-runs every object with server-side
  apply and diffs the result against the live objects (plus the inventory's leftovers), and
  computes sync status and health. It changes nothing in the cluster.
- ``sync(app, …)`` runs one sync operation on a fresh comparison and records the
  operation state and a history entry.
- ``write_status(app, comparison)`` writes what Argo CD writes under ``status``.

A failed fetch or render never reaches the sync stage, so it can never prune; the error
lands in ``status.conditions`` (``ComparisonError``) and the operation message.

- ``reassess_health(comparison)`` re-reads only the live objects of an earlier comparison
  and recomputes health: a status-only change of a managed object (a Deployment becoming
  Available) shows within seconds, without a fetch, a render or a dry run.
- A failed sync with a retry strategy is rescheduled the way Argo CD does it: the operation
  stays ``Running`` with ``finishedAt`` set and ``retryCount`` one higher, and retry number
  *n* may start ``duration × factorⁿ⁻¹`` (capped at ``maxDuration``) after that time
  (``Retry.delay``). The caller (the controller) waits; the engine only records.
- A running sync records its progress in ``operationState`` (the step reached, the results
  so far, Argo CD's "waiting for …" message; see ``gitsail.sync.progress``). Run again while
  that state is still ``Running`` for the same operation with no ``finishedAt`` (the
  controller was restarted), it resumes at the recorded revision and step instead of
  starting over: a hook that succeeded is not run twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gitsail.app.model import API_VERSION, IN_CLUSTER, App, AppSpecError, Retry
from gitsail.diff import DiffError, ResourceDiff, diff_resource, parse_ignore_differences
from gitsail.health import (
    Health,
    HealthStatus,
    aggregate,
    application_health_configured,
    resource_health,
)
from gitsail.kube import Kube, KubeError, NotFoundKind, PreconditionFailed, check_names
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered, Renderer, RenderError, RenderOptions
from gitsail.source import (
    GitSource,
    HelmRepoSource,
    SourceError,
    known_hosts_from,
    match_credentials,
    redact_url,
)
from gitsail.sync.engine import (
    Changes,
    Checkpoint,
    OperationProgress,
    ResourceResult,
    SyncRequest,
    SyncResult,
    run_sync,
)
from gitsail.sync.inventory import Inventory
from gitsail.sync.ownership import ArgoTracking, shared_resource_warning
from gitsail.sync.plan import hook_types

__all__ = ["AppEngine", "Comparison", "ComparisonError", "OperationOutcome", "now"]

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The condition an app gets when its source renders nothing (see write_status).
NO_RESOURCES = "NoResourcesWarning"


class ComparisonError(Exception):
    """Fetching, rendering or dry-running the app failed; nothing was changed.

    ``revision`` is the commit the failure happened at when the source was fetched ("" when
    the fetch itself failed), so a caller can tell a new revision from the same failure.
    """

    def __init__(self, message: str, *, revision: str = "") -> None:
        super().__init__(message)
        self.revision = revision


@dataclass(frozen=True)
class Comparison:
    app: App
    artifact: Artifact
    rendered: Rendered
    desired: tuple[Obj, ...]  # prepared (namespace, tracking) — hooks excluded
    hooks: tuple[Obj, ...]
    diffs: tuple[ResourceDiff, ...]
    live: dict[ResourceKey, Obj]
    owned_live: tuple[Obj, ...]
    health: dict[ResourceKey, Health | None]
    shared: tuple[str, ...] = ()  # SharedResourceWarning messages: objects another app tracks

    @property
    def sync_status(self) -> str:
        return "Synced" if all(d.status == "Synced" for d in self.diffs) else "OutOfSync"

    @property
    def app_health(self) -> HealthStatus:
        ignored = {
            k
            for k, obj in self.live.items()
            if ((obj.get("metadata") or {}).get("annotations") or {}).get(
                "argocd.argoproj.io/ignore-healthcheck"
            )
            == "true"
        }
        desired = {ResourceKey.of(o) for o in self.desired}
        return aggregate(h for k, h in self.health.items() if k in desired and k not in ignored)

    def resources_status(self) -> list[dict[str, Any]]:
        """``status.resources``: every desired object plus owned leftovers (the inventory)."""
        rows = []
        versions = {ResourceKey.of(o): str(o.get("apiVersion", "")) for o in self.desired}
        versions.update({ResourceKey.of(o): str(o.get("apiVersion", "")) for o in self.owned_live})
        for d in sorted(self.diffs, key=lambda d: d.key):
            version = versions.get(d.key, "").rpartition("/")[2]
            row: dict[str, Any] = {
                "group": d.key.group,
                "version": version,
                "kind": d.key.kind,
                "namespace": d.key.namespace,
                "name": d.key.name,
                "status": d.status,
            }
            health = self.health.get(d.key)
            if health is not None:
                row["health"] = {"status": str(health.status)}
                if health.message:
                    row["health"]["message"] = health.message
            if d.requires_pruning:
                row["requiresPruning"] = True
            rows.append(row)
        return rows

    def images(self) -> list[str]:
        found: set[str] = set()
        for obj in self.desired:
            spec = obj.get("spec") or {}
            pod = (spec.get("template") or {}).get("spec") or spec
            if obj.get("kind") == "CronJob":
                pod = (
                    ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
                ).get("spec") or {}
            for group in ("containers", "initContainers"):
                for container in pod.get(group) or []:
                    if isinstance(container, dict) and container.get("image"):
                        found.add(str(container["image"]))
        return sorted(found)


@dataclass(frozen=True)
class OperationOutcome:
    result: SyncResult
    revision: str
    comparison: Comparison | None
    retry_at: float | None = None  # epoch seconds of the scheduled retry; None: completed


Progress = Callable[[ResourceResult], None]


def _inventory(app_obj: Obj) -> Inventory:
    """The app's inventory: the rows of ``status.resources``."""
    return Inventory.from_argo((app_obj.get("status") or {}).get("resources"))


def _inventory_keys(app_obj: Obj) -> list[tuple[str, ResourceKey]]:
    """(apiVersion, key) of every entry of the app's inventory."""
    return [(e.api_version, e.key) for e in _inventory(app_obj)]


def _owner(app: App) -> ArgoTracking:
    """How the app marks its objects: Argo CD's tracking id under its tracking name."""
    return ArgoTracking(app.instance, display=f"{app.namespace}/{app.name}")


def _is_own(app: App, live: Obj) -> bool:
    """Carries the app's mark and no other owner's (never prune what another claims)."""
    owner = _owner(app)
    return owner.owns(live) and owner.claimant(live) is None


def _shown_source(source: dict[str, Any]) -> dict[str, Any]:
    """``spec.source`` as copied into status, history and results: no URL credentials."""
    url = source.get("repoURL")
    return {**source, "repoURL": redact_url(url)} if isinstance(url, str) else dict(source)


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
        "a name (only hooks may use metadata.generateName)"
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


def _live_version(live: Obj | None) -> str:
    """What a dry-run prediction depends on in the live object.

    For kinds with ``metadata.generation`` that is the generation plus the rest of the
    metadata: status writes (which change the resourceVersion all the time) do not change
    what applying the manifest would produce, so the prediction is reused across them.
    Other kinds use the resourceVersion. "" (no live object) is never memoized.
    """
    meta = (live or {}).get("metadata") or {}
    if "generation" not in meta:
        return str(meta.get("resourceVersion", ""))
    stable = {k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode())
    return f"g{meta['generation']}:{digest.hexdigest()}"


class PipelineObserver:
    """Told how long fetches and renders take (the controller turns this into metrics)."""

    def fetched(self, seconds: float) -> None:
        """A git fetch (revision resolved with ls-remote, fetched if new) finished."""

    def rendered(self, tool: str, seconds: float, cache_hit: bool) -> None:
        """A render finished, from the cache or by running the tool."""


@dataclass
class AppEngine:
    """The pipeline for Applications, over one cluster connection.

    ``live`` looks up live objects (default: a GET per object; the controller passes its
    watch caches, so a steady-state comparison costs no API request). Dry-run predictions
    are memoized by (desired object, live resourceVersion): while neither changes, the
    server would answer the same, so it is not asked again.
    """

    kube: Kube
    control_namespace: str = "argocd"
    git: GitSource = field(default_factory=GitSource)
    helm_repos: HelmRepoSource = field(default_factory=HelmRepoSource)
    renderer: Renderer = field(default_factory=Renderer)
    field_manager: str = "gitsail"
    live: LiveLookup | None = None
    changes: Changes | None = None  # wakes health waits on watch events (with ``live``)
    observer: PipelineObserver = field(default_factory=lambda: PipelineObserver())
    settings_ttl: float = 30.0
    _predictions: dict[tuple[str, str], Obj] = field(default_factory=dict, repr=False)
    _settings_cache: dict[str, tuple[float, Any]] = field(default_factory=dict, repr=False)

    async def get_live(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        if self.live is not None:
            return await self.live(api_version, kind, name, namespace)
        return await self.kube.get(api_version, kind, name, namespace)

    # -- reading ----------------------------------------------------------------------

    async def get_application(self, name: str, namespace: str | None = None) -> Obj | None:
        return await self.kube.get(
            API_VERSION, "Application", name, namespace or self.control_namespace
        )

    async def list_applications(self, namespace: str | None = None) -> list[Obj]:
        return await self.kube.list(API_VERSION, "Application", namespace or self.control_namespace)

    async def _settings(self, what: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """Cluster settings read at most every ``settings_ttl`` seconds (not once per app)."""
        cached = self._settings_cache.get(what)
        if cached is not None and time.monotonic() - cached[0] < self.settings_ttl:
            return cached[1]
        value = await load()
        self._settings_cache[what] = (time.monotonic(), value)
        return value

    async def child_application_health(self) -> bool:
        """Whether child Applications count towards their parent's health (app of apps).

        Argo CD stopped assessing ``argoproj.io/Application`` in 1.8; operators bring it back
        with a ``resource.customizations.health.argoproj.io_Application`` health check in
        ``argocd-cm`` (or the older ``resource.customizations`` block naming the kind). With
        it a child's own ``status.health`` is used; without it a child has no health.
        """

        async def load() -> bool:
            try:
                cm = await self.kube.get("v1", "ConfigMap", "argocd-cm", self.control_namespace)
            except KubeError:
                return False
            return application_health_configured((cm or {}).get("data") or {})

        return bool(await self._settings("argocd-cm:application-health", load))

    async def _credentials_for(self, repo_url: str) -> Any:
        secrets = await self._settings(
            "repo-secrets",
            lambda: self.kube.list(
                "v1",
                "Secret",
                self.control_namespace,
                label_selector="argocd.argoproj.io/secret-type in (repository,repo-creds)",
            ),
        )
        return match_credentials(repo_url, secrets)

    async def fetch(self, app: App, revision: str | None = None) -> Artifact:
        creds = await self._credentials_for(app.repo_url)
        wanted = revision or app.target_revision
        if app.is_helm_repo:
            return await self.helm_repos.fetch_chart(
                app.repo_url, str(app.source["chart"]), "" if wanted == "HEAD" else wanted, creds
            )
        if app.repo_url.startswith("ssh://") or "@" in app.repo_url.split("://")[-1].split("/")[0]:
            cm = await self._settings(
                "known-hosts",
                lambda: self.kube.get(
                    "v1", "ConfigMap", "argocd-ssh-known-hosts-cm", self.control_namespace
                ),
            )
            self.git.known_hosts = known_hosts_from(cm)
        helm = app.source.get("helm") or {}
        started = time.monotonic()
        artifact = await self.git.fetch(
            app.repo_url,
            wanted,
            str(app.source.get("path") or "."),
            creds,
            inputs_options={"value_files": list(helm.get("valueFiles") or [])},
        )
        self.observer.fetched(time.monotonic() - started)
        return artifact

    async def render(self, app: App, artifact: Artifact) -> Rendered:
        options = RenderOptions.from_source(
            app.source, app_name=app.name, namespace=app.destination_namespace
        )
        version = await self._settings("version", self.kube.server_version)
        mapper = await self.kube.discover()
        hits = self.renderer.stats.hits
        started = time.monotonic()
        rendered = await self.renderer.render(
            artifact,
            options,
            kube_version=str(version.get("gitVersion", "")),
            api_versions=mapper.api_versions(),
        )
        self.observer.rendered(
            rendered.tool, time.monotonic() - started, self.renderer.stats.hits > hits
        )
        return rendered

    async def compare(self, app: App, *, revision: str | None = None) -> Comparison:
        """Fetch, render, dry-run and diff; raises ComparisonError, changes nothing."""
        if app.destination_server not in (IN_CLUSTER, ""):
            raise ComparisonError(
                f"destination server {app.destination_server} is not registered; only "
                f"{IN_CLUSTER} (the cluster gitsail runs against) is supported yet"
            )
        try:
            artifact = await self.fetch(app, revision)
        except SourceError as exc:
            raise ComparisonError(str(exc)) from exc
        try:
            rendered = await self.render(app, artifact)
        except (SourceError, RenderError) as exc:
            raise ComparisonError(str(exc), revision=artifact.revision) from exc
        try:
            rules = parse_ignore_differences(list(app.ignore_differences))
        except (DiffError, ValueError) as exc:
            raise ComparisonError(f"ignoreDifferences: {exc}", revision=artifact.revision) from exc
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
        except (KubeError, ComparisonError) as exc:
            raise ComparisonError(str(exc), revision=artifact.revision) from exc
        child_health = await self.child_application_health()
        live: dict[ResourceKey, Obj] = {}
        diffs: list[ResourceDiff] = []
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
                warning = shared_resource_warning(current, _owner(app))
                if warning is not None:
                    shared.append(warning)
            predicted = await self._dry_run(obj, current)
            diffs.append(diff_resource(predicted, current, rules=rules))
            health[key] = resource_health(current, child_applications=child_health)
        owned: list[Obj] = []
        for api_version, key in _inventory_keys(app.raw):
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
                diffs.append(diff_resource(None, current, rules=rules))
                health[key] = resource_health(current, child_applications=child_health)
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

    async def reassess_health(self, comparison: Comparison, app: App) -> Comparison | None:
        """``comparison`` with its live objects read again and their health recomputed.

        The desired objects, diffs and revision stay those of ``comparison``: diffs ignore
        ``status``, so a status change does not change them. None when an object the
        comparison saw is gone, or changed beyond its status (its generation or metadata):
        then only a full comparison is right.
        """
        live: dict[ResourceKey, Obj] = {}
        health = dict(comparison.health)
        for key, seen in comparison.live.items():
            try:
                current = await self.get_live(
                    str(seen.get("apiVersion", "")), key.kind, key.name, key.namespace or None
                )
            except KubeError:
                return None
            if current is None or _live_version(current) != _live_version(seen):
                return None
            live[key] = current
            health[key] = resource_health(current)
        owned = tuple(live.get(ResourceKey.of(obj), obj) for obj in comparison.owned_live)
        return replace(comparison, app=app, live=live, owned_live=owned, health=health)

    async def _prepare(self, app: App, obj: Obj) -> Obj:
        api_version = str(obj.get("apiVersion", ""))
        kind = str(obj.get("kind", ""))
        prepared = {**obj, "metadata": dict(obj.get("metadata") or {})}
        meta = prepared["metadata"]
        try:
            info = await self.kube.resource_for(api_version, kind)
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
            raise ComparisonError(f"{api_version} {kind} {name or ''}: {exc.message}") from exc
        return _owner(app).mark(prepared)

    async def _dry_run(self, obj: Obj, current: Obj | None) -> Obj:
        """What the object would look like after apply; the manifest itself if that is unknown."""
        desired = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
        live_version = _live_version(current)
        memo_key = (desired, live_version)
        if live_version and memo_key in self._predictions:
            return self._predictions[memo_key]
        try:
            predicted = await self.kube.apply(
                obj, field_manager=self.field_manager, force=True, dry_run=True
            )
        except KubeError:
            # Missing namespace, kind not served yet, or invalid: the sync's own validation
            # reports it; for the comparison the object is simply out of sync.
            return obj
        if live_version:
            if len(self._predictions) > 20_000:
                self._predictions.clear()
            self._predictions[memo_key] = predicted
        return predicted

    # -- status ------------------------------------------------------------------------

    async def write_status(
        self,
        app: App,
        comparison: Comparison | None,
        *,
        error: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Obj:
        status: dict[str, Any] = {"reconciledAt": now()}
        old_conditions = (app.raw.get("status") or {}).get("conditions") or []
        conditions = [
            c
            for c in old_conditions
            if c.get("type")
            not in (
                "ComparisonError",
                "InvalidSpecError",
                "UnknownError",
                "SharedResourceWarning",
                NO_RESOURCES,
            )
        ]
        if comparison is not None and not comparison.rendered.manifests:
            since: dict[str, Any] = next(
                (c for c in old_conditions if c.get("type") == NO_RESOURCES), {}
            )
            # Argo CD shows such an app Synced/Healthy and says nothing; say it (a warning type,
            # so Argo CD's tools list it as a warning, not an error).
            path = comparison.artifact.path or "."
            conditions.append(
                {
                    "type": NO_RESOURCES,
                    "message": f"the source rendered no resources ({comparison.rendered.tool} "
                    f"at path {path!r}): nothing is deployed or checked; the app is Synced and "
                    "Healthy only because it manages nothing",
                    "lastTransitionTime": since.get("lastTransitionTime") or now(),
                }
            )
        if comparison is not None:
            # A warning that stays keeps its time, so an unchanged status stays unchanged.
            shared_since = {
                c.get("message"): c.get("lastTransitionTime")
                for c in old_conditions
                if c.get("type") == "SharedResourceWarning"
            }
            conditions += [
                {
                    "type": "SharedResourceWarning",
                    "message": m,
                    "lastTransitionTime": shared_since.get(m) or now(),
                }
                for m in comparison.shared
            ]
            status["sync"] = {
                "status": comparison.sync_status,
                "revision": comparison.artifact.revision,
                "comparedTo": {
                    "source": _shown_source(app.source),
                    "destination": {
                        "server": app.destination_server,
                        "namespace": app.destination_namespace,
                    },
                },
            }
            status["health"] = {"status": str(comparison.app_health)}
            status["resources"] = comparison.resources_status()
            status["summary"] = {"images": comparison.images()}
            status["sourceType"] = {
                "directory": "Directory",
                "kustomize": "Kustomize",
                "helm": "Helm",
            }.get(comparison.rendered.tool, "Directory")
        if error:
            conditions.append(
                {"type": "ComparisonError", "message": error, "lastTransitionTime": now()}
            )
            status["sync"] = {
                **((app.raw.get("status") or {}).get("sync") or {}),
                "status": "Unknown",
            }
        status["conditions"] = conditions or None
        if extra:
            status.update(extra)
        return await self.kube.merge_patch(
            API_VERSION, "Application", app.name, {"status": status}, namespace=app.namespace
        )

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
        await self.kube.merge_patch(
            API_VERSION,
            "Application",
            name,
            {"status": {"conditions": conditions}},
            namespace=meta.get("namespace"),
        )
        return True

    async def refresh(self, app: App) -> Comparison | None:
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
        app: App,
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
    ) -> OperationOutcome:
        """Run one sync operation and record it (operationState, history, status).

        ``operation`` is the Argo CD operation being run (recorded verbatim in
        ``operationState.operation``); without it one is described from the arguments.
        With ``retry``, this is attempt ``retry_count + 1`` of it; a failure with retries
        left is recorded as a scheduled retry (``OperationOutcome.retry_at``), not as the
        end of the operation.
        """
        resume = _resume_point(app.raw, operation) if not dry_run else None
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
                "revision": revision or app.target_revision,
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
            if redact_url(str(source.get("repoURL", ""))) == redact_url(app.repo_url):
                # A history entry's URL is redacted: keep the credentials the spec's URL has.
                source = {**source, "repoURL": app.repo_url}
            app = App.from_application(
                {**app.raw, "spec": {**(app.raw.get("spec") or {}), "source": source}}
            )
        running = {
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
        if not dry_run and resume is None:  # a resumed run keeps what it recorded
            await self.kube.merge_patch(
                API_VERSION,
                "Application",
                app.name,
                {"status": {"operationState": running}},
                namespace=app.namespace,
            )
        try:
            comparison = await self.compare(app, revision=revision)
        except (ComparisonError, AppSpecError) as exc:
            result = SyncResult("Error", str(exc))
            retry_at = await self._finish(
                app, operation, result, started, "", None, dry_run, retry, retry_count
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
            )
            return OperationOutcome(result, comparison.artifact.revision, comparison, retry_at)
        result = await run_sync(
            self.kube,
            SyncRequest(
                owner=_owner(app),
                inventory=_inventory(app.raw),
                destination_namespace=app.destination_namespace,
                desired=comparison.desired + comparison.hooks,
                owned_live=comparison.owned_live,
                options=app.sync_options,
                prune=prune,
                dry_run=dry_run,
                resources=frozenset(resources) if resources else None,
                in_sync=frozenset(d.key for d in comparison.diffs if d.status == "Synced"),
                hooks=not resources,
                managed_namespace_metadata=app.managed_namespace_metadata,
                field_manager=self.field_manager,
                resume=resume.progress if resume is not None else None,
            ),
            progress,
            lookup=self.live,
            changes=self.changes,
            checkpoint=self._checkpoint(app, comparison.artifact.revision),
        )
        revision_done = comparison.artifact.revision
        retry_at = await self._finish(
            app, operation, result, started, revision_done, comparison, dry_run, retry, retry_count
        )
        return OperationOutcome(result, revision_done, comparison, retry_at)

    def _checkpoint(self, app: App, revision: str) -> Checkpoint:
        """Writes the progress of the running sync into ``operationState`` (Argo CD's
        ``phase: Running``, ``message``, ``syncResult``), for a restarted controller."""

        async def write(progress: OperationProgress) -> None:
            state = progress.to_state()
            state["syncResult"].update(revision=revision, source=_shown_source(app.source))
            try:
                await self.kube.merge_patch(
                    API_VERSION,
                    "Application",
                    app.name,
                    {"status": {"operationState": state}},
                    namespace=app.namespace,
                )
            except KubeError as exc:  # the sync goes on; a restart would start it over
                log.warning("progress of %s/%s not recorded: %s", app.namespace, app.name, exc)

        return write

    async def _finish(
        self,
        app: App,
        operation: dict[str, Any],
        result: SyncResult,
        started: str,
        revision: str,
        comparison: Comparison | None,
        dry_run: bool,
        retry: Retry | None = None,
        retry_count: int = 0,
    ) -> float | None:
        """Record the attempt; the epoch time of the scheduled retry, or None when done."""
        if dry_run:
            return None
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
                "source": _shown_source(app.source),
                "resources": [r.to_status() for r in result.resources],
            },
        }
        extra: dict[str, Any] = {"operationState": state}
        fresh = await self.get_application(app.name, app.namespace) or app.raw
        if result.phase == "Succeeded":
            history = list((fresh.get("status") or {}).get("history") or [])
            next_id = max((int(h.get("id", 0)) for h in history), default=-1) + 1
            history.append(
                {
                    "id": next_id,
                    "revision": revision,
                    "deployedAt": finished,
                    "deployStartedAt": started,
                    "source": _shown_source(app.source),
                    "initiatedBy": operation.get("initiatedBy", {}),
                }
            )
            limit = app.revision_history_limit
            extra["history"] = history[len(history) - limit :] if limit else None
        fresh = _with_sync_error(fresh, result, revision)
        app = App.from_application(fresh)
        try:
            after = await self.compare(app) if comparison is not None else None
        except ComparisonError:
            after = comparison
        await self.write_status(app, after, extra=extra)
        return retry_at

    async def run_requested_operation(
        self,
        app: App,
        progress: Progress = lambda _r: None,
        *,
        clear: bool = True,
        retry: Retry | None = None,
        retry_count: int = 0,
    ) -> OperationOutcome | None:
        """Run the sync requested in the Application's ``operation`` field.

        This is how Argo CD clients (``argocd app sync``, the UI, kubectl patch) ask for a
        sync. With ``clear`` the field is removed afterwards (the controller clears it
        itself, once retries are over). Returns None when no operation is requested.
        """
        operation = app.raw.get("operation")
        if not isinstance(operation, dict) or not isinstance(operation.get("sync"), dict):
            return None
        spec = operation["sync"]
        automated = bool((operation.get("initiatedBy") or {}).get("automated"))
        resources = [ResourceKey.from_ref(r) for r in spec.get("resources") or []]
        outcome = await self.sync(
            app,
            revision=str(spec["revision"]) if spec.get("revision") else None,
            prune=bool(spec.get("prune", False)),
            dry_run=bool(spec.get("dryRun", False)),
            resources=resources or None,
            initiated_by=operation.get("initiatedBy") or {"username": "unknown"},
            allow_empty=automated and bool(app.automated and app.automated.allow_empty),
            operation=operation,
            progress=progress,
            retry=retry,
            retry_count=retry_count,
        )
        if clear:
            await self.clear_operation(app)
        return outcome

    async def clear_operation(self, app: App) -> None:
        await self.kube.merge_patch(
            API_VERSION, "Application", app.name, {"operation": None}, namespace=app.namespace
        )

    async def owned_objects(self, app: App) -> list[tuple[str, Obj]]:
        """(apiVersion, live object) of the inventory rows that still carry the app's mark."""
        owned = []
        for api_version, key in _inventory_keys(app.raw):
            try:
                live = await self.kube.get(api_version, key.kind, key.name, key.namespace or None)
            except KubeError:
                continue
            if live is not None and _is_own(app, live):
                owned.append((api_version, live))
        return owned

    async def delete_resources(
        self, app: App, *, propagation: str = "Foreground"
    ) -> list[ResourceKey]:
        """Delete every object in the app's inventory that still carries its tracking mark."""
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
                if await self.kube.delete(
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
