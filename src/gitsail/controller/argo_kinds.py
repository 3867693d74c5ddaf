"""The Argo CD kinds beside the Application on the controller's registry: ApplicationSet.

Built from a ``KindContext`` like the Flux kinds (``controller/flux.py``): the reconciler
lives in ``gitsail.kinds.argo_applicationset_reconciler`` and knows nothing of the
controller. This module adds what the controller owns:

- a watch of the cluster Secrets (``argocd.argoproj.io/secret-type=cluster``) of the
  control namespace, started on the first pass: the clusters generator reads it instead of
  listing Secrets on every pass, and any change to a cluster Secret queues every
  ApplicationSet this replica has seen (``KindContext.enqueue``);
- each generated Application turning Ready (Synced and Healthy) wakes its set at once
  (declared to the registry's dependencies), so a RollingSync step follows the one before
  without waiting for the next poll;
- ``stop()`` (called by the controller when this replica stops leading) ends that watch;
- a resync when the set asks for none (no git generator): an Application deleted by hand
  is made again within ``timeout.reconciliation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, ObjectKey
from gitsail.kinds.argo_applicationset import API_VERSION, KIND
from gitsail.kinds.argo_applicationset_reconciler import (
    CLUSTER_SECRETS,
    FIELD_MANAGER,
    ApplicationSetReconciler,
    ClusterSources,
)
from gitsail.kube import KubeError, WatchCache, WatchEvent
from gitsail.model import Obj

__all__ = ["applicationset"]

log = logging.getLogger(__name__)


class _ApplicationSets(KindDefaults):
    field_manager = FIELD_MANAGER

    def __init__(self, ctx: KindContext) -> None:
        self.api = KindAPI(API_VERSION, KIND)
        self.ctx = ctx
        self.control_namespace = ctx.settings.control_namespace
        self.resync = ctx.settings.resync
        self.secrets: WatchCache | None = None
        self._pump: asyncio.Task[None] | None = None
        self.seen: set[ObjectKey] = set()
        sources = ClusterSources(
            ctx.kube, ctx.engine.git, self.control_namespace, cluster_secrets=self._secrets
        )
        self.inner = ApplicationSetReconciler(
            ctx.kube, sources, policy=ctx.engine.git.policy, field_manager=FIELD_MANAGER
        )

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        key = ObjectKey.of(obj)
        self.seen.add(key)
        delay = await self.inner.reconcile(obj, reasons)
        done = self.inner.last.get((key.namespace, key.name))
        if done is not None:  # an Application of the set turning Ready wakes it (RollingSync)
            self.ctx.registry.depends_on(
                key, [ObjectKey("Application", key.namespace, n) for n in done.applications]
            )
        return self.resync if delay is None else delay

    def forget(self, key: ObjectKey) -> None:
        self.seen.discard(key)

    async def stop(self) -> None:
        """This replica stops leading: the cluster Secret watch ends with it."""
        task, self._pump = self._pump, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif self.secrets is not None:
            await self.secrets.stop()
        self.secrets = None

    async def _secrets(self) -> list[Obj]:
        if self.secrets is None:
            cache = WatchCache(
                self.ctx.kube, "v1", "Secret", self.control_namespace, CLUSTER_SECRETS
            )
            try:
                await cache.start()
            except KubeError as exc:
                log.warning("cannot watch cluster Secrets (%s); listing them each pass", exc)
                return await self.ctx.kube.list(
                    "v1", "Secret", self.control_namespace, label_selector=CLUSTER_SECRETS
                )
            self.secrets = cache
            queue = cache.subscribe()  # before the first event can pass
            self._pump = asyncio.create_task(
                self._wake_on_change(cache, queue), name="pump-clusters"
            )
        return self.secrets.items()

    async def _wake_on_change(self, cache: WatchCache, queue: asyncio.Queue[WatchEvent]) -> None:
        try:
            while True:
                event = await queue.get()
                if event.type == "BOOKMARK" or self.ctx.enqueue is None:
                    continue
                name = (event.object.get("metadata") or {}).get("name")
                for key in sorted(self.seen):
                    self.ctx.enqueue(key, f"cluster-secret:{name}")
        finally:
            cache.unsubscribe(queue)
            with contextlib.suppress(Exception):
                await cache.stop()


def applicationset(ctx: KindContext) -> _ApplicationSets:
    return _ApplicationSets(ctx)
