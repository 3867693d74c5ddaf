"""The controller process: a registry of kinds, watches, one work queue, leader election.

Start-up reads Argo CD's settings (``argocd-cm``: ``timeout.reconciliation`` and its
jitter), then, once this replica leads (a coordination.k8s.io Lease; with one replica it
leads at once), builds one reconciler per registered kind (``gitsail.controller.registry``:
the Argo CD ``Application`` first, then the kinds passed as ``kinds=[...]``, then the Flux
kinds when ``ControllerOptions.flux`` is on and their modules exist) and runs:

- a watch cache per registered kind and watched namespace; every change enqueues the
  object as ``ObjectKey(kind, namespace, name)``, except what the kind says is no news
  (``wakes``: its own status writes, an update that changes only ``status``,
  ``managedFields``, ``resourceVersion`` and ``generation`` and whose changed
  ``managedFields`` entries are all ours): an object's own status write must not wake it,
  or a status that changes on every reconcile loops. An object that becomes Ready wakes
  the objects that declared they depend on it (``KindRegistry.depends_on``);
- a watch cache per kind the objects manage (started when a comparison first names the
  kind), shared by every kind: a change to an object carrying an owner's mark (Argo CD's
  tracking id, Flux's owner labels) enqueues its owners (``keys_for_managed``), which is
  how drift is seen without polling, and what the comparison reads instead of GETs. A
  change beyond ``status`` enqueues it as ``changed:``; a status change that moves the
  object's health enqueues it as ``health:`` (re-assessed without a render); other status
  updates, which controllers write all the time, are dropped;
- the work queue (one sequential worker per object, ``concurrency`` at a time), whose
  reconciles requeue themselves for the next poll (interval + jitter). A reconcile that
  raises ``Transient`` is retried after its ``retry_after`` or with backoff; one that
  raises ``Stalled`` waits for a change of its object.

Webhooks work on every replica, leading or not: each keeps a watch of the
``argocd-secret`` Secret (the webhook secrets) and of the Applications (the cache the
leader's Application kind also reconciles from: one copy per Application), and records a push
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
import importlib
import importlib.util
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitsail import codec
from gitsail.app.engine import AppEngine, PipelineObserver
from gitsail.app.targets import Target
from gitsail.controller.clusters import ClusterPool
from gitsail.controller.events import EventRecorder
from gitsail.controller.gc_metrics import GCCollector
from gitsail.controller.kube_metrics import KubeCollector
from gitsail.controller.lease import LeaderElector
from gitsail.controller.metrics import RENDER_TOOLS, Metrics
from gitsail.controller.queue import STOP_GRACE, WorkQueue
from gitsail.controller.reconciler import (
    REFRESH_ANNOTATION,
    AppName,
    AppReconciler,
    ReconcileSettings,
    error_backoff,
)
from gitsail.controller.registry import (
    APPLICATION,
    KindContext,
    KindFactory,
    KindReconciler,
    KindRegistry,
    ObjectKey,
    own_status_write,
)
from gitsail.controller.sharding import ShardClaimer, Sharding, shard_of
from gitsail.controller.stacks import cancel_and_wait
from gitsail.controller.webhook import (
    GENERATE_PATHS_ANNOTATION,
    PushEvent,
    WebhookSecrets,
    push_touches_app,
    repo_matches,
)
from gitsail.diff import normalize
from gitsail.health import resource_health
from gitsail.kinds.argo_application import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    IN_CLUSTER,
    App,
    AppSpecError,
    parse_duration,
)
from gitsail.kinds.status import Stalled, Transient
from gitsail.kube import (
    Forbidden,
    Kube,
    KubeError,
    NotFound,
    NotFoundKind,
    WatchCache,
    WatchEvent,
)
from gitsail.kube.cache import NamedSource
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.render import Renderer
from gitsail.source import GitSource, HelmRepoSource
from gitsail.source.artifacts import ArtifactStore, service_base_url
from gitsail.sync.ownership import owners_of

__all__ = [
    "ARGO_KINDS",
    "FLUX_KINDS",
    "Controller",
    "ControllerOptions",
    "RefreshNotRecorded",
    "flux_kinds",
    "own_status_write",
]

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
    status_heartbeat: float = 0.0  # ReconcileSettings.status_heartbeat (0: off)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Reconcile Flux's GitRepository, Kustomization and Receiver too.
    flux: bool = True
    # Where Flux source artifacts are stored (default: next to the source cache) and the
    # base URL they are advertised at in status (default: the controller's Service).
    artifacts_dir: str | None = None
    artifacts_url: str | None = None
    # Sharding (``gitsail.controller.sharding``): reconcile only shard ``shard`` of
    # ``shards``, or (``shard=None``) the shards whose Leases this replica claims.
    shards: int = 1
    shard: int | None = 0


# The Flux kinds' reconcilers: (module, attribute), the attribute a ``KindFactory`` (a
# callable taking a ``KindContext``). A module that does not exist is skipped.
FLUX_KINDS: tuple[tuple[str, str], ...] = (
    ("gitsail.controller.flux", "gitrepository"),
    ("gitsail.controller.flux", "ocirepository"),
    ("gitsail.controller.flux", "kustomization"),
    ("gitsail.controller.flux", "receiver"),
    ("gitsail.controller.flux", "helmrepository"),
    ("gitsail.controller.flux", "helmchart"),
    ("gitsail.controller.flux", "helmrelease"),
    ("gitsail.controller.flux_image", "imagerepository"),
    ("gitsail.controller.flux_image", "imagepolicy"),
    ("gitsail.controller.flux_image", "imageupdateautomation"),
)
# The Argo CD kinds beside the Application, reconciled like the Flux ones (same shape).
ARGO_KINDS: tuple[tuple[str, str], ...] = (
    ("gitsail.controller.argo_kinds", "applicationset"),
    ("gitsail.controller.argo_projects", "appproject"),  # AppProject: the engine's admission
    # Notifications (Flux Alert/Provider, Argo CD's notifications ConfigMap): Argo's need no
    # Flux, so they are registered with the Argo kinds.
    ("gitsail.controller.notifications", "alerts"),
)
# Retry of a Transient failure without a retry_after: 5 s doubling, at most 5 minutes.
TRANSIENT_BACKOFF = (5.0, 300.0)


def flux_kinds(table: Sequence[tuple[str, str]] | None = None) -> list[KindFactory]:
    """The factories of the Flux kinds whose modules are installed (``FLUX_KINDS`` order)."""
    factories: list[KindFactory] = []
    for module, attribute in FLUX_KINDS if table is None else table:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            log.debug("%s is not there: its kind is not reconciled", module)
            continue
        factory = getattr(importlib.import_module(module), attribute, None)
        if not callable(factory):
            log.warning("%s has no %s: its kind is not reconciled", module, attribute)
            continue
        factories.append(factory)
    return factories


def _argo_application(ctx: KindContext) -> KindReconciler:
    async def get_application(namespace: str, name: str, fresh: bool) -> Obj | None:
        return await ctx.read(ObjectKey("Application", namespace, name), fresh)

    return AppReconciler(
        ctx.engine,
        settings=ctx.settings,
        metrics=ctx.metrics,
        events=ctx.events,
        get_application=get_application,
    )


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
            try:
                await cache.start()
            except Forbidden:
                # Least-privilege RBAC (docs/install.md): no cluster-wide list of this kind;
                # plain GETs in the delivery namespaces, drift seen at the next resync.
                self._unwatchable.add(gvk)
                log.info("not watching %s %s cluster-wide (forbidden)", api_version, kind)
                return None
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
        fingerprint = codec.digest(normalize(obj))
        previous = self._fingerprints.get(key)
        self._fingerprints[key] = fingerprint
        health, before = "", None
        if owners_of(obj):
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
    """Reconciles the registered kinds continuously. ``run()`` until cancelled.

    ``kinds`` are factories of more reconcilers (built when this replica starts leading,
    after the Argo CD Application's and before the Flux kinds'); a kind registered twice is
    refused.
    """

    def __init__(
        self,
        kube: Kube,
        options: ControllerOptions,
        *,
        metrics: Metrics | None = None,
        kinds: Sequence[KindFactory] = (),
    ) -> None:
        self.kube = kube
        self.options = options
        self.metrics = metrics or Metrics()
        with contextlib.suppress(ValueError):  # (a Metrics shared by two controllers: once)
            self.metrics.registry.register(KubeCollector(kube))  # requests at the client
            self.metrics.registry.register(GCCollector())  # time in the garbage collector
        self.events = EventRecorder(kube, host=options.identity)
        # What ``run()`` stops as it ends (``on_stop``): e.g. the HTTP side's Receiver index.
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self.live = _LiveCaches(kube, self._on_managed_event)
        policy = Policy.from_env()  # the operator's limits (GITSAIL_* on the Deployment)
        self.engine = AppEngine(
            kube,
            control_namespace=options.namespaces[0],
            live=self.live.get,
            changes=self.live.changes,
            git=GitSource(policy=policy),
            helm_repos=HelmRepoSource(policy=policy),
            renderer=Renderer(policy=policy),
            observer=_MetricsObserver(self.metrics),
            read_own=self._read_own,
        )
        # Destination clusters (controller/clusters.py): in-cluster is this client.
        self.clusters = ClusterPool(
            kube,
            options.namespaces[0],
            Target("in-cluster", IN_CLUSTER, kube, live=self.live.get, changes=self.live.changes),
            live_for=lambda target: _LiveCaches(target, self._on_managed_event),
            wake=lambda key, reason: self.queue.add(key, reason),
            policy=policy,
        )
        self.engine.targets = self.clusters
        self.artifacts = ArtifactStore(
            Path(options.artifacts_dir or self.engine.git.cache_dir.parent / "artifacts"),
            base_url=options.artifacts_url or service_base_url(options.namespaces[0]),
            policy=policy,
        )
        self.queue = WorkQueue(self._reconcile, concurrency=options.concurrency)
        self.sharding = Sharding(options.shards, options.shard)
        self._shard_lock = asyncio.Lock()
        self._factories: list[KindFactory] = [
            _argo_application,
            *kinds,
            *flux_kinds(ARGO_KINDS),
            *(flux_kinds() if options.flux else ()),
        ]
        self.registry = KindRegistry()
        # One watch cache per (kind, namespace) of the registered kinds; the Application's
        # are the webhooks' caches (``webhook_app_caches``), shared: one copy of each
        # Application in memory, one watch.
        self.kind_caches: dict[tuple[str, str], WatchCache] = {}
        self._kind_queues: dict[tuple[str, str], asyncio.Queue[WatchEvent]] = {}
        self._seen: dict[ObjectKey, Obj] = {}  # the last version of each object we were told of
        self._failures: dict[ObjectKey, int] = {}  # consecutive Transient failures
        self.reconciler: AppReconciler | None = None
        self.leading = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Kept by every replica for webhooks (see the module docstring).
        self.webhook_secret_cache: WatchCache | None = None
        self.webhook_app_caches: dict[str, WatchCache] = {}
        self._app_cache_lock = asyncio.Lock()

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
            resync=resync,
            jitter=min(jitter, resync),
            control_namespace=self.options.namespaces[0],
            status_heartbeat=self.options.status_heartbeat,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Have ``stop`` awaited when ``run()`` ends (watches started beside the controller
        on its client, such as the Receiver index of the HTTP side)."""
        self._stoppers.append(stop)

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
            for stop in self._stoppers:
                await stop()
            # Events emitted by the last reconciles: written, unless the server is gone.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.events.drain()

    async def _run_elected(self) -> None:
        if self.sharding.dynamic:
            await self._run_claiming()
            return
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
            name=self.sharding.lease_name(self.options.lease_name),
            identity=self.options.identity,
            lease_duration=self.options.lease_duration,
            renew_deadline=self.options.renew_deadline,
            retry_period=self.options.retry_period,
        )
        try:
            await elector.run(on_started_leading=self._lead, on_stopped_leading=self._step_down)
        finally:
            await self._step_down()

    async def _run_claiming(self) -> None:
        """Dynamic sharding: reconcile the shards whose Leases this replica holds."""
        claimer = ShardClaimer(
            self.kube,
            self.sharding,
            namespace=self.options.namespaces[0],
            base_name=self.options.lease_name,
            identity=self.options.identity,
            on_gain=self._gain_shard,
            on_loss=self._lose_shard,
            lease_duration=self.options.lease_duration,
            renew_deadline=self.options.renew_deadline,
            retry_period=self.options.retry_period,
        )
        try:
            await claimer.run()
        finally:
            await self._step_down()

    async def _gain_shard(self, shard: int) -> None:
        """A shard's Lease is ours: start reconciling, or queue the shard's objects."""
        async with self._shard_lock:
            self.sharding.owned.add(shard)
            log.info("%s now owns shards %s", self.options.identity, sorted(self.sharding.owned))
            if not self.leading.is_set():
                await self._lead()
                return
            for (kind, namespace), cache in list(self.kind_caches.items()):
                for obj in cache.items():
                    name = _app_name(obj)[1]
                    if shard_of(namespace, name, self.sharding.shards) == shard:
                        self.queue.add(ObjectKey(kind, namespace, name), "shard")

    async def _lose_shard(self, shard: int) -> None:
        """A shard's Lease is gone: stop every reconcile now (the fence: one may be of that
        shard), then go on with the shards still held."""
        async with self._shard_lock:
            self.sharding.owned.discard(shard)
            owned = sorted(self.sharding.owned)
            log.info("%s lost shard %d; owns %s", self.options.identity, shard, owned)
            await self._step_down()
            if self.sharding.owned:
                await self._lead()

    async def _lead(self) -> None:
        log.info("%s is leading; starting to reconcile", self.options.identity)
        self.metrics.set_leader(True)
        settings = await self._settings()
        # Apps polling one repository share its refs for a moment (a tenth of the interval,
        # at most 5 s): one ls-remote answers many polls; a webhook forgets them at once.
        self.engine.git.refs_ttl = min(5.0, settings.resync / 10)
        self.engine.git.on_request = self.metrics.observe_git_request
        self.registry = KindRegistry()
        context = KindContext(
            kube=self.kube,
            engine=self.engine,
            settings=settings,
            metrics=self.metrics,
            events=self.events,
            registry=self.registry,
            live=self.live.get,
            read=self._read,
            artifacts=self.artifacts,
            enqueue=lambda key, reason: self.queue.add(key, reason),
            namespaces=self.options.namespaces,
            owns=self.sharding.owns,
            shared_cache=self._shared_cache,
        )
        # Only what this replica writes from now on counts as seen (a shard may have had
        # another owner since): the first read of each object after this goes to the server.
        self.kube.written.clear()
        for factory in self._factories:
            reconciler = factory(context)
            self.registry.register(reconciler)
            self.kube.written.track(reconciler.api.api_version, reconciler.api.kind)
            if isinstance(reconciler, AppReconciler):
                self.reconciler = reconciler
        for reconciler in self.registry:
            await self._watch_kind(reconciler, required=reconciler is self.reconciler)
        self.queue.start()
        self.leading.set()

    async def _watch_kind(self, reconciler: KindReconciler, *, required: bool) -> None:
        """Watch the kind in every watched namespace and enqueue what is there.

        A kind that is not served (its CRDs are not installed) is logged and skipped, unless
        it is ``required`` (the Application: without it there is nothing to do)."""
        api = reconciler.api
        for namespace in self.options.namespaces:
            try:
                if reconciler is self.reconciler:
                    cache = await self._application_cache(namespace)
                else:
                    cache = WatchCache(self.kube, api.api_version, api.kind, namespace)
                    await cache.start()
            except KubeError as exc:
                if required:
                    raise
                log.warning(
                    "cannot watch %s %s in %s (%s); its objects are not reconciled. Install "
                    "its CRDs (gitsail install --crds-only) and restart the controller",
                    api.api_version,
                    api.kind,
                    namespace,
                    exc,
                )
                return
            self.kind_caches[(api.kind, namespace)] = cache
            queue = self._kind_queues[(api.kind, namespace)] = cache.subscribe()
            self._tasks.append(
                asyncio.create_task(self._pump_kind(reconciler, queue), name=f"pump-{api.kind}")
            )
            for obj in cache.items():
                key = ObjectKey(api.kind, *_app_name(obj))
                self._seen[key] = obj
                self.queue.add(key, "startup")

    @property
    def app_caches(self) -> dict[str, WatchCache]:
        """The Application watch caches by namespace."""
        return {ns: c for (kind, ns), c in self.kind_caches.items() if kind == "Application"}

    async def _step_down(self) -> None:
        if not self.leading.is_set() and not self._tasks:
            return
        log.info("%s stops reconciling", self.options.identity)
        self.leading.clear()
        self.metrics.set_leader(False)
        await self.queue.stop()
        for reconciler in self.registry:  # a kind's own watches (ApplicationSet: clusters)
            stop = getattr(reconciler, "stop", None)
            if stop is not None:
                await stop()
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks, STOP_GRACE, f"{self.options.identity} stepping down")
        shared = list(self.webhook_app_caches.values())
        for key, cache in self.kind_caches.items():
            if any(cache is c for c in shared):
                cache.unsubscribe(self._kind_queues[key])  # the webhooks keep reading it
            else:
                await cache.stop()
        self.kind_caches.clear()
        self._kind_queues.clear()
        self._seen.clear()
        self._failures.clear()
        await self.live.stop()
        await self.clusters.stop()
        self.queue = WorkQueue(self._reconcile, concurrency=self.options.concurrency)

    # -- events ----------------------------------------------------------------------------

    async def _pump_kind(
        self, reconciler: KindReconciler, queue: asyncio.Queue[WatchEvent]
    ) -> None:
        while True:
            event = await queue.get()
            self._on_kind_event(reconciler, event)

    def _on_kind_event(self, reconciler: KindReconciler, event: WatchEvent) -> None:
        if event.type == "BOOKMARK":
            return
        key = ObjectKey(reconciler.api.kind, *_app_name(event.object))
        if event.type == "DELETED":
            self._seen.pop(key, None)
        else:
            previous = self._seen.get(key)
            self._seen[key] = event.object
            # Readiness is news for dependents even when it is the object's own status write.
            for dependent in self.registry.became_ready(key, previous, event.object):
                self.queue.add(dependent, f"ready:{key}")
            if previous is not None and not reconciler.wakes(previous, event.object):
                return
        self.queue.add(key, f"{_reason_prefix(key)}:{event.type.lower()}")

    def _on_managed_event(self, event: WatchEvent, what: str) -> None:
        meta = event.object.get("metadata") or {}
        for key in self.registry.keys_for_managed(event.object):
            if key.namespace in self.options.namespaces and key.kind in self.registry:
                self.queue.add(
                    key,
                    f"{what}:{event.object.get('kind')}/{meta.get('name')}",
                    urgent=True,  # health or drift: ahead of a rollout's first syncs
                )

    async def _read(self, key: ObjectKey, fresh: bool) -> Obj | None:
        """An object of a registered kind: from its watch cache, or, when ``fresh`` (this
        replica's own writes must be in it) and the cached copy is not at the version of
        our last write to it (``Kube.written``), from the server."""
        cache = self.kind_caches.get((key.kind, key.namespace))
        cached = cache.get(key.namespace, key.name) if cache is not None else None
        if cache is not None and not fresh:
            return cached
        api = self.registry[key.kind].api
        if cached is not None and self.kube.written.current(api.api_version, api.kind, cached):
            return cached
        obj = await self.kube.get(api.api_version, api.kind, key.name, key.namespace)
        if obj is None:
            self.kube.written.forget(api.api_version, api.kind, key.namespace, key.name)
        return obj

    async def _read_own(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        """The engine's read of a delivery's own object (``AppEngine.read_own``): through
        ``_read`` for a registered kind in a watched namespace, else from the server."""
        key = ObjectKey(kind, namespace or "", name)
        if (kind, key.namespace) in self.kind_caches and kind in self.registry:
            return await self._read(key, True)
        return await self.kube.get(api_version, kind, name, namespace)

    async def _reconcile(self, key: ObjectKey, reasons: frozenset[str]) -> float | None:
        """Run the key's kind on it: reconcile, finalize (being deleted) or forget (gone)."""
        self.metrics.set_workqueue_depth(self.queue.depth)
        if not self.sharding.owns(key.namespace, key.name):
            return None  # another shard's: cached, never reconciled here
        reconciler = self.registry[key.kind]
        # Anything but a poll reads the server when the cache does not have it (yet).
        obj = await self._read(key, False) or (
            await self._read(key, True) if reasons != frozenset({"requeue"}) else None
        )
        if obj is None:
            self.registry.forget(key)
            self._failures.pop(key, None)
            return None
        try:
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                delay = await reconciler.finalize(obj)
            else:
                delay = await reconciler.reconcile(obj, reasons)
        except Stalled as exc:
            self._failures.pop(key, None)
            log.warning("%s is stalled (%s): %s; waiting for a change", key, exc.reason, exc)
            return None
        except Transient as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = exc.retry_after
            if delay is None:
                delay = error_backoff(failures, *TRANSIENT_BACKOFF)
            log.info("%s failed (%s): %s; retrying in %gs", key, exc.reason, exc, delay)
            return delay
        self._failures.pop(key, None)
        return delay

    # -- webhooks --------------------------------------------------------------------------

    async def _watch_for_webhooks(self) -> None:
        """Start the watches webhooks read (on every replica); retried until they start."""
        namespace = self.options.namespaces[0]
        failures = 0
        while True:
            try:
                if self.webhook_secret_cache is None:
                    cache = WatchCache(
                        NamedSource(self.kube, ARGOCD_SECRET), "v1", "Secret", namespace
                    )
                    await cache.start()
                    self.webhook_secret_cache = cache
                for ns in self.options.namespaces:
                    await self._application_cache(ns)
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

    async def _application_cache(self, namespace: str) -> WatchCache:
        """The watch cache of the Applications in ``namespace``, started on first use:
        webhooks read it on every replica, and the leader's Application kind reconciles
        from it (its pump subscribes while leading)."""
        async with self._app_cache_lock:
            cache = self.webhook_app_caches.get(namespace)
            if cache is None:
                cache = WatchCache(self.kube, API_VERSION, "Application", namespace)
                await cache.start()
                self.webhook_app_caches[namespace] = cache
            return cache

    async def _shared_cache(self, kind: str, namespace: str) -> WatchCache | None:
        """The watch cache of a registered kind in a namespace (the Application's: the
        webhooks' cache), once this replica leads; None when the kind is not watched."""
        if kind == APPLICATION:
            return await self._application_cache(namespace)
        await self.leading.wait()
        return self.kind_caches.get((kind, namespace))

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

    def apps_for_push(self, event: PushEvent) -> list[AppName]:
        """The apps a push touches: same repo, tracked revision, and (for apps with
        ``manifest-generate-paths``, when the push lists its files) one of their paths."""
        return [key for key, _, _ in self._push_matches(event)]

    def _push_matches(self, event: PushEvent) -> list[tuple[AppName, str, Obj]]:
        matches: list[tuple[AppName, str, Obj]] = []
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
                matches.append((_app_name(obj), app.repo_url, obj))
        return matches

    async def refresh_for_push(self, event: PushEvent) -> list[AppName]:
        """Refresh every app the push touches: the leader queues them at once; a standby
        records a refresh request on each (the annotation), which the leader acts on.

        Raises ``RefreshNotRecorded`` when some could not be recorded (the others are)."""
        matches = self._push_matches(event)
        for _, repo_url, _ in matches:
            self.engine.git.forget(repo_url)  # the refs this replica remembers are stale now
        queued: list[AppName] = []
        if self.leading.is_set() and self.reconciler is not None:
            # The leader acts on the push itself, at once: no write, no watch round trip.
            # Another shard's apps are recorded below, for their own replica to act on.
            for key, _, _ in matches:
                if self.sharding.owns(*key):
                    self.queue.add(ObjectKey(APPLICATION, *key), "webhook")
                    queued.append(key)
            matches = [m for m in matches if not self.sharding.owns(*m[0])]
            if not matches:
                return queued
        slots = asyncio.Semaphore(REFRESH_PATCHES)
        failed: list[str] = []

        async def record(key: AppName, obj: Obj) -> bool:
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
        return queued + [key for (key, _, _), ok in zip(matches, recorded, strict=True) if ok]


def _app_name(obj: Obj) -> AppName:
    """(namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _reason_prefix(key: ObjectKey) -> str:
    """``app`` for Applications (the reason the Argo reconciler knows), else the kind."""
    return "app" if key.kind == "Application" else key.kind.lower()


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
        "shards": {"count": controller.sharding.shards, "owned": sorted(controller.sharding.owned)},
        "leading": controller.leading.is_set(),
        "apps": sum(len(c.items()) for c in controller.app_caches.values()),
        "kinds": list(controller.registry.kinds),
        "watched_kinds": sorted(f"{g}/{k}" for g, k in controller.live.caches),
        "queue_depth": controller.queue.depth,
        "webhooks_ready": controller.webhook_secrets() is not None,
    }
