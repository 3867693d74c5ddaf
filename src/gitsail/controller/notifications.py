"""Notifications on the controller: Flux ``Alert``/``Provider`` and Argo CD's notifications.

Registered as the kind ``Alert`` (``notification.toolkit.fluxcd.io/v1beta3``; its reconcile
checks the spec and records a Warning Event on an Alert it cannot use), the runtime starts
when the replica starts leading and stops when it steps down, so one replica sends (with
sharding: the replica of each object's shard, ``KindContext.owns``).

It reads, in every watched namespace, the controller's own watch caches (``KindContext.
shared_cache``: one copy of each object in memory) of Alerts, of the Flux kinds that report
events (Kustomization, HelmRelease, GitRepository, OCIRepository, HelmRepository, HelmChart;
a kind not served is skipped) and of Applications; it keeps its own only of Providers and of
``argocd-notifications-cm`` and ``argocd-notifications-secret`` in the control namespace.
Every watch event goes through one queue to one consumer, so the decisions about an object
are taken in order:

- a Flux object whose Ready state (``gitsail.notify.flux.ready_state``) differs from the one
  last notified is one event, matched against every Alert and sent to its Provider. What the
  objects look like when the runtime starts is taken as already notified (a restart does not
  repeat the last failure; a change made while no replica led is not notified);
- an Application with subscription annotations is evaluated against the ConfigMap's triggers
  (``gitsail.notify.argo.evaluate``); the new notified state is written to its annotation
  *before* the notifications are queued (a crash between the two loses them rather than
  sending twice), and remembered here, since the watch cache may still show the old one.

Delivery is ``gitsail.notify.delivery.Dispatcher``: bounded queue, retries, timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from gitsail.controller.events import EventRecorder
from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, SharedCache
from gitsail.kinds.errors import SpecError
from gitsail.kube import Kube, KubeError, WatchCache, WatchEvent
from gitsail.kube.cache import NamedSource
from gitsail.model import Obj
from gitsail.notify import argo
from gitsail.notify.delivery import Dispatcher, Notification
from gitsail.notify.flux import (
    ALERT,
    API_VERSION,
    COMMIT_STATUS_TYPES,
    PROVIDER,
    AlertSpec,
    FluxEvent,
    ReadyState,
    alert_matches,
    flux_event,
    parse_alert,
    parse_provider,
    ready_state,
)
from gitsail.notify.providers import DeliveryError, build_request, credentials_from_secret
from gitsail.policy import Policy

__all__ = ["FLUX_EVENT_KINDS", "Notifications", "alerts"]

log = logging.getLogger(__name__)

APPLICATION = ("argoproj.io/v1alpha1", "Application")
FLUX_EVENT_KINDS: tuple[tuple[str, str], ...] = (
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
    ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
    ("source.toolkit.fluxcd.io/v1", "HelmChart"),
)
MAX_PENDING = 10_000  # watch events waiting for the consumer


def _secret_data(secret: Obj | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    for key, value in ((secret or {}).get("stringData") or {}).items():
        out[str(key)] = str(value)
    return out


class Notifications(KindDefaults):
    """The runtime (see the module docstring); ``api`` is the Alert, validated on change."""

    api = KindAPI(API_VERSION, ALERT)

    def __init__(
        self,
        kube: Kube,
        *,
        namespaces: tuple[str, ...],
        control_namespace: str,
        events: EventRecorder | None = None,
        owns: Callable[[str, str], bool] | None = None,
        dispatcher: Dispatcher | None = None,
        shared_cache: SharedCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.control_namespace = control_namespace
        self.events = events
        self.owns = owns or (lambda namespace, name: True)
        self.dispatcher = dispatcher or Dispatcher(policy=Policy.from_env())
        self.clock = clock
        self.shared_cache = shared_cache
        self.caches: dict[tuple[str, str, str], WatchCache] = {}  # (apiVersion, kind, ns)
        self.shared: set[tuple[str, str, str]] = set()  # the controller's: not ours to stop
        self._queues: list[tuple[WatchCache, asyncio.Queue[WatchEvent]]] = []
        self.config_caches: dict[str, WatchCache] = {}  # "cm" / "secret"
        self.flux_notified: dict[str, ReadyState] = {}  # uid -> the state last notified
        self.argo_notified: dict[str, dict[str, int]] = {}  # uid -> notified state we wrote
        self._argo_config: argo.NotificationsConfig | None = None
        self._argo_config_version = ""
        self._reported: set[str] = set()  # problems logged once
        self._pending: asyncio.Queue[tuple[str, WatchEvent]] = asyncio.Queue(MAX_PENDING)
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    def start(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._run(), name="notifications"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for cache, queue in self._queues:
            cache.unsubscribe(queue)
        self._queues.clear()
        own = [c for k, c in self.caches.items() if k not in self.shared]
        for cache in [*own, *self.config_caches.values()]:
            await cache.stop()
        self.caches.clear()
        self.shared.clear()
        self.config_caches.clear()
        await self.dispatcher.stop()

    # -- the Alert kind ------------------------------------------------------------------

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        try:
            parse_alert(obj)
        except SpecError as exc:
            log.warning("%s", exc)
            if self.events is not None:
                await self.events.record(
                    obj, reason="InvalidAlert", message=str(exc), type="Warning"
                )
        return None

    # -- watches -------------------------------------------------------------------------

    async def _watch(self, api_version: str, kind: str, namespace: str) -> WatchCache | None:
        """The controller's cache of the kind when it has one (all but Providers), else ours."""
        key = (api_version, kind, namespace)
        if self.shared_cache is not None and kind != PROVIDER:
            shared = await self.shared_cache(kind, namespace)
            if shared is not None:
                self.caches[key] = shared
                self.shared.add(key)
            return shared
        cache = WatchCache(self.kube, api_version, kind, namespace)
        try:
            await cache.start()
        except KubeError as exc:
            log.info(
                "notifications: not watching %s %s in %s (%s)", api_version, kind, namespace, exc
            )
            return None
        self.caches[key] = cache
        return cache

    def _pump(self, tag: str, cache: WatchCache) -> None:
        queue = cache.subscribe()
        self._queues.append((cache, queue))

        async def pump() -> None:
            while True:
                event = await queue.get()
                await self._pending.put((tag, event))

        self._tasks.append(asyncio.create_task(pump(), name=f"notify-pump-{tag}"))

    async def _run(self) -> None:
        await self.dispatcher.start()
        for namespace in self.namespaces:
            await self._watch(API_VERSION, PROVIDER, namespace)
            await self._watch(API_VERSION, ALERT, namespace)
            for api_version, kind in FLUX_EVENT_KINDS:
                cache = await self._watch(api_version, kind, namespace)
                if cache is not None:
                    for obj in cache.items():
                        self._on_flux(obj, seed=True)
                    self._pump("flux", cache)
            apps = await self._watch(*APPLICATION, namespace)
            if apps is not None:
                self._pump("app", apps)
        for tag, kind, name in (
            ("cm", "ConfigMap", argo.CONFIGMAP),
            ("secret", "Secret", argo.SECRET),
        ):
            cache = WatchCache(NamedSource(self.kube, name), "v1", kind, self.control_namespace)
            try:
                await cache.start()
            except KubeError as exc:
                log.warning("notifications: cannot watch %s (%s)", name, exc)
                continue
            self.config_caches[tag] = cache
            self._pump("config", cache)
        for (_, kind, _), cache in list(self.caches.items()):
            if kind == APPLICATION[1]:
                for obj in cache.items():
                    await self._on_app(obj)
        self.started.set()
        while True:
            tag, event = await self._pending.get()
            try:
                await self._handle(tag, event)
            except Exception:  # one object never stops the others' notifications
                log.exception("notifications: handling a %s event failed", tag)

    async def _handle(self, tag: str, event: WatchEvent) -> None:
        if event.type == "BOOKMARK":
            return
        obj = event.object
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if tag == "config":
            self._argo_config = None  # parsed again on next use
            if event.type != "DELETED":
                for cache in self._app_caches():
                    for app in cache.items():
                        await self._on_app(app)
            return
        if event.type == "DELETED":
            self.flux_notified.pop(uid, None)
            self.argo_notified.pop(uid, None)
            return
        if tag == "flux":
            news = self._on_flux(obj)
            if news is not None:  # in order: one object's events are queued as they came
                await self._dispatch_flux(news)
        elif tag == "app":
            await self._on_app(obj)

    def _app_caches(self) -> list[WatchCache]:
        return [c for (_, kind, _), c in self.caches.items() if kind == APPLICATION[1]]

    # -- Flux ----------------------------------------------------------------------------

    def _on_flux(self, obj: Obj, *, seed: bool = False) -> FluxEvent | None:
        """The event ``obj`` is news of, if any (``seed``: what start-up finds, never news)."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        state = ready_state(obj)
        if state is None or self.flux_notified.get(uid) == state:
            return None
        self.flux_notified[uid] = state
        if seed or not self.owns(str(meta.get("namespace") or ""), str(meta.get("name") or "")):
            return None
        return flux_event(obj, state)

    def _alerts(self) -> list[AlertSpec]:
        found = []
        for (_, kind, _), cache in self.caches.items():
            if kind != ALERT:
                continue
            for obj in cache.items():
                try:
                    found.append(parse_alert(obj))
                except SpecError:
                    continue  # reported by the Alert's reconcile
        return found

    async def _dispatch_flux(self, event: FluxEvent) -> None:
        for alert in self._alerts():
            if not alert_matches(alert, event):
                continue
            what = (
                f"Alert {alert.namespace}/{alert.name} → Provider {alert.namespace}/"
                f"{alert.provider} ({event.get('kind')} {event.get('namespace')}/"
                f"{event.get('name')} {event.severity})"
            )
            cache = self.caches.get((API_VERSION, PROVIDER, alert.namespace))
            provider_obj = cache.get(alert.namespace, alert.provider) if cache else None
            if provider_obj is None:
                self._report(f"{what}: the Provider does not exist")
                continue
            try:
                provider = parse_provider(provider_obj)
                if provider.suspend:
                    continue
                extra = dict(alert.metadata)
                if alert.summary:
                    extra["summary"] = alert.summary
                sent = event.with_metadata(extra)
                if provider.type in COMMIT_STATUS_TYPES and not sent.revision:
                    log.debug("%s: the event has no revision for a commit status", what)
                    continue
                secret: Obj | None = None
                if provider.secret_name:
                    secret = await self.kube.get(
                        "v1", "Secret", provider.secret_name, alert.namespace
                    )
                    if secret is None:
                        self._report(f"{what}: Secret {provider.secret_name} does not exist")
                        continue
                request = build_request(
                    provider, credentials_from_secret(_secret_data(secret)), sent
                )
            except (SpecError, DeliveryError) as exc:
                self._report(f"{what}: {exc}")
                continue
            except KubeError as exc:
                log.warning("%s: cannot read the Provider's Secret: %s", what, exc)
                continue
            key = f"flux:{alert.namespace}/{alert.name}:{provider.uid}:{sent.fingerprint()}"
            self.dispatcher.submit(Notification(key, request, provider.timeout, what))

    # -- Argo CD -------------------------------------------------------------------------

    def _config(self) -> argo.NotificationsConfig | None:
        cm_cache = self.config_caches.get("cm")
        cm = cm_cache.get(self.control_namespace, argo.CONFIGMAP) if cm_cache else None
        if cm is None:
            return None
        secret_cache = self.config_caches.get("secret")
        secret = secret_cache.get(self.control_namespace, argo.SECRET) if secret_cache else None
        version = (
            f"{(cm.get('metadata') or {}).get('resourceVersion')}/"
            f"{((secret or {}).get('metadata') or {}).get('resourceVersion')}"
        )
        if self._argo_config is None or version != self._argo_config_version:
            data = {str(k): str(v) for k, v in (cm.get("data") or {}).items()}
            self._argo_config = argo.parse_config(data, _secret_data(secret))
            self._argo_config_version = version
            for problem in self._argo_config.problems:
                self._report(f"{argo.CONFIGMAP}: {problem}")
        return self._argo_config

    async def _on_app(self, app: Obj) -> None:
        meta = app.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if not any(k.startswith(argo.SUBSCRIBE_PREFIX) for k in annotations):
            return
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if meta.get("deletionTimestamp") or not self.owns(namespace, name):
            return
        cfg = self._config()
        if cfg is None:
            self._report(
                f"Application {namespace}/{name} subscribes, but {argo.CONFIGMAP} is missing"
            )
            return
        uid = str(meta.get("uid") or "")
        state = self.argo_notified.get(uid)
        if state is None:
            state = argo.notified_state(app)
        sends, new, problems = argo.evaluate(app, cfg, state, int(self.clock()))
        for problem in problems:
            self._report(f"Application {namespace}/{name}: {problem}")
        if new != state:
            patch: dict[str, Any] = {
                "metadata": {
                    "annotations": {argo.NOTIFIED_ANNOTATION: json.dumps(new, sort_keys=True)}
                }
            }
            try:
                await self.kube.merge_patch(*APPLICATION, name, patch, namespace=namespace)
            except KubeError as exc:
                log.warning(
                    "Application %s/%s: cannot record notifications (%s); not sent",
                    namespace,
                    name,
                    exc,
                )
                return
            self.argo_notified[uid] = new
        for send in sends:
            what = (
                f"Application {namespace}/{name} {send.trigger} → {send.service} "
                f"(template {send.template})"
            )
            try:
                request = argo.webhook_request(cfg, send, app)
            except DeliveryError as exc:
                self._report(f"{what}: {exc}")
                continue
            if request is None:
                continue
            key = f"argo:{uid}:{send.key}:{send.template}:{next(self._seq)}"
            self.dispatcher.submit(Notification(key, request, 15.0, what))

    def _report(self, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            if len(self._reported) > 1000:
                self._reported.clear()
            log.warning("notifications: %s", problem)


def alerts(ctx: KindContext) -> Notifications:
    """The factory the controller registers (``KindFactory``)."""
    runtime = Notifications(
        ctx.kube,
        namespaces=ctx.namespaces or (ctx.settings.control_namespace,),
        control_namespace=ctx.settings.control_namespace,
        events=ctx.events,
        owns=ctx.owns,
        shared_cache=ctx.shared_cache,
    )
    runtime.start()
    return runtime
