"""What the server reads: watch caches of every delivered kind and of its settings.

``ServerState.start`` lists and then watches (``gitsail.kube.WatchCache``) the Argo CD and
Flux kinds, in the namespaces given or in all, and the three settings objects of the control
namespace (``argocd-cm``, ``argocd-rbac-cm``, ``argocd-secret``, each watched by name so no
other Secret is held in memory). Page views and API reads are served from these caches: a
request costs no apiserver call. A kind whose CRD is not installed is served as empty.

The objects Kubernetes derives from an app's resources (ReplicaSets, Pods, Jobs,
EndpointSlices) are watched cluster-wide from the first resource-tree request on
(``derived``); until then the server holds none of them.

``changes()`` fans the caches' events out to listeners (SSE streams): each listener has a
bounded queue; one that falls behind is dropped (its stream ends and the browser
reconnects), so a slow client cannot make the server hold events without limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gitsail.cli.flux import (
    GIT_REPOSITORY,
    HELM_CHART,
    HELM_RELEASE,
    HELM_REPOSITORY,
    KUSTOMIZATION,
    OCI_REPOSITORY,
    FluxKind,
)
from gitsail.kube import KubeError, NotFoundKind, WatchCache
from gitsail.kube.cache import NamedSource, SelectingSource
from gitsail.model import Obj

__all__ = ["DERIVED", "KINDS", "Change", "ClusterReader", "KindSpec", "ServerState"]

log = logging.getLogger(__name__)

LISTENER_QUEUE = 1000


@dataclass(frozen=True)
class KindSpec:
    path: str  # the API path segment: /api/v1/<path>
    api_version: str
    kind: str
    resource: str  # the RBAC resource
    flux: FluxKind | None = None


_ARGO = "argoproj.io/v1alpha1"
_FLUX = (KUSTOMIZATION, HELM_RELEASE, GIT_REPOSITORY, HELM_REPOSITORY, HELM_CHART, OCI_REPOSITORY)
_FLUX_PATHS = {
    "Kustomization": ("kustomizations", "kustomizations"),
    "HelmRelease": ("helmreleases", "helmreleases"),
    "GitRepository": ("gitrepositories", "sources"),
    "HelmRepository": ("helmrepositories", "sources"),
    "HelmChart": ("helmcharts", "sources"),
    "OCIRepository": ("ocirepositories", "sources"),
}
KINDS: dict[str, KindSpec] = {
    k.path: k
    for k in (
        KindSpec("applications", _ARGO, "Application", "applications"),
        KindSpec("applicationsets", _ARGO, "ApplicationSet", "applicationsets"),
        KindSpec("projects", _ARGO, "AppProject", "projects"),
        *(
            KindSpec(*_FLUX_PATHS[f.kind][:1], f.api_version, f.kind, _FLUX_PATHS[f.kind][1], f)
            for f in _FLUX
        ),
    )
}

# What Kubernetes derives from delivered objects, shown under them in the resource tree.
DERIVED = (
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
)


@dataclass(frozen=True)
class Change:
    path: str  # the KINDS key
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


# What the caches need (``Kube`` has it; benchmarks and unit tests pass an in-memory one).
ClusterReader = SelectingSource


class ServerState:
    def __init__(
        self, kube: ClusterReader, control_namespace: str, namespaces: tuple[str, ...] = ()
    ) -> None:
        self.kube = kube
        self.control_namespace = control_namespace
        self.namespaces = namespaces  # () = all namespaces
        self.caches: dict[str, list[WatchCache]] = {}
        self.unavailable: dict[str, str] = {}  # kind path -> why it is served empty
        self.settings: dict[str, WatchCache] = {}
        self.derived: dict[str, WatchCache] = {}
        self._derived_lock = asyncio.Lock()
        self._listeners: set[asyncio.Queue[Change | None]] = set()
        self._pumps: list[asyncio.Task[None]] = []
        self._changes: dict[str, int] = {}  # kind path -> changes seen (memo keys)

    async def start(self) -> None:
        for name, kind in (
            ("argocd-cm", "ConfigMap"),
            ("argocd-rbac-cm", "ConfigMap"),
            ("argocd-secret", "Secret"),
        ):
            cache = WatchCache(NamedSource(self.kube, name), "v1", kind, self.control_namespace)
            await cache.start()
            self.settings[name] = cache
        for path, spec in KINDS.items():
            caches = [
                WatchCache(self.kube, spec.api_version, spec.kind, ns)
                for ns in (self.namespaces or (None,))
            ]
            try:
                for cache in caches:
                    await cache.start()
            except NotFoundKind as exc:
                self.unavailable[path] = str(exc)
                log.info("%s are not served: %s", spec.kind, exc)
                for cache in caches:
                    await cache.stop()
                continue
            self.caches[path] = caches
            for cache in caches:
                self._pumps.append(asyncio.create_task(self._pump(path, cache)))

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        for task in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pumps.clear()
        for cache in [
            *self.settings.values(),
            *self.derived.values(),
            *(c for caches in self.caches.values() for c in caches),
        ]:
            await cache.stop()
        for queue in list(self._listeners):
            self._close(queue)

    # -- reads ------------------------------------------------------------------------

    def items(self, path: str) -> list[Obj]:
        out: list[Obj] = []
        for cache in self.caches.get(path, ()):
            out.extend(cache.items())
        return out

    def get(self, path: str, namespace: str, name: str) -> Obj | None:
        for cache in self.caches.get(path, ()):
            if cache.namespace in (None, namespace):
                obj = cache.get(namespace, name)
                if obj is not None:
                    return obj
        return None

    def version(self, path: str) -> int:
        """How many changes of a kind were seen: a memo of what is derived from it is
        stale once this moves."""
        return self._changes.get(path, 0)

    def settings_version(self, name: str) -> str:
        """The resourceVersion of a settings object ("" when it does not exist)."""
        cache = self.settings.get(name)
        obj = cache.get(self.control_namespace, name) if cache else None
        return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")

    def settings_data(self, name: str) -> dict[str, str]:
        """``data`` of a settings object (a Secret's decoded), {} when it does not exist."""
        cache = self.settings.get(name)
        obj = cache.get(self.control_namespace, name) if cache else None
        if obj is None:
            return {}
        data = obj.get("data") or {}
        if obj.get("kind") == "Secret":
            out = {}
            for key, value in data.items():
                with contextlib.suppress(ValueError):
                    out[str(key)] = base64.b64decode(str(value)).decode()
            return out
        return {str(k): str(v) for k, v in data.items()}

    async def derived_items(self) -> dict[str, list[Obj]]:
        """The derived objects by kind, watching them from the first call on."""
        async with self._derived_lock:
            for api_version, kind in DERIVED:
                if kind in self.derived:
                    continue
                cache = WatchCache(self.kube, api_version, kind)
                try:
                    await cache.start()
                except KubeError as exc:  # e.g. no EndpointSlice API: show the rest
                    log.info("%s not shown in resource trees: %s", kind, exc)
                self.derived[kind] = cache
        return {kind: cache.items() for kind, cache in self.derived.items()}

    # -- changes ----------------------------------------------------------------------

    async def _pump(self, path: str, cache: WatchCache) -> None:
        queue = cache.subscribe()
        try:
            while True:
                event = await queue.get()
                change = Change(path, event.type, event.object)
                self._changes[path] = self._changes.get(path, 0) + 1
                for listener in list(self._listeners):
                    try:
                        listener.put_nowait(change)
                    except asyncio.QueueFull:
                        self._close(listener)
        finally:
            cache.unsubscribe(queue)

    def _close(self, queue: asyncio.Queue[Change | None]) -> None:
        self._listeners.discard(queue)
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)
        # A full queue is drained by its reader up to the end; ``changes`` stops on the
        # listener's removal too.

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Change | None]]:
        """A queue of every change (``None`` when this listener was dropped)."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=LISTENER_QUEUE)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def listening(self, queue: asyncio.Queue[Change | None]) -> bool:
        return queue in self._listeners
