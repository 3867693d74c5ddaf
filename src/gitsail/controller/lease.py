"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go does it.

One Lease object names the leader (``spec.holderIdentity``) and when it last proved it is
alive (``spec.renewTime``, an RFC 3339 micro time). Every replica runs a ``LeaderElector``:

- **acquire**: read the Lease; create it if it does not exist; take it over if it has no
  holder or its holder let it expire (``renewTime + leaseDurationSeconds < now``). A
  takeover sets ``acquireTime`` and increments ``leaseTransitions``. Otherwise try again
  every ``retry_period``.
- **renew**: the leader rewrites ``renewTime`` every ``retry_period``. If it cannot for
  ``renew_deadline`` seconds (errors, conflicts), or it sees another holder, it steps down
  and goes back to acquiring. ``renew_deadline < lease_duration``, so a leader that cannot
  reach the apiserver stops leading before anyone else may take the Lease over.
- **release**: when ``run`` is cancelled, the leader stops its work and then clears
  ``holderIdentity``, so another replica takes over at its next try instead of waiting for
  the Lease to expire.

Every write is optimistic: a replace carries the ``resourceVersion`` that was read, so of
two replicas racing for an expired Lease exactly one wins; the other gets ``Conflict``.

Expiry compares the holder's ``renewTime`` with our clock, as the Lease API defines it; the
replicas' clocks must agree to well within ``lease_duration - renew_deadline``. The renew
deadline itself is measured on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gitsail.kube import Conflict, Kube, KubeError

__all__ = ["LeaderElector", "format_micro_time", "lease_expired", "parse_micro_time"]

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"
LEASE_KIND = "Lease"

Callback = Callable[[], Awaitable[None]]


class _Attempt(enum.Enum):
    HELD = "held"  # we hold the Lease (created, renewed or taken over)
    TAKEN = "taken"  # someone else holds a valid Lease
    FAILED = "failed"  # conflict or API error: try again


