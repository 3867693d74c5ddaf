"""The Flux kinds on the controller's registry: GitRepository, OCIRepository, HelmRepository,
HelmChart, Kustomization, Receiver, HelmRelease.

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

Helm sources share the engine's ``HelmRepoSource`` (one chart cache and one parsed-index
cache with the Argo CD path). A HelmChart declares its sourceRef to the registry, so a new
index or Git artifact wakes it at once, as a Kustomization is woken by its GitRepository.

HelmReleases declare their chart source (the HelmChart they make, or ``chartRef``) and their
``dependsOn`` to the registry, so a chart artifact or a dependency turning Ready wakes them.
The objects of a release carry helm-controller's labels ``helm.toolkit.fluxcd.io/name`` and
``…/namespace`` (``keys_for_managed`` reads them); helm runs through ``HelmActions`` with the
controller's own kubeconfig, in a private directory beside the render work directory.
"""

from __future__ import annotations

import logging
from typing import Any

from gitsail.controller.clusters import ClusterPool
from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, ObjectKey
from gitsail.kinds import SpecError, parse_kustomization
from gitsail.kinds.argo_cluster import ClusterEntry, RemoteCluster
from gitsail.kinds.flux_gitrepository_reconciler import GitRepositoryReconciler
from gitsail.kinds.flux_helmchart import parse_helm_chart
from gitsail.kinds.flux_helmchart_reconciler import HelmChartReconciler, OCICharts
from gitsail.kinds.flux_helmrelease import parse_helmrelease
from gitsail.kinds.flux_helmrelease_chart import FIELD_MANAGER as HELM_FIELD_MANAGER
from gitsail.kinds.flux_helmrelease_chart import OWNER_NAME, OWNER_NAMESPACE
from gitsail.kinds.flux_helmrelease_reconciler import HelmReleaseReconciler
from gitsail.kinds.flux_helmrepository_reconciler import HelmRepositoryReconciler
from gitsail.kinds.flux_kustomization_reconciler import FIELD_MANAGER, KustomizationReconciler
from gitsail.kinds.flux_ocirepository_reconciler import OCIRepositoryReconciler
from gitsail.kinds.flux_receiver import ReceiverReconciler
from gitsail.kinds.helm_actions import HelmActions
from gitsail.kube import Kube, KubeConfig, KubeError
from gitsail.model import Obj
from gitsail.sync import Inventory

__all__ = [
    "gitrepository",
    "helmchart",
    "helmrelease",
    "helmrepository",
    "kustomization",
    "ocirepository",
    "receiver",
]

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


class _HelmCharts(_FluxKind):
    def __init__(self, inner: HelmChartReconciler, ctx: KindContext) -> None:
        super().__init__(inner, ctx)
        self.registry = ctx.registry

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        try:
            spec = parse_helm_chart(obj)
        except SpecError:
            pass  # the reconciler reports it (Stalled) below
        else:  # a new artifact of its source wakes it
            self.registry.depends_on(
                ObjectKey(self.api.kind, spec.namespace, spec.name),
                [ObjectKey(spec.source_kind, spec.namespace, spec.source_name)],
            )
        return await super().reconcile(obj, reasons)


def kubeconfig_clusters(ctx: KindContext, kind: str) -> RemoteCluster | None:
    """Flux ``spec.kubeConfig`` clients from the controller's ``ClusterPool``: one
    connection per Kustomization's kubeconfig (replaced when the Secret changes), probed,
    and refused at once while its cluster does not answer."""
    pool = getattr(ctx.engine, "targets", None)
    if not isinstance(pool, ClusterPool):
        return None

    async def remote(namespace: str, name: str, config: KubeConfig, digest: str) -> Kube:
        entry = ClusterEntry(
            name=config.context or config.server,
            server=config.server,
            config=config,
            fingerprint=digest,
        )
        who = ObjectKey(kind, namespace, name)
        target = await pool.target_for(f"kubeconfig:{kind}:{namespace}/{name}", entry, who)
        return target.kube

    return remote


def gitrepository(ctx: KindContext) -> _FluxKind:
    inner = GitRepositoryReconciler(ctx.kube, ctx.engine.git, ctx.artifacts)
    return _FluxKind(inner, ctx)


