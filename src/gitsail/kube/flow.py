"""Client-side flow control: a QPS/burst budget for one apiserver, with a priority lane.

``FlowControl(qps, burst)`` is a token bucket like client-go's ``--kube-api-qps`` /
``--kube-api-burst`` (Argo CD's application controller: ``ARGOCD_K8S_CLIENT_QPS`` 50,
``ARGOCD_K8S_CLIENT_BURST`` 100): ``burst`` tokens at most, refilled at ``qps`` per second,
one taken per request. ``qps <= 0`` means no limit (what a one-shot CLI wants).

Requests wait in two lanes. ``URGENT`` waiters (health checks and self-heal of apps already
synced: ``urgent()`` around their work) are always served before ``NORMAL`` ones (a fleet
of apps being synced for the first time), so a drift during a big rollout waits for the
next token, not for the whole rollout's queue. Within a lane, first come first served.

A 429 answer (the apiserver's API Priority and Fairness rejecting a request, or an old
``--max-requests-inflight``) pauses the whole bucket for its ``Retry-After`` (bounded by the
caller), not just the one request: every request to that server would be rejected too.

The clock and the sleep are injected, so tests drive time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = [
    "NORMAL",
    "URGENT",
    "FlowControl",
    "RequestStats",
    "current_lane",
    "urgent",
]

URGENT = 0
NORMAL = 1

# A token counts as whole a hair before 1.0: refills computed from float clock readings
# (1000.1 - 1000.0 is 0.0999999...) must not leave a waiter sleeping for ever-smaller gaps.
_EPSILON = 1e-6

_LANE: ContextVar[int] = ContextVar("gitsail_kube_lane", default=NORMAL)


def current_lane() -> int:
    """The lane requests made in this context wait in (``NORMAL`` unless ``urgent()``)."""
    return _LANE.get()


@contextlib.contextmanager
def urgent(on: bool = True) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) wait in the ``URGENT`` lane."""
    token = _LANE.set(URGENT if on else _LANE.get())
    try:
        yield
    finally:
        _LANE.reset(token)


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class FlowControl:
    """A token bucket with an urgent lane; ``await acquire()`` before each request."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst must be at least 1 with a QPS limit, not {burst}")
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._paused_until = float("-inf")
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self.waited_s = 0.0  # total time requests spent waiting for a token
        self.throttled = 0  # requests that had to wait

    @property
    def limited(self) -> bool:
        return self.qps > 0

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    def _refill(self) -> float:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
        return now

    def _take_now(self) -> bool:
        now = self._refill()
        if now < self._paused_until or self._tokens < 1 - _EPSILON or self._waiting:
            return False
        self._tokens = max(0.0, self._tokens - 1)
        return True

    async def acquire(self, lane: int | None = None) -> None:
        """Wait for a token in ``lane`` (default: the context's, see ``urgent()``)."""
        if not self.limited and self._clock() >= self._paused_until:
            return
        if self.limited and self._take_now():
            return
        started = self._clock()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._waiting, (current_lane() if lane is None else lane, next(self._seq), fut)
        )
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="gitsail-kube-flow")
        self.throttled += 1
        try:
            await fut
        finally:
            self.waited_s += max(0.0, self._clock() - started)

    def pause(self, seconds: float) -> None:
        """No request for ``seconds`` (a 429's ``Retry-After``); the longest pause wins."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def _dispatch(self) -> None:
        while self._waiting:
            _, _, fut = self._waiting[0]
            if fut.done():  # cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            now = self._refill()
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
                continue
            if not self.limited:
                heapq.heappop(self._waiting)
                fut.set_result(None)
                continue
            if self._tokens >= 1 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1)
                heapq.heappop(self._waiting)
                fut.set_result(None)
                continue
            await self._sleep(max(1 - self._tokens, _EPSILON) / self.qps)


@dataclass
class RequestStats:
    """Requests a client sent, counted at the client: by HTTP method (``APPLY`` for a
    server-side apply, ``+dry-run`` for dry runs), watches apart, and 429s received."""

    requests: dict[str, int] = field(default_factory=dict)
    throttled_429: int = 0

    def count(self, key: str) -> None:
        self.requests[key] = self.requests.get(key, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def writes(self) -> int:
        """Requests that change something: everything but reads, watches and dry runs."""
        return sum(
            n
            for k, n in self.requests.items()
            if k.split("+")[0] not in {"GET", "LIST", "WATCH"} and not k.endswith("+dry-run")
        )
