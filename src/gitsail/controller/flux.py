"""The Flux kinds on the controller's registry: GitRepository, Kustomization, Receiver.

Each kind's reconciler lives with its adapter in ``gitsail.kinds`` and knows nothing of the
controller; this module builds them from a ``KindContext`` (the same ``GitSource`` as the
Argo CD path, so a repository both kinds use is mirrored and fetched once; the controller's
``ArtifactStore``, which its HTTP server also serves) and adds what the registry asks of a
kind (``KindDefaults``): Kustomizations declare their ``dependsOn`` to the registry, so a
dependency turning Ready wakes them at once instead of at their next retry.

Drift: the Kustomization reconciler reads and writes the cluster directly (its health checks
must see the server, not a lagging cache), except that it reads the objects it still wants
from the controller's managed-object watch caches (``KindContext.live``) to find those
unchanged since it applied them (a lagging cache only makes it apply once more, or wait
for the watch event that wakes it again). After each pass, the kinds in its
``status.inventory`` are handed to that watch (``KindContext.live``, which starts a
cluster-wide cache of a kind on first use), so an applied object edited by hand wakes its
Kustomization within seconds (``FluxLabels`` name it) instead of at its next ``interval``.
"""

from __future__ import annotations

import logging
from typing import Any

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, ObjectKey
from gitsail.kinds import SpecError, parse_kustomization
from gitsail.kinds.flux_gitrepository_reconciler import GitRepositoryReconciler
from gitsail.kinds.flux_kustomization_reconciler import FIELD_MANAGER, KustomizationReconciler
from gitsail.kinds.flux_receiver import ReceiverReconciler
from gitsail.kube import KubeError
from gitsail.model import Obj
from gitsail.sync import Inventory

__all__ = ["gitrepository", "kustomization", "receiver"]

log = logging.getLogger(__name__)


class _FluxKind(KindDefaults):
    """A Flux reconciler as the registry drives it."""

    def __init__(self, inner: Any, ctx: KindContext, *, field_manager: str = "gitsail") -> None:
        self.inner = inner
        self.api = KindAPI(inner.api_version, inner.kind)
        self.field_manager = field_manager
        self.control_namespace = ctx.settings.control_namespace

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        delay: float | None = await self.inner.reconcile(obj, reasons)
        return delay

    async def finalize(self, obj: Obj) -> float | None:
        finalize = getattr(self.inner, "finalize", None)
        if finalize is not None:
            await finalize(obj)
        return None


class _Kustomizations(_FluxKind):
    def __init__(self, inner: KustomizationReconciler, ctx: KindContext) -> None:
        super().__init__(inner, ctx, field_manager=FIELD_MANAGER)  # its own status writes
        self.registry = ctx.registry
        self.read = ctx.read
        self.live = ctx.live
        self.watched: set[tuple[str, str]] = set()  # kinds handed to the managed-object watch

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        try:
            spec = parse_kustomization(obj)
        except SpecError:
            pass  # the reconciler reports it (Stalled) below
        else:
            # Its source (a new artifact wakes it) and its dependsOn (Ready wakes it).
            self.registry.depends_on(
                ObjectKey(self.api.kind, spec.namespace, spec.name),
                [
                    ObjectKey(
                        spec.source.kind, spec.source.namespace or spec.namespace, spec.source.name
                    ),
                    *(ObjectKey(d.kind, d.namespace, d.name) for d in spec.dependencies),
                ],
            )
        delay = await super().reconcile(obj, reasons)
        await self._watch_inventory(ObjectKey.of(obj))
        return delay

    async def _watch_inventory(self, key: ObjectKey) -> None:
        """Have the managed-object watch cover every kind this Kustomization applied (see
        the module docstring); one GET of the Kustomization per pass."""
        fresh = await self.read(key, True)
        try:
            inventory = Inventory.from_flux(((fresh or {}).get("status") or {}).get("inventory"))
        except ValueError:
            return  # the reconciler reports an unreadable inventory
        for entry in inventory:
            gvk = (entry.api_version, entry.key.kind)
            if gvk in self.watched:
                continue
            try:
                await self.live(
                    entry.api_version, entry.key.kind, entry.key.name, entry.key.namespace or None
                )
            except KubeError as exc:
                log.warning("cannot watch %s %s for drift: %s", *gvk, exc)
                continue
            self.watched.add(gvk)


def gitrepository(ctx: KindContext) -> _FluxKind:
    inner = GitRepositoryReconciler(ctx.kube, ctx.engine.git, ctx.artifacts)
    return _FluxKind(inner, ctx)


def kustomization(ctx: KindContext) -> _FluxKind:
    inner = KustomizationReconciler(
        ctx.kube,
        git=ctx.engine.git,
        renderer=ctx.engine.renderer,
        policy=ctx.engine.git.policy,
        target_live=ctx.live,  # to find unchanged objects without a GET each
    )
    return _Kustomizations(inner, ctx)


def receiver(ctx: KindContext) -> _FluxKind:
    async def secret(namespace: str, name: str) -> Obj | None:
        return await ctx.kube.get("v1", "Secret", name, namespace)

    return _FluxKind(ReceiverReconciler(ctx.kube, secret), ctx)
