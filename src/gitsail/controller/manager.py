"""The controller process: watches, a work queue, the reconciler, leader election.

Start-up reads Argo CD's settings (``argocd-cm``: ``timeout.reconciliation`` and its
jitter), then, once this replica leads (a coordination.k8s.io Lease; with one replica it
leads at once):

- a watch cache of Applications per watched namespace; every change enqueues the app,
  except the controller's own status writes (an update that changes only ``status``,
  ``managedFields``, ``resourceVersion`` and ``generation`` — the CRD has no status
  subresource — and whose changed ``managedFields`` entries are all ours): an app's own
  status write must not wake it, or a status that changes on every reconcile loops;
- a watch cache per kind the apps manage (started when an app first names the kind);
  a change to an object carrying an app's tracking id enqueues that app, which is how
  drift is seen without polling, and what the comparison reads instead of GETs. A change
  beyond ``status`` enqueues it as ``changed:``; a status change that moves the object's
  health enqueues it as ``health:`` (re-assessed without a render); other status
  updates, which controllers write all the time, are dropped;
- the work queue (one sequential worker per app, ``concurrency`` apps at a time), whose
  reconciles requeue themselves for the next poll (interval + jitter).

Webhooks work on every replica, leading or not: each keeps a watch of the
``argocd-secret`` Secret (the webhook secrets) and of the Applications, and records a push
on the Applications it touches as Argo CD's server does, with the annotation
``argocd.argoproj.io/refresh: normal``; the leader's Application watch sees the change and
the reconciler refreshes the app and removes the annotation. So a Service in front of
several replicas loses no push.

Pipeline metrics: ``_MetricsObserver`` turns the engine's render reports into
``gitsail_render_duration_seconds`` and ``gitsail_render_cache_total``; the git layer
reports each ``ls-remote`` and ``fetch`` it runs into ``gitsail_git_request*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gitsail.app.engine import AppEngine, PipelineObserver
from gitsail.app.model import API_VERSION, DEFAULT_NAMESPACE, App, AppSpecError, parse_duration
from gitsail.controller.events import EventRecorder
from gitsail.controller.lease import LeaderElector
from gitsail.controller.metrics import RENDER_TOOLS, Metrics
from gitsail.controller.queue import Key, WorkQueue
from gitsail.controller.reconciler import (
    REFRESH_ANNOTATION,
    AppReconciler,
    ReconcileSettings,
    app_key_for_instance,
)
from gitsail.controller.webhook import (
    GENERATE_PATHS_ANNOTATION,
    PushEvent,
    WebhookSecrets,
    push_touches_app,
    repo_matches,
)
from gitsail.diff import normalize
from gitsail.health import resource_health
from gitsail.kube import Kube, KubeError, NotFound, NotFoundKind, WatchCache, WatchEvent
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.source import GitSource, HelmRepoSource
from gitsail.sync.tracking import TRACKING_ANNOTATION

__all__ = ["Controller", "ControllerOptions", "RefreshNotRecorded", "own_status_write"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControllerOptions:
    namespaces: tuple[str, ...] = (DEFAULT_NAMESPACE,)
    concurrency: int = 10
    leader_elect: bool = True
    lease_name: str = "gitsail-controller"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    resync: float | None = None  # None: argocd-cm timeout.reconciliation (default 120s)
    jitter: float | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


ARGOCD_SECRET = "argocd-secret"  # noqa: S105 (the Secret's name)
# Refresh requests a push records at once (one PATCH each).
REFRESH_PATCHES = 16


class RefreshNotRecorded(Exception):
    """A push could not be recorded on some of the Applications it touches (the
    apiserver refused or was unreachable); the sender should retry."""


class _MetricsObserver(PipelineObserver):
    """Renders into metrics. A metric never fails a render: an unknown tool is logged."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def rendered(self, tool: str, seconds: float, cache_hit: bool) -> None:
        self.metrics.count_render_cache(cache_hit)
        if cache_hit:
            return
        if tool in RENDER_TOOLS:
            self.metrics.observe_render(tool, seconds)
        else:
            log.debug("render tool %r has no metric label; not observed", tool)


