"""What Flux's source reconcilers share: the finalizer, the one status write, retry delays.

GitRepository, OCIRepository, HelmRepository and HelmChart each fetch something different,
but they keep their objects the same way:

- ``finalizers.fluxcd.io`` is added once (a metadata patch carrying the resourceVersion it
  read, so it never overwrites a concurrent change) and removed after the object's
  artifacts are deleted from the store;
- status is ONE merge patch of ``/status`` computed from the current status, and none at
  all when nothing changed;
- the next run is the interval after a success or a stall, the server's ``retry_after``
  when it gave one, otherwise a backoff doubling from ``RETRY_BASE`` up to the interval.

A subclass sets ``api_version``, ``kind`` and ``artifact_kind`` (the store's directory).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from gitsail.kinds.status import ReconcileError, Stalled, Transient
from gitsail.kube.errors import Conflict, NotFound
from gitsail.model import Obj
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.errors import InvalidSource

__all__ = [
    "FINALIZER",
    "RETRY_BASE",
    "ControlPlane",
    "FluxSourceReconciler",
    "metadata_patch",
    "rfc3339",
    "status_patch",
    "utcnow",
]

FINALIZER = "finalizers.fluxcd.io"
RETRY_BASE = 1.0  # first retry after a transient failure, doubled each time


class ControlPlane(Protocol):
    """What a source reconciler asks of the cluster (``gitsail.kube.Kube`` has it)."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj: ...


def status_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning ``current`` into ``new`` (removed keys as null), or None."""
    if dict(current) == dict(new):
        return None
    patch: dict[str, Any] = {k: v for k, v in new.items() if current.get(k) != v}
    for key in current:
        if key not in new:
            patch[key] = None
    return {"status": patch}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def metadata_patch(meta: Mapping[str, Any], finalizers: list[str] | None) -> dict[str, Any]:
    """Set the finalizers, only if nobody changed the object since it was read."""
    patch: dict[str, Any] = {"finalizers": finalizers}
    if meta.get("resourceVersion"):
        patch["resourceVersion"] = meta["resourceVersion"]
    return {"metadata": patch}


class FluxSourceReconciler:
    """The bookkeeping every Flux source kind does the same way (see the module text)."""

    api_version: ClassVar[str]
    kind: ClassVar[str]
    artifact_kind: ClassVar[str]
    finalizer: ClassVar[str] = FINALIZER

    def __init__(
        self,
        control_plane: ControlPlane,
        store: ArtifactStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        self.control_plane = control_plane
        self.store = store
        self.clock = clock
        self.field_manager = field_manager
        self._failures: dict[tuple[str, str], int] = {}

    def now(self) -> str:
        return rfc3339(self.clock())

    def next_run(
        self, key: tuple[str, str], error: ReconcileError | None, interval: float
    ) -> float:
        """Seconds to the next reconcile: the interval, or a backoff after a transient error."""
        if error is None or isinstance(error, Stalled):
            self._failures.pop(key, None)
            return interval
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if isinstance(error, Transient) and error.retry_after is not None:
            return float(error.retry_after)
        return min(interval, RETRY_BASE * (1 << min(failures - 1, 20)))

    def artifact_present(self, current: Mapping[str, Any]) -> bool:
        """Whether the artifact named in ``current`` status is still in the store."""
        return self.store.exists(str((current.get("artifact") or {}).get("path") or ""))

    async def finalize(self, obj: Obj) -> None:
        """Remove the object's artifacts and then its finalizer (idempotent)."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        with contextlib.suppress(InvalidSource):  # a name the store could never have written
            await asyncio.to_thread(self.store.remove, self.artifact_kind, namespace, name)
        self._failures.pop((namespace, name), None)
        api_version = str(obj.get("apiVersion") or self.api_version)
        # The patch carries the resourceVersion it read; the garbage collector edits a
        # deleting object too (foreground deletion), so a Conflict reads it again.
        for _attempt in range(5):
            finalizers = list(meta.get("finalizers") or [])
            if self.finalizer not in finalizers:
                return
            remaining = [f for f in finalizers if f != self.finalizer]
            try:
                await self.control_plane.merge_patch(
                    api_version,
                    self.kind,
                    name,
                    metadata_patch(meta, remaining or None),
                    namespace=namespace,
                    field_manager=self.field_manager,
                )
                return
            except NotFound:
                return
            except Conflict:
                latest = await self.control_plane.get(api_version, self.kind, name, namespace)
                if latest is None:
                    return
                meta = latest.get("metadata") or {}
        raise Transient(
            "FinalizerNotRemoved", f"{self.kind} {namespace}/{name} keeps changing; retrying"
        )

    async def ensure_finalizer(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if self.finalizer in finalizers:
            return
        # Changed meanwhile (Conflict): the watch brings it back, the next run adds it.
        with contextlib.suppress(Conflict):
            await self.control_plane.merge_patch(
                str(obj.get("apiVersion") or self.api_version),
                self.kind,
                str(meta.get("name")),
                metadata_patch(meta, [*finalizers, self.finalizer]),
                namespace=str(meta.get("namespace")),
                field_manager=self.field_manager,
            )

    async def write_status(
        self, obj: Obj, current: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        """One merge patch of ``/status``; none when nothing changed."""
        patch = status_patch(current, status)
        if patch is None:
            return
        meta = obj.get("metadata") or {}
        with contextlib.suppress(NotFound):  # deleted meanwhile
            await self.control_plane.merge_patch(
                str(obj.get("apiVersion") or self.api_version),
                self.kind,
                str(meta.get("name")),
                patch,
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=self.field_manager,
            )
