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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitsail.app.model import API_VERSION, IN_CLUSTER, App, AppSpecError
from gitsail.diff import DiffError, ResourceDiff, diff_resource, parse_ignore_differences
from gitsail.health import Health, HealthStatus, aggregate, resource_health
from gitsail.kube import Kube, KubeError, NotFoundKind
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered, Renderer, RenderError, RenderOptions
from gitsail.source import (
    GitSource,
    HelmRepoSource,
    SourceError,
    known_hosts_from,
    match_credentials,
)
from gitsail.sync.engine import ResourceResult, SyncRequest, SyncResult, run_sync
from gitsail.sync.plan import hook_types
from gitsail.sync.tracking import is_owned_by, mark

__all__ = ["AppEngine", "Comparison", "ComparisonError", "OperationOutcome", "now"]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ComparisonError(Exception):
    """Fetching, rendering or dry-running the app failed; nothing was changed."""


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


Progress = Callable[[ResourceResult], None]


def _inventory_keys(app_obj: Obj) -> list[tuple[str, ResourceKey]]:
    """(apiVersion, key) of every row of ``status.resources``: the app's inventory."""
    keys = []
    for row in ((app_obj.get("status") or {}).get("resources")) or []:
        group = str(row.get("group") or "")
        version = str(row.get("version") or "")
        keys.append((f"{group}/{version}" if group else version, ResourceKey.from_ref(row)))
    return keys


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
            rendered = await self.render(app, artifact)
        except (SourceError, RenderError) as exc:
            raise ComparisonError(str(exc)) from exc
        try:
            # Off the event loop: jq expressions are compiled in a worker, with a deadline.
            rules = await asyncio.to_thread(parse_ignore_differences, list(app.ignore_differences))
        except (DiffError, ValueError) as exc:
            raise ComparisonError(f"ignoreDifferences: {exc}") from exc
        desired: list[Obj] = []
        hooks: list[Obj] = []
        for obj in rendered.manifests:
            (hooks if hook_types(obj) else desired).append(obj)
        try:
            prepared = [await self._prepare(app, obj) for obj in desired]
        except (KubeError, ComparisonError) as exc:
            raise ComparisonError(str(exc)) from exc
        live: dict[ResourceKey, Obj] = {}
        pairs: list[tuple[Obj | None, Obj | None]] = []
        health: dict[ResourceKey, Health | None] = {}
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
            predicted = await self._dry_run(obj, current)
            pairs.append((predicted, current))
            health[key] = resource_health(current)
        owned: list[Obj] = []
        for api_version, key in _inventory_keys(app.raw):
            if key in desired_keys:
                if key in live and is_owned_by(live[key], app.instance):
                    owned.append(live[key])
                continue
            try:
                current = await self.get_live(
                    api_version, key.kind, key.name, key.namespace or None
                )
            except KubeError:
                continue
            if current is not None and is_owned_by(current, app.instance):
                owned.append(current)
                live[key] = current
                pairs.append((None, current))
                health[key] = resource_health(current)
        try:
            # One hop off the event loop for the app's diffs (jq runs in a worker process).
            diffs = await asyncio.to_thread(
                lambda: [diff_resource(d, c, rules=rules) for d, c in pairs]
            )
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
        )

    async def _prepare(self, app: App, obj: Obj) -> Obj:
        api_version = str(obj.get("apiVersion", ""))
        kind = str(obj.get("kind", ""))
        prepared = {**obj, "metadata": dict(obj.get("metadata") or {})}
        try:
            info = await self.kube.resource_for(api_version, kind)
        except NotFoundKind:
            # Served only once a CRD in this app is applied; compared as "missing".
            return mark(prepared, app.instance)
        meta = prepared["metadata"]
        if info.namespaced:
            meta["namespace"] = meta.get("namespace") or app.destination_namespace
        else:
            meta.pop("namespace", None)
        return mark(prepared, app.instance)

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
        conditions = [
            c
            for c in ((app.raw.get("status") or {}).get("conditions") or [])
            if c.get("type") not in ("ComparisonError", "InvalidSpecError")
        ]
        if comparison is not None:
            status["sync"] = {
                "status": comparison.sync_status,
                "revision": comparison.artifact.revision,
                "comparedTo": {
                    "source": app.source,
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
    ) -> OperationOutcome:
        """Run one sync operation and record it (operationState, history, status).

        ``operation`` is the Argo CD operation being run (recorded verbatim in
        ``operationState.operation``); without it one is described from the arguments.
        """
        started = now()
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
            app = App.from_application(
                {**app.raw, "spec": {**(app.raw.get("spec") or {}), "source": source}}
            )
        running = {
            "operation": operation,
            "phase": "Running",
            "message": "sync started",
            "startedAt": started,
        }
        if not dry_run:
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
            await self._finish(app, operation, result, started, "", None, dry_run)
            return OperationOutcome(result, "", None)
        if prune and not allow_empty and not comparison.desired and comparison.owned_live:
            result = SyncResult(
                "Failed",
                f"refusing to prune all {len(comparison.owned_live)} resources of {app.name}: "
                "the source rendered no objects. If that is intended, allow it with "
                "syncPolicy.automated.allowEmpty=true (or `gitsail app sync --allow-empty`)",
            )
            await self._finish(
                app, operation, result, started, comparison.artifact.revision, comparison, dry_run
            )
            return OperationOutcome(result, comparison.artifact.revision, comparison)
        result = await run_sync(
            self.kube,
            SyncRequest(
                app=app.instance,
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
            ),
            progress,
        )
        revision_done = comparison.artifact.revision
        await self._finish(app, operation, result, started, revision_done, comparison, dry_run)
        return OperationOutcome(result, revision_done, comparison)

    async def _finish(
        self,
        app: App,
        operation: dict[str, Any],
        result: SyncResult,
        started: str,
        revision: str,
        comparison: Comparison | None,
        dry_run: bool,
    ) -> None:
        if dry_run:
            return
        finished = now()
        state = {
            "operation": operation,
            "phase": result.phase,
            "message": result.message,
            "startedAt": started,
            "finishedAt": finished,
            "syncResult": {
                "revision": revision,
                "source": app.source,
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
                    "source": app.source,
                    "initiatedBy": operation.get("initiatedBy", {}),
                }
            )
            extra["history"] = history[-app.revision_history_limit :]
        app = App.from_application(fresh)
        try:
            after = await self.compare(app) if comparison is not None else None
        except ComparisonError:
            after = comparison
        await self.write_status(app, after, extra=extra)

    async def run_requested_operation(
        self, app: App, progress: Progress = lambda _r: None, *, clear: bool = True
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
            if live is not None and is_owned_by(live, app.instance):
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
            if await self.kube.delete(
                api_version, key.kind, key.name, namespace, propagation=propagation
            ):
                deleted.append(key)
        return deleted