class _NamedSource:
    """A ``WatchSource`` narrowed to one object by name (a field selector on the list and
    the watch), so a watch of ``argocd-secret`` holds no other Secret in memory."""

    def __init__(self, kube: Kube, name: str) -> None:
        self.kube = kube
        self.selector = f"metadata.name={name}"

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        return await self.kube.list_with_version(
            api_version, kind, namespace, label_selector, self.selector
        )

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.kube.watch(
            api_version,
            kind,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            timeout_seconds=timeout_seconds,
            field_selector=self.selector,
        )


class _Changes:
    """A count of watch events and a wake-up for whoever waits on the next one: what a sync
    waiting for health listens to (``gitsail.sync.engine.Changes``) instead of polling."""

    def __init__(self) -> None:
        self._count = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._count += 1
        self._event.set()
        self._event = asyncio.Event()

    def seen(self) -> int:
        return self._count

    async def after(self, token: int) -> None:
        while self._count <= token:
            await self._event.wait()


class _LiveCaches:
    """One cluster-wide watch cache per managed kind, started on first use."""

    def __init__(self, kube: Kube, on_event: Callable[[WatchEvent, str], None]) -> None:
        self.kube = kube
        self.on_event = on_event
        self.caches: dict[tuple[str, str], WatchCache] = {}
        # What each object looked like for a comparison (normalized, without status), so
        # the status updates controllers write all the time do not trigger reconciles;
        # and the health of each tracked object, so a status change that moves it does.
        self._fingerprints: dict[tuple[str, str, str, str], str] = {}
        self._health: dict[tuple[str, str, str, str], str] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._unwatchable: set[tuple[str, str]] = set()
        self.changes = _Changes()  # told of every event of every cache

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        cache = await self._cache(api_version, kind)
        if cache is None:
            return await self.kube.get(api_version, kind, name, namespace)
        return cache.get(namespace or "", name)

    async def _cache(self, api_version: str, kind: str) -> WatchCache | None:
        gvk = (api_version, kind)
        if gvk in self.caches:
            return self.caches[gvk]
        if gvk in self._unwatchable:
            return None
        async with self._lock:
            if gvk in self.caches:
                return self.caches[gvk]
            try:
                info = await self.kube.resource_for(api_version, kind)
            except NotFoundKind:
                return None  # not served (yet): no cache, plain GETs say "missing"
            if not {"list", "watch"} <= set(info.verbs):
                self._unwatchable.add(gvk)
                return None
            cache = WatchCache(self.kube, api_version, kind)
            await cache.start()
            for obj in cache.items():
                self._relevant(WatchEvent("ADDED", obj))
            queue = cache.subscribe()
            self._pumps.append(asyncio.create_task(self._pump(queue), name=f"pump-{kind}"))
            self.caches[gvk] = cache
            log.info("watching %s %s", api_version, kind)
            return cache

    async def _pump(self, queue: asyncio.Queue[WatchEvent]) -> None:
        while True:
            event = await queue.get()
            self.changes.notify()
            what = self._relevant(event)
            if what:
                self.on_event(event, what)

    def _relevant(self, event: WatchEvent) -> str:
        """``changed``/``deleted``, ``health`` (only health moved) or "" (nothing for us)."""
        obj = event.object
        meta = obj.get("metadata") or {}
        key = (
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
        )
        if event.type == "DELETED":
            self._fingerprints.pop(key, None)
            self._health.pop(key, None)
            return "deleted"
        fingerprint = hashlib.sha256(
            json.dumps(normalize(obj), sort_keys=True, default=str).encode()
        ).hexdigest()
        previous = self._fingerprints.get(key)
        self._fingerprints[key] = fingerprint
        health, before = "", None
        if (meta.get("annotations") or {}).get(TRACKING_ANNOTATION):
            assessed = resource_health(obj)
            health = f"{assessed.status}|{assessed.message}" if assessed is not None else "-"
            before = self._health.get(key)
            self._health[key] = health
        if previous != fingerprint:
            return "changed"
        if health and before != health:
            return "health"
        return ""

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        for task in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for cache in self.caches.values():
            await cache.stop()
        self.caches.clear()
        self._pumps.clear()


