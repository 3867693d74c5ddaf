"""A work queue with one sequential worker per key, parallel across keys.

Keys are ``ObjectKey(kind, namespace, name)`` of the objects being reconciled (one queue
serves every registered kind: ``gitsail.controller.registry``). ``add(key, reason)``
marks a key dirty; ``add_after(key, delay, reason)`` schedules it (the earliest schedule
wins). A key is never processed by two workers at once: a key added while its reconcile
runs is processed once more right after, with every reason collected meanwhile. Workers
across keys run in parallel, at most ``concurrency`` at a time.

A schedule survives ``add``: an event runs the key now and the scheduled run still happens
at its time, so a stream of events (a managed object whose status changes every few
seconds) can never postpone a periodic poll forever. A handler that raises is retried
after ``error_delay``, doubling per consecutive failure up to ``max_error_delay``; one
success resets it.

Two lanes: ``add(key, reason, urgent=True)`` (a managed object changed: a health
transition or a drift to heal) puts the key ahead of every normal one (a new or polled
app), and its reconcile's apiserver requests wait in the client's urgent lane too
(``gitsail.kube.flow``). So when a fleet-wide rollout fills the queue with a thousand
first syncs, a drift on an app already synced waits for a free worker, not for the
rollout: every worker takes urgent keys first, and ``urgent_workers`` (2) more workers
take only urgent keys, so a heal does not even wait for a worker that a rollout's slow
first syncs hold. A key already waiting in the normal lane is moved up when it turns
urgent.

This is level-triggered: the handler is told *why* (the reasons) only as a hint; it must
read current state and converge, so dropping or merging reasons is always safe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gitsail.controller.registry import ObjectKey
from gitsail.controller.stacks import cancel_and_wait
from gitsail.kube import urgent as urgent_lane

__all__ = ["Key", "WorkQueue"]

log = logging.getLogger(__name__)

# Seconds the workers have to end once cancelled (a reconcile unwinding: a killed render
# reaped, a request aborted); what still runs then is logged and left behind.
STOP_GRACE = 10.0

Key = ObjectKey
Handler = Callable[[Key, frozenset[str]], Awaitable[float | None]]


@dataclass
class _Slot:
    reasons: set[str]
    running: bool = False
    dirty: bool = False
    timer: asyncio.TimerHandle | None = None
    due: float = 0.0
    failures: int = 0  # consecutive handler exceptions
    urgent: bool = False  # the next run is urgent (queued in the urgent lane)


class WorkQueue:
    """Per-key sequential, cross-key parallel processing with delayed requeues.

    The handler returns the seconds after which the key should be reconciled again
    (None: only when something new happens). Exceptions are logged and the key is
    retried after ``error_delay``, doubled per consecutive failure up to ``max_error_delay``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        concurrency: int = 10,
        urgent_workers: int = 2,
        error_delay: float = 5.0,
        max_error_delay: float = 300.0,
    ) -> None:
        self._handler = handler
        self._slots: dict[Key, _Slot] = {}
        # The two lanes, first come first served within each; every worker takes an urgent
        # key first, and ``urgent_workers`` more take only urgent keys (so a heal never
        # waits for a worker busy with a rollout's slow first syncs).
        self._urgent: collections.deque[Key] = collections.deque()
        self._normal: collections.deque[Key] = collections.deque()
        self._wake = asyncio.Event()
        self._concurrency = concurrency
        self._urgent_workers = urgent_workers
        self._error_delay = error_delay
        self._max_error_delay = max_error_delay
        self._workers: list[asyncio.Task[None]] = []
        self.processed = 0

    @property
    def depth(self) -> int:
        return len(self._urgent) + len(self._normal)

    def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(False), name=f"gitsail-worker-{i}")
                for i in range(self._concurrency)
            ] + [
                asyncio.create_task(self._work(True), name=f"gitsail-urgent-worker-{i}")
                for i in range(self._urgent_workers)
            ]

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Cancel the workers and wait for them, at most ``grace`` seconds (a reconcile that
        does not end on cancel is logged with where it waits, and left behind)."""
        workers, self._workers = self._workers, []
        await cancel_and_wait(workers, grace, "work queue stop")
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()

    def add(self, key: Key, reason: str = "", *, urgent: bool = False) -> None:
        slot = self._slots.setdefault(key, _Slot(set()))
        if reason:
            slot.reasons.add(reason)
        if slot.running:
            # Its run in progress (a sync creating the objects whose events these are) sees
            # most of the change already: the rerun waits in the normal lane, where more
            # events coalesce into it, instead of one urgent rerun per event.
            slot.dirty = True
            return
        if not slot.dirty:
            slot.dirty = True
            slot.urgent = urgent
            self._put(key, urgent)
        elif urgent and not slot.urgent:
            # Waiting in the normal lane: queue it again, urgently; the later entry is
            # skipped (the key is no longer dirty when it comes up).
            slot.urgent = True
            self._put(key, True)

    def _put(self, key: Key, urgent: bool) -> None:
        (self._urgent if urgent else self._normal).append(key)
        self._wake.set()

    async def _next(self, urgent_only: bool) -> Key:
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._normal and not urgent_only:
                return self._normal.popleft()
            # Nothing for this worker: wait for the next put (no await since the check, so
            # no put can be missed; workers woken together re-check the lanes).
            self._wake.clear()
            await self._wake.wait()

    def add_after(self, key: Key, delay: float, reason: str = "") -> None:
        if delay <= 0:
            self.add(key, reason)
            return
        slot = self._slots.setdefault(key, _Slot(set()))
        due = time.monotonic() + delay
        if slot.dirty and not slot.running:
            return  # already waiting to run sooner
        if slot.timer is not None and slot.due <= due:
            return
        if slot.timer is not None:
            slot.timer.cancel()
        slot.due = due
        slot.timer = asyncio.get_running_loop().call_later(delay, self._fire, key, reason)

    def forget(self, key: Key) -> None:
        slot = self._slots.get(key)
        if slot is not None and not slot.running:
            if slot.timer is not None:
                slot.timer.cancel()
            del self._slots[key]

    def _fire(self, key: Key, reason: str) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            slot.timer = None
        self.add(key, reason)

    async def _work(self, urgent_only: bool) -> None:
        while True:
            key = await self._next(urgent_only)
            slot = self._slots.get(key)
            if slot is None or slot.running or not slot.dirty:
                continue  # gone, running, or a stale entry of a key already processed
            slot.running = True
            slot.dirty = False
            urgent = slot.urgent
            slot.urgent = False
            reasons = frozenset(slot.reasons)
            slot.reasons.clear()
            delay: float | None
            try:
                with urgent_lane(urgent):
                    delay = await self._handler(key, reasons)
                slot.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                slot.failures += 1
                delay = min(
                    self._error_delay * 2.0 ** min(slot.failures - 1, 32), self._max_error_delay
                )
                log.exception("reconcile of %s failed; retrying in %gs", key, delay)
            finally:
                slot.running = False
                self.processed += 1
            if slot.dirty:
                self._put(key, slot.urgent)
            elif delay is not None:
                self.add_after(key, delay, "requeue")