def kustomization(ctx: KindContext) -> _FluxKind:
    inner = KustomizationReconciler(
        ctx.kube,
        git=ctx.engine.git,
        renderer=ctx.engine.renderer,
        policy=ctx.engine.git.policy,
        artifacts=ctx.artifacts,  # OCIRepository sources are read from the store
        target_live=ctx.live,  # to find unchanged objects without a GET each
        remote=kubeconfig_clusters(ctx, "Kustomization"),  # spec.kubeConfig: the pool
    )
    return _Kustomizations(inner, ctx)


def ocirepository(ctx: KindContext) -> _FluxKind:
    # The Argo CD path's OCI client: one policy, one place that talks to registries.
    inner = OCIRepositoryReconciler(ctx.kube, ctx.engine.oci_charts, ctx.artifacts)
    return _FluxKind(inner, ctx)


def receiver(ctx: KindContext) -> _FluxKind:
    async def secret(namespace: str, name: str) -> Obj | None:
        return await ctx.kube.get("v1", "Secret", name, namespace)

    return _FluxKind(ReceiverReconciler(ctx.kube, secret), ctx)


def helmrepository(ctx: KindContext) -> _FluxKind:
    inner = HelmRepositoryReconciler(ctx.kube, ctx.engine.helm_repos, ctx.artifacts)
    return _FluxKind(inner, ctx)


def helmchart(ctx: KindContext) -> _FluxKind:
    # OCI HelmRepositories: the engine's OCI chart client when it has one (else a HelmChart
    # of an OCI repository is Stalled with a message).
    oci: OCICharts | None = getattr(ctx.engine, "oci_charts", None)
    inner = HelmChartReconciler(ctx.kube, ctx.engine.helm_repos, ctx.artifacts, oci=oci)
    return _HelmCharts(inner, ctx)


class _HelmReleases(_FluxKind):
    def __init__(self, inner: HelmReleaseReconciler, ctx: KindContext) -> None:
        super().__init__(inner, ctx, field_manager=HELM_FIELD_MANAGER)  # its own status writes
        self.registry = ctx.registry
        self.live = ctx.live
        self.watched: set[tuple[str, str]] = set()  # kinds handed to the managed-object watch

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        remote = False
        try:
            spec = parse_helmrelease(obj)
        except SpecError:
            pass  # the reconciler reports it (Stalled)
        else:
            remote = spec.kube_config is not None
            source = spec.chart_object
            self.registry.depends_on(
                ObjectKey(self.api.kind, spec.namespace, spec.name),
                [
                    ObjectKey(source.kind, source.namespace or spec.namespace, source.name),
                    *(ObjectKey(d.kind, d.namespace, d.name) for d in spec.dependencies),
                ],
            )
        delay = await super().reconcile(obj, reasons)
        if remote:  # its objects are on another cluster: no watch of the control plane's
            return delay
        key = ObjectKey.of(obj)
        # With drift detection, the kinds of the release's objects join the managed-object
        # watch: an edited object wakes its release (owner labels) within seconds.
        for api_version, kind, name, namespace in self.inner.release_objects(
            key.namespace, key.name
        ):
            if (api_version, kind) in self.watched:
                continue
            try:
                await self.live(api_version, kind, name, namespace)
            except KubeError as exc:
                log.warning("cannot watch %s %s for drift: %s", api_version, kind, exc)
                continue
            self.watched.add((api_version, kind))
        return delay

    def forget(self, key: ObjectKey) -> None:
        self.inner.forget(key.namespace, key.name)

    def keys_for_managed(self, obj: Obj) -> list[ObjectKey]:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        name, namespace = labels.get(OWNER_NAME), labels.get(OWNER_NAMESPACE)
        if isinstance(name, str) and isinstance(namespace, str) and name and namespace:
            return [ObjectKey(self.api.kind, namespace, name)]
        return []


def helmrelease(ctx: KindContext) -> _FluxKind:
    async def record(obj: Obj, type_: str, reason: str, message: str) -> None:
        await ctx.events.record(obj, reason=reason, message=message, type=type_)

    policy = ctx.engine.git.policy
    actions = HelmActions(
        ctx.kube.config, work_dir=ctx.engine.renderer.work_dir / "helm-releases", policy=policy
    )
    inner = HelmReleaseReconciler(
        ctx.kube,
        actions=actions,
        artifacts=ctx.artifacts,
        policy=policy,
        record=record,
        remote=kubeconfig_clusters(ctx, "HelmRelease"),  # spec.kubeConfig: the pool
    )
    return _HelmReleases(inner, ctx)