class Controller:
    """Reconciles Applications continuously. ``run()`` until cancelled."""

    def __init__(
        self, kube: Kube, options: ControllerOptions, *, metrics: Metrics | None = None
    ) -> None:
        self.kube = kube
        self.options = options
        self.metrics = metrics or Metrics()
        self.events = EventRecorder(kube, host=options.identity)
        self.live = _LiveCaches(kube, self._on_managed_event)
        policy = Policy.from_env()  # the operator's limits (GITSAIL_* on the Deployment)
        self.engine = AppEngine(
            kube,
            control_namespace=options.namespaces[0],
            live=self.live.get,
            changes=self.live.changes,
            git=GitSource(policy=policy),
            helm_repos=HelmRepoSource(policy=policy),
            observer=_MetricsObserver(self.metrics),
        )
        self.queue = WorkQueue(self._reconcile, concurrency=options.concurrency)
        self.app_caches: dict[str, WatchCache] = {}
        self._apps_seen: dict[Key, Obj] = {}  # the last version of each app we were told of
        self.reconciler: AppReconciler | None = None
        self.leading = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Kept by every replica for webhooks (see the module docstring).
        self.webhook_secret_cache: WatchCache | None = None
        self.webhook_app_caches: dict[str, WatchCache] = {}

    # -- settings --------------------------------------------------------------------------

    async def _settings(self) -> ReconcileSettings:
        cm = await self.kube.get("v1", "ConfigMap", "argocd-cm", self.options.namespaces[0])
        data = (cm or {}).get("data") or {}
        resync = self.options.resync
        if resync is None:
            resync = parse_duration(data.get("timeout.reconciliation"), 120.0)
        jitter = self.options.jitter
        if jitter is None:
            jitter = parse_duration(data.get("timeout.reconciliation.jitter"), 60.0)
        return ReconcileSettings(
            resync=resync, jitter=min(jitter, resync), control_namespace=self.options.namespaces[0]
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        await self.kube.discover()
        webhook_watches = asyncio.create_task(self._watch_for_webhooks(), name="webhook-watches")
        try:
            await self._run_elected()
        finally:
            webhook_watches.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await webhook_watches
            await self._stop_webhook_watches()

    async def _run_elected(self) -> None:
        if not self.options.leader_elect:
            await self._lead()
            try:
                await asyncio.Event().wait()
            finally:
                await self._step_down()
            return
        elector = LeaderElector(
            self.kube,
            namespace=self.options.namespaces[0],
            name=self.options.lease_name,
            identity=self.options.identity,
            lease_duration=self.options.lease_duration,
            renew_deadline=self.options.renew_deadline,
            retry_period=self.options.retry_period,
        )
        try:
            await elector.run(on_started_leading=self._lead, on_stopped_leading=self._step_down)
        finally:
            await self._step_down()

    async def _lead(self) -> None:
        log.info("%s is leading; starting to reconcile", self.options.identity)
        self.metrics.set_leader(True)
        settings = await self._settings()
        # Apps polling one repository share its refs for a moment (a tenth of the interval,
        # at most 5 s): one ls-remote answers many polls; a webhook forgets them at once.
        self.engine.git.refs_ttl = min(5.0, settings.resync / 10)
        self.engine.git.on_request = self.metrics.observe_git_request
        self.reconciler = AppReconciler(
            self.engine,
            settings=settings,
            metrics=self.metrics,
            events=self.events,
            get_application=self._get_application,
        )
        for namespace in self.options.namespaces:
            cache = WatchCache(self.kube, API_VERSION, "Application", namespace)
            await cache.start()
            self.app_caches[namespace] = cache
            queue = cache.subscribe()
            self._tasks.append(asyncio.create_task(self._pump_apps(queue)))
            for obj in cache.items():
                self._apps_seen[_key(obj)] = obj
                self.queue.add(_key(obj), "startup")
        self.queue.start()
        self.leading.set()

    async def _step_down(self) -> None:
        if not self.leading.is_set() and not self._tasks:
            return
        log.info("%s stops reconciling", self.options.identity)
        self.leading.clear()
        self.metrics.set_leader(False)
        await self.queue.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for cache in self.app_caches.values():
            await cache.stop()
        self.app_caches.clear()
        self._apps_seen.clear()
        await self.live.stop()
        self.queue = WorkQueue(self._reconcile, concurrency=self.options.concurrency)

    # -- events ----------------------------------------------------------------------------

    async def _pump_apps(self, queue: asyncio.Queue[WatchEvent]) -> None:
        while True:
            event = await queue.get()
            if event.type == "BOOKMARK":
                continue
            key = _key(event.object)
            if event.type == "DELETED":
                self._apps_seen.pop(key, None)
            else:
                previous = self._apps_seen.get(key)
                self._apps_seen[key] = event.object
                if previous is not None and own_status_write(
                    previous, event.object, self.engine.field_manager
                ):
                    continue
            self.queue.add(key, f"app:{event.type.lower()}")

    def _on_managed_event(self, event: WatchEvent, what: str) -> None:
        annotations = ((event.object.get("metadata") or {}).get("annotations")) or {}
        tracking = annotations.get(TRACKING_ANNOTATION)
        if not tracking:
            return
        instance = tracking.split(":", 1)[0]
        key = app_key_for_instance(instance, self.options.namespaces[0])
        if key[0] not in self.options.namespaces:
            return
        meta = event.object.get("metadata") or {}
        self.queue.add(key, f"{what}:{event.object.get('kind')}/{meta.get('name')}")

    async def _get_application(self, namespace: str, name: str, fresh: bool) -> Obj | None:
        cache = self.app_caches.get(namespace)
        if cache is None or fresh:
            return await self.kube.get(API_VERSION, "Application", name, namespace)
        return cache.get(namespace, name)

    async def _reconcile(self, key: Key, reasons: frozenset[str]) -> float | None:
        assert self.reconciler is not None
        self.metrics.set_workqueue_depth(self.queue.depth)
        return await self.reconciler.reconcile(key, reasons)

    # -- webhooks --------------------------------------------------------------------------

    async def _watch_for_webhooks(self) -> None:
        """Start the watches webhooks read (on every replica); retried until they start."""
        namespace = self.options.namespaces[0]
        failures = 0
        while True:
            try:
                if self.webhook_secret_cache is None:
                    cache = WatchCache(
                        _NamedSource(self.kube, ARGOCD_SECRET), "v1", "Secret", namespace
                    )
                    await cache.start()
                    self.webhook_secret_cache = cache
                for ns in self.options.namespaces:
                    if ns not in self.webhook_app_caches:
                        apps = WatchCache(self.kube, API_VERSION, "Application", ns)
                        await apps.start()
                        self.webhook_app_caches[ns] = apps
                return
            except KubeError as exc:
                failures += 1
                log.warning(
                    "cannot watch %s and Applications for webhooks (%s); "
                    "webhooks are answered 503 until this works; retrying",
                    ARGOCD_SECRET,
                    exc,
                )
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))

    async def _stop_webhook_watches(self) -> None:
        caches = list(self.webhook_app_caches.values())
        if self.webhook_secret_cache is not None:
            caches.append(self.webhook_secret_cache)
        self.webhook_secret_cache = None
        self.webhook_app_caches = {}
        for cache in caches:
            await cache.stop()

    def webhook_secrets(self) -> WebhookSecrets | None:
        """The webhook secrets from the watch of ``argocd-secret``; ``None`` until the watches
        webhooks need have started (answer 503 then)."""
        cache = self.webhook_secret_cache
        if cache is None or len(self.webhook_app_caches) < len(self.options.namespaces):
            return None
        return WebhookSecrets.from_argocd_secret(
            cache.get(self.options.namespaces[0], ARGOCD_SECRET)
        )

    def apps_for_push(self, event: PushEvent) -> list[Key]:
        """The apps a push touches: same repo, tracked revision, and (for apps with
        ``manifest-generate-paths``, when the push lists its files) one of their paths."""
        return [key for key, _, _ in self._push_matches(event)]

    def _push_matches(self, event: PushEvent) -> list[tuple[Key, str, Obj]]:
        matches: list[tuple[Key, str, Obj]] = []
        for cache in self.webhook_app_caches.values():
            for obj in cache.items():
                try:
                    app = App.from_application(obj)
                except AppSpecError:
                    continue
                if not repo_matches(app.repo_url, event):
                    continue
                wanted = app.target_revision
                if wanted not in ("HEAD", "", event.revision, event.ref) and not (
                    wanted.startswith("refs/") and wanted == event.ref
                ):
                    continue
                if not push_touches_app(obj, event.changed_files):
                    continue
                matches.append((_key(obj), app.repo_url, obj))
        return matches

    async def refresh_for_push(self, event: PushEvent) -> list[Key]:
        """Record a refresh request on every app the push touches; the leader acts on it.

        Raises ``RefreshNotRecorded`` when some could not be recorded (the others are)."""
        matches = self._push_matches(event)
        for _, repo_url, _ in matches:
            self.engine.git.forget(repo_url)  # the refs this replica remembers are stale now
        slots = asyncio.Semaphore(REFRESH_PATCHES)
        failed: list[str] = []

        async def record(key: Key, obj: Obj) -> bool:
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if annotations.get(REFRESH_ANNOTATION) == "hard":
                return True  # a hard refresh is already asked for; do not weaken it
            async with slots:
                try:
                    await self.kube.merge_patch(
                        API_VERSION,
                        "Application",
                        key[1],
                        {"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}},
                        namespace=key[0],
                    )
                except NotFound:
                    return False  # deleted since: nothing to refresh
                except KubeError as exc:
                    log.warning("cannot record the push on %s/%s: %s", key[0], key[1], exc)
                    failed.append(f"{key[0]}/{key[1]}")
                    return False
            return True

        recorded = await asyncio.gather(*(record(key, obj) for key, _, obj in matches))
        if failed:
            raise RefreshNotRecorded(
                f"the push could not be recorded on {len(failed)} of {len(matches)} "
                f"applications ({', '.join(sorted(failed)[:5])}); retry the delivery"
            )
        return [key for (key, _, _), ok in zip(matches, recorded, strict=True) if ok]


def own_status_write(old: Obj, new: Obj, manager: str) -> bool:
    """Whether ``new`` differs from ``old`` only by a status write of ``manager``.

    Only ``status`` and the fields the server moves with any write (``resourceVersion``,
    ``generation``, ``managedFields``) may differ, and every ``managedFields`` entry that
    changed must be ``manager``'s: a status written by anyone else (a user, another tool)
    still wakes the app.
    """
    if _without_status(old) != _without_status(new):
        return False
    before = _managers(old)
    return all(m[0] == manager for m, entry in _managers(new).items() if before.get(m) != entry)


def _without_status(obj: Obj) -> Obj:
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("resourceVersion", "generation", "managedFields")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _managers(obj: Obj) -> dict[tuple[str, str, str, str], str]:
    """managedFields entries by (manager, operation, subresource, apiVersion)."""
    entries: dict[tuple[str, str, str, str], str] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, dict):
            continue
        key = (
            str(entry.get("manager") or ""),
            str(entry.get("operation") or ""),
            str(entry.get("subresource") or ""),
            str(entry.get("apiVersion") or ""),
        )
        entries[key] = json.dumps(
            [entry.get("time"), entry.get("fieldsV1")], sort_keys=True, default=str
        )
    return entries


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _generate_paths_match(obj: Obj, changed: tuple[str, ...]) -> bool:
    """Whether the app has a ``manifest-generate-paths`` annotation that one of the
    changed files falls under (``push_touches_app`` is the filter webhooks use)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(GENERATE_PATHS_ANNOTATION)
    if not isinstance(raw, str):
        return False
    return push_touches_app(obj, changed)


def describe(controller: Controller) -> dict[str, Any]:
    return {
        "identity": controller.options.identity,
        "leading": controller.leading.is_set(),
        "apps": sum(len(c.items()) for c in controller.app_caches.values()),
        "watched_kinds": sorted(f"{g}/{k}" for g, k in controller.live.caches),
        "queue_depth": controller.queue.depth,
        "webhooks_ready": controller.webhook_secrets() is not None,
    }
