"""Flux's image automation kinds on the controller's registry: ImageRepository, ImagePolicy,
ImageUpdateAutomation (``image.toolkit.fluxcd.io/v1``), enabled with the other Flux kinds.

The three reconcilers (``gitsail.kinds.flux_image_reconciler``) of one controller share one
``TagStore`` (the tags of the last scan of each repository, in memory) and one ``_Hub``
that says who wakes whom:

- an ImagePolicy declares its ImageRepository to the registry (``depends_on``), so the
  repository turning Ready wakes it; a later scan whose tag list changed (a new
  ``lastScanResult.revision``) wakes it as well, through ``KindContext.enqueue``;
- an ImagePolicy whose ``latestRef`` changed wakes every ImageUpdateAutomation of its
  namespace (those this controller has reconciled), which then commits the new tag.

Registry traffic goes through the engine's ``OCIClient`` (the same client, denied networks
and limits as OCI sources and charts); Git through the engine's ``GitSource`` (its cache
directory, known hosts and policy).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from gitsail.controller.flux import _FluxKind
from gitsail.controller.registry import KindContext, KindRegistry, ObjectKey
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_image import parse_image_policy
from gitsail.kinds.flux_image_reconciler import (
    ImagePolicyReconciler,
    ImageRepositoryReconciler,
    ImageUpdateAutomationReconciler,
    TagStore,
)
from gitsail.model import Obj

__all__ = ["imagepolicy", "imagerepository", "imageupdateautomation"]

REPOSITORY = "ImageRepository"
POLICY = "ImagePolicy"
AUTOMATION = "ImageUpdateAutomation"


@dataclass
class _Hub:
    store: TagStore = field(default_factory=TagStore)
    automations: set[ObjectKey] = field(default_factory=set)


_HUBS: weakref.WeakKeyDictionary[KindRegistry, _Hub] = weakref.WeakKeyDictionary()


def _hub(ctx: KindContext) -> _Hub:
    hub = _HUBS.get(ctx.registry)
    if hub is None:
        hub = _HUBS[ctx.registry] = _Hub()
    return hub


class _Repositories(_FluxKind):
    def __init__(self, inner: ImageRepositoryReconciler, ctx: KindContext, hub: _Hub) -> None:
        super().__init__(inner, ctx)
        self.hub = hub
        self.registry = ctx.registry
        self.enqueue = ctx.enqueue

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        key = ObjectKey.of(obj)
        before = self.hub.store.get((key.namespace, key.name))
        delay = await super().reconcile(obj, reasons)
        after = self.hub.store.get((key.namespace, key.name))
        changed = after is not None and (before is None or before[0] != after[0])
        if changed and self.enqueue is not None:  # a new tag list: its policies choose again
            for waiting in self.registry.dependencies.waiting_for(key):
                self.enqueue(waiting, f"scan:{key}")
        return delay

    def forget(self, key: ObjectKey) -> None:
        self.inner.forget(key.namespace, key.name)


class _Policies(_FluxKind):
    def __init__(self, inner: ImagePolicyReconciler, ctx: KindContext, hub: _Hub) -> None:
        super().__init__(inner, ctx)
        self.hub = hub
        self.registry = ctx.registry
        self.enqueue = ctx.enqueue
        self.read = ctx.read

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        key = ObjectKey.of(obj)
        try:
            policy = parse_image_policy(obj)
        except SpecError:
            pass  # the reconciler reports it (Stalled)
        else:
            self.registry.depends_on(
                key,
                [ObjectKey(REPOSITORY, policy.repository_namespace, policy.repository_name)],
            )
        before = (obj.get("status") or {}).get("latestRef")
        delay = await super().reconcile(obj, reasons)
        fresh = await self.read(key, True)
        after = ((fresh or {}).get("status") or {}).get("latestRef")
        if after and after != before and self.enqueue is not None:
            for automation in sorted(self.hub.automations):
                if automation.namespace == key.namespace:
                    self.enqueue(automation, f"policy:{key}")
        return delay


class _Automations(_FluxKind):
    def __init__(self, inner: Any, ctx: KindContext, hub: _Hub) -> None:
        super().__init__(inner, ctx)
        self.hub = hub

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        self.hub.automations.add(ObjectKey.of(obj))
        return await super().reconcile(obj, reasons)

    def forget(self, key: ObjectKey) -> None:
        self.hub.automations.discard(key)


def imagerepository(ctx: KindContext) -> _FluxKind:
    hub = _hub(ctx)
    inner = ImageRepositoryReconciler(ctx.kube, ctx.engine.oci_charts, hub.store)
    return _Repositories(inner, ctx, hub)


def imagepolicy(ctx: KindContext) -> _FluxKind:
    hub = _hub(ctx)
    return _Policies(ImagePolicyReconciler(ctx.kube, hub.store), ctx, hub)


def imageupdateautomation(ctx: KindContext) -> _FluxKind:
    hub = _hub(ctx)
    inner = ImageUpdateAutomationReconciler(ctx.kube, ctx.engine.git)
    return _Automations(inner, ctx, hub)