def format_micro_time(ts: float) -> str:
    """``2026-11-26T07:00:00.000000Z``: a Kubernetes MicroTime."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time, or None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def lease_expired(spec: dict[str, Any], now: float) -> bool:
    """Whether a Lease's holder let it expire: ``renewTime + leaseDurationSeconds < now``.

    A Lease without a holder, or without a usable renew time or duration, is free."""
    if not spec.get("holderIdentity"):
        return True
    renewed = parse_micro_time(spec.get("renewTime")) or parse_micro_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int | float):
        return True
    return renewed + duration < now


class LeaderElector:
    """Elects one leader among the replicas that share the Lease ``namespace/name``."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity (the pod name)")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, "
                f"got {retry_period}, {renew_deadline}, {lease_duration}"
            )
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._leading = asyncio.Event()
        self._observed_holder = ""
        self._held_by_us = False  # whether our identity may be in the Lease (release on exit)
        self._renewed_at = 0.0  # monotonic start of the last successful write

    def __repr__(self) -> str:
        return (
            f"LeaderElector({self.namespace}/{self.name}, identity={self.identity!r}, "
            f"leader={self.is_leader})"
        )

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the Lease (as of its last successful renewal)."""
        return self._leading.is_set()

    async def wait_until_leader(self) -> None:
        """Return once this replica leads (immediately if it already does)."""
        await self._leading.wait()

    async def run(
        self,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
    ) -> None:
        """Acquire, lead, renew; step down and start over when renewal fails. Runs until
        cancelled; then it stops leading and releases the Lease if it holds it.

        ``on_started_leading`` runs as a task while this replica leads and is cancelled when
        it stops (so it may be the leader's whole work loop); ``on_stopped_leading`` is
        awaited after that. If ``on_started_leading`` raises, this replica steps down and
        releases the Lease, so that another one can take over.
        """
        try:
            while True:
                await self._acquire()
                work = asyncio.create_task(self._lead(on_started_leading))
                renewal = asyncio.create_task(self._renew())
                try:
                    await asyncio.wait({work, renewal}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    await self._step_down(work, renewal, on_stopped_leading)
                if not work.cancelled() and work.exception() is not None:
                    # Give the other replicas a fair chance before competing again.
                    await self._release()
                    await asyncio.sleep(self.lease_duration)
        finally:
            if self._held_by_us:
                await self._release()

    # -- phases -------------------------------------------------------------------------

    async def _acquire(self) -> None:
        log.info("lease %s/%s: %s trying to acquire", self.namespace, self.name, self.identity)
        while True:
            if await self._timed_attempt(self.renew_deadline) is _Attempt.HELD:
                self._leading.set()
                log.info(
                    "lease %s/%s: %s became the leader", self.namespace, self.name, self.identity
                )
                return
            await asyncio.sleep(self.retry_period)

    async def _lead(self, on_started_leading: Callback | None) -> None:
        if on_started_leading is None:
            await asyncio.Event().wait()  # lead until renewal ends it
            return
        try:
            await on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "lease %s/%s: the leader's work failed; stepping down", self.namespace, self.name
            )
            raise
        await asyncio.Event().wait()  # the callback returned: keep leading

    async def _renew(self) -> None:
        """Renew every ``retry_period``; return when leadership is lost."""
        while True:
            await asyncio.sleep(self.retry_period)
            remaining = self._renewed_at + self.renew_deadline - time.monotonic()
            result = await self._timed_attempt(remaining) if remaining > 0 else _Attempt.FAILED
            if result is _Attempt.HELD:
                continue
            if result is _Attempt.TAKEN:
                log.warning(
                    "lease %s/%s: %s lost the lease to %s",
                    self.namespace,
                    self.name,
                    self.identity,
                    self._observed_holder,
                )
                return
            if time.monotonic() - self._renewed_at >= self.renew_deadline:
                log.warning(
                    "lease %s/%s: %s could not renew for %.1fs; stepping down",
                    self.namespace,
                    self.name,
                    self.identity,
                    self.renew_deadline,
                )
                return

    async def _step_down(
        self, work: asyncio.Task[None], renewal: asyncio.Task[None], on_stopped: Callback | None
    ) -> None:
        """Stop the leader's work first, then report; the Lease is released by the caller."""
        was_leading = self._leading.is_set()
        self._leading.clear()
        for task in (work, renewal):
            task.cancel()
        await asyncio.gather(work, renewal, return_exceptions=True)
        if not renewal.cancelled() and renewal.exception() is not None:
            log.error(
                "lease %s/%s: renewal failed unexpectedly",
                self.namespace,
                self.name,
                exc_info=renewal.exception(),
            )
        if was_leading:
            log.info("lease %s/%s: %s stopped leading", self.namespace, self.name, self.identity)
        if on_stopped is not None and was_leading:
            try:
                await on_stopped()
            except Exception:
                log.exception("lease %s/%s: on_stopped_leading failed", self.namespace, self.name)

    # -- one read-modify-write of the Lease ---------------------------------------------

    async def _timed_attempt(self, within: float) -> _Attempt:
        """One attempt bounded by ``within`` seconds. On success ``_renewed_at`` is when the
        attempt started (monotonic), which is no later than the renewTime it wrote."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(within):
                result = await self._attempt()
        except TimeoutError:
            log.warning(
                "lease %s/%s: no answer from the apiserver within %.1fs",
                self.namespace,
                self.name,
                within,
            )
            return _Attempt.FAILED
        if result is _Attempt.HELD:
            self._renewed_at = started
        return result

    async def _attempt(self) -> _Attempt:
        """Create, renew or take over the Lease once."""
        try:
            return await self._try_acquire_or_renew()
        except Conflict:
            log.debug("lease %s/%s: conflict, someone else wrote it", self.namespace, self.name)
            return _Attempt.FAILED
        except KubeError as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return _Attempt.FAILED

    async def _try_acquire_or_renew(self) -> _Attempt:
        now = self.clock()
        lease = await self.kube.get(LEASE_API_VERSION, LEASE_KIND, self.name, self.namespace)
        if lease is None:
            self._held_by_us = True
            await self.kube.create(
                {
                    "apiVersion": LEASE_API_VERSION,
                    "kind": LEASE_KIND,
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec({}, now, takeover=False),
                }
            )
            return _Attempt.HELD
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if holder != self._observed_holder:
            if holder and holder != self.identity:
                log.info("lease %s/%s: the leader is %s", self.namespace, self.name, holder)
            self._observed_holder = holder
        if holder and holder != self.identity and not lease_expired(spec, now):
            return _Attempt.TAKEN
        if holder != self.identity:
            log.info(
                "lease %s/%s: taking over from %s",
                self.namespace,
                self.name,
                f"{holder} (expired)" if holder else "no holder",
            )
        self._held_by_us = True
        # The read metadata carries its resourceVersion: Conflict if anyone wrote since.
        await self.kube.replace(
            {**lease, "spec": self._spec(spec, now, takeover=holder != self.identity)}
        )
        return _Attempt.HELD

    def _spec(self, old: dict[str, Any], now: float, *, takeover: bool) -> dict[str, Any]:
        stamp = format_micro_time(now)
        spec = dict(old)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = max(1, math.ceil(self.lease_duration))
        spec["renewTime"] = stamp
        transitions = int(old.get("leaseTransitions") or 0)
        if takeover:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = transitions + 1
        else:
            spec.setdefault("acquireTime", stamp)
            spec["leaseTransitions"] = transitions
        return spec

    async def _release(self) -> None:
        """Clear ``holderIdentity`` if we hold the Lease; best effort, bounded in time."""
        self._held_by_us = False
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.kube.get(
                    LEASE_API_VERSION, LEASE_KIND, self.name, self.namespace
                )
                if lease is None:
                    return
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != self.identity:
                    return
                spec.pop("holderIdentity", None)
                spec["renewTime"] = format_micro_time(self.clock())
                await self.kube.replace({**lease, "spec": spec})
        except (KubeError, TimeoutError) as exc:
            log.warning(
                "lease %s/%s: could not release it (%s); it expires on its own",
                self.namespace,
                self.name,
                exc or "timed out",
            )
            return
        log.info("lease %s/%s: %s released it", self.namespace, self.name, self.identity)
