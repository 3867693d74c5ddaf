"""Kubernetes Events about the objects gitsail reconciles (``core/v1`` Events).

``EventRecorder.record(app, reason=..., message=...)`` writes an Event in the object's
namespace (``default`` for cluster-scoped objects), so ``kubectl describe`` and
``kubectl get events --field-selector involvedObject.name=<app>`` show what gitsail did.

Repeats are aggregated the way client-go's recorder does: the same (object, type, reason,
message) within ``AGGREGATION_WINDOW`` of its last occurrence bumps ``count`` and
``lastTimestamp`` of the Event already written instead of creating another one. The
recorder remembers the Events it wrote in a small LRU index (``INDEX_SIZE`` entries); when
the remembered Event is gone (the apiserver expires Events after ``--event-ttl``, one hour
by default), a new one is created.

``emit(...)`` is ``record`` off the caller's path, as client-go's broadcaster does: the
Event is written by a task of its own, so a reconcile never waits for the two or three
Event writes of a sync (a fifth of its requests). At most ``MAX_PENDING`` writes are
waiting, ``WRITERS`` of them sent at once (client-go sends them one by one); beyond that
an Event is dropped and logged (a controller under an apiserver that does not keep up sheds
its Events first). ``drain()`` waits for the writes in flight (a
controller's shutdown, and tests). Events about one object keep their order: writes of the
same (object, type, reason, message) are serialized, and each carries the time it was
emitted.

Recording never breaks a reconcile: API failures are logged and swallowed. Messages are
cut to ``MAX_MESSAGE`` characters. Callers must not put secrets in messages; the one kind
recognised here, the userinfo of a URL (``https://user:password@host``), is removed anyway.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gitsail.kube import Kube, KubeError, NotFound
from gitsail.model import Obj
from gitsail.source import redact_text

__all__ = [
    "AGGREGATION_WINDOW",
    "MAX_MESSAGE",
    "MAX_PENDING",
    "WRITERS",
    "EventRecorder",
    "EventType",
    "Reason",
]

log = logging.getLogger(__name__)

AGGREGATION_WINDOW = 600.0  # seconds: repeats within it bump ``count``
MAX_MESSAGE = 1024
INDEX_SIZE = 4096
MAX_PENDING = 512  # Event writes emitted and not yet done
WRITERS = 4  # of those, sent at once (each holds a connection to the apiserver)
_MAX_NAME = 253 - 17  # room for ".<16 hex digits>"


class Reason(enum.StrEnum):
    """Event reasons: Argo CD's for Applications, then gitsail's own."""

    OPERATION_STARTED = "OperationStarted"
    OPERATION_COMPLETED = "OperationCompleted"
    RESOURCE_UPDATED = "ResourceUpdated"
    RESOURCE_DELETED = "ResourceDeleted"
    DRIFT_DETECTED = "DriftDetected"
    SELF_HEALED = "SelfHealed"
    SYNC_FAILED = "SyncFailed"


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass
class _Written:
    """What the recorder remembers of one Event it wrote."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    name: str = ""  # "" until created
    count: int = 0
    last_seen: float = 0.0  # monotonic


_Key = tuple[str, str, str, str, str, str, str]


class EventRecorder:
    """Writes and aggregates Events; one per controller process."""

    def __init__(
        self, kube: Kube, *, component: str = "gitsail-controller", host: str = ""
    ) -> None:
        self.kube = kube
        self.component = component
        # The pod name in a cluster; it tells replicas apart in ``reportingInstance``.
        self.host = host or socket.gethostname()
        self._index: OrderedDict[_Key, _Written] = OrderedDict()
        self._pending: set[asyncio.Task[None]] = set()
        self._writers = asyncio.Semaphore(WRITERS)
        self.dropped = 0  # Events emitted while MAX_PENDING writes were in flight

    def __repr__(self) -> str:
        return f"EventRecorder(component={self.component!r}, host={self.host!r})"

    def emit(self, involved: Obj, *, reason: str, message: str, type: str = "Normal") -> None:
        """``record`` in a task of its own: returns at once (see the module docstring)."""
        if type not in (EventType.NORMAL, EventType.WARNING):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            log.warning(
                "dropped event %s on %s: %d event writes already in flight",
                reason,
                (involved.get("metadata") or {}).get("name"),
                len(self._pending),
            )
            return
        stamp = _now()
        task = asyncio.get_running_loop().create_task(
            self._emitted(involved, reason=reason, message=message, type=type, stamp=stamp)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _emitted(
        self, involved: Obj, *, reason: str, message: str, type: str, stamp: str
    ) -> None:
        async with self._writers:
            await self.record(involved, reason=reason, message=message, type=type, stamp=stamp)

    async def drain(self) -> None:
        """Wait until every emitted Event is written (or its write failed)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def record(
        self,
        involved: Obj,
        *,
        reason: str,
        message: str,
        type: str = "Normal",
        stamp: str | None = None,
    ) -> None:
        """Record an Event about ``involved``; never raises for API failures.

        ``stamp`` is when it happened (RFC 3339, seconds); now when not given.
        """
        stamp = stamp or _now()
        if type not in (EventType.NORMAL, EventType.WARNING):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        message = redact_text(message)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        name = str(meta.get("name") or "")
        key: _Key = (
            str(involved.get("apiVersion") or ""),
            str(involved.get("kind") or ""),
            namespace,
            name,
            str(meta.get("uid") or ""),
            f"{type}/{reason}",
            message,
        )
        entry = self._remember(key)
        try:
            async with entry.lock:
                await self._write(entry, involved, namespace, reason, message, type, stamp)
        except (KubeError, OSError) as exc:
            log.warning(
                "could not record event %s on %s %s/%s: %s",
                reason,
                key[1],
                namespace,
                name,
                exc,
            )

    def _remember(self, key: _Key) -> _Written:
        entry = self._index.get(key)
        if entry is None:
            entry = self._index[key] = _Written()
            while len(self._index) > INDEX_SIZE:
                self._index.popitem(last=False)
        else:
            self._index.move_to_end(key)
        return entry

    async def _write(
        self,
        entry: _Written,
        involved: Obj,
        namespace: str,
        reason: str,
        message: str,
        type: str,
        stamp: str,
    ) -> None:
        now = time.monotonic()
        if entry.name and now - entry.last_seen <= AGGREGATION_WINDOW:
            try:
                await self.kube.merge_patch(
                    "v1",
                    "Event",
                    entry.name,
                    {"count": entry.count + 1, "lastTimestamp": stamp},
                    namespace=namespace,
                )
            except NotFound:
                pass  # expired or deleted: write a new one
            else:
                entry.count += 1
                entry.last_seen = now
                return
        created = await self.kube.create(
            self._event(involved, namespace, reason, message, type, stamp)
        )
        entry.name = created["metadata"]["name"]
        entry.count = 1
        entry.last_seen = now

    def _event(
        self, involved: Obj, namespace: str, reason: str, message: str, type: str, stamp: str
    ) -> Obj:
        meta = involved.get("metadata") or {}
        name = str(meta.get("name") or "")
        reference = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": name,
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # client-go's naming: the object's name and a hex timestamp.
                "name": f"{(name or 'object')[:_MAX_NAME]}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": {k: v for k, v in reference.items() if v},
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
