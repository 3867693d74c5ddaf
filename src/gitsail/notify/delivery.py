"""Delivery: bounded queues of notifications, sent by a few workers with retries.

Each worker has its own FIFO queue and a destination (scheme, host, port) always goes to the
same one, so notifications to one receiver are sent in the order they were queued, retries
included: a commit's ``failure`` status can never land after the ``success`` that followed.

``Dispatcher.submit`` never blocks and never raises: a notification whose ``key`` was
submitted within ``dedup_window`` seconds is dropped (one event → one notification, even
when two watch events describe it), and so is one that finds the queue full (``max_queue``;
counted and logged). Each is sent with its own timeout; a connection error, a timeout, a
429 or a 5xx is retried with doubling backoff (``backoff``) up to ``attempts`` times; any
other answer ends it (2xx delivered, 4xx refused). Redirects are not followed.

With a ``policy``, the host is resolved and refused when it is in the operator's denied
networks (``GITSAIL_DENIED_NETWORKS``: cloud metadata and link-local by default), as for
repositories. Logs name the notification (``what``) and the address's scheme, host and port
(a path or query may carry a token), and the status code: never a header, a body or a
response (a receiver may echo a token back). The clock and the sleep are seams for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from gitsail.notify.providers import Request, safe_address
from gitsail.policy import Policy
from gitsail.source import SourceError
from gitsail.source._urls import check_host

__all__ = ["Dispatcher", "Notification", "Stats"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Notification:
    key: str  # deduplication: the same key within the window is sent once
    request: Request
    timeout: float
    what: str  # for logs, e.g. "Alert ns/name → Provider ns/name"


@dataclass
class Stats:
    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    dropped: int = 0  # queue full
    attempts: int = 0
    last_error: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        *,
        max_queue: int = 1000,
        workers: int = 2,
        attempts: int = 5,
        backoff: tuple[float, float] = (1.0, 60.0),
        dedup_window: float = 300.0,
        max_remembered: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        policy: Policy | None = None,
    ) -> None:
        self.queues: list[asyncio.Queue[Notification]] = [
            asyncio.Queue(maxsize=max(1, max_queue // workers)) for _ in range(workers)
        ]
        self.workers = workers
        self.attempts = attempts
        self.backoff = backoff
        self.dedup_window = dedup_window
        self.max_remembered = max_remembered
        self.transport = transport
        self.sleep = sleep
        self.clock = clock
        self.policy = policy  # the operator's denied networks, checked before each send
        self.stats = Stats()
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def submit(self, notification: Notification) -> bool:
        """Queue it; False when it is a duplicate or the queue is full."""
        now = self.clock()
        while self._seen:
            oldest_key, stamp = next(iter(self._seen.items()))
            if now - stamp <= self.dedup_window and len(self._seen) <= self.max_remembered:
                break
            self._seen.pop(oldest_key)
        if notification.key in self._seen:
            self.stats.duplicates += 1
            log.debug("%s: already sent within the window; dropped", notification.what)
            return False
        try:
            destination = safe_address(notification.request.url).encode()
            self.queues[zlib.crc32(destination) % len(self.queues)].put_nowait(notification)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("notification queue full: %s dropped", notification.what)
            return False
        self._seen[notification.key] = now
        self.stats.submitted += 1
        return True

    async def start(self) -> None:
        if self._tasks:
            return
        self._client = httpx.AsyncClient(transport=self.transport, follow_redirects=False)
        self._tasks = [
            asyncio.create_task(self._work(queue), name=f"notify-{i}")
            for i, queue in enumerate(self.queues)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self) -> None:
        """Wait until everything submitted has been sent or given up (tests, shutdown)."""
        for queue in self.queues:
            await queue.join()

    async def _work(self, queue: asyncio.Queue[Notification]) -> None:
        while True:
            notification = await queue.get()
            try:
                await self._deliver(notification)
            except Exception:  # a worker must survive anything one notification does
                log.exception("%s: delivery failed unexpectedly", notification.what)
                self.stats.failed += 1
            finally:
                queue.task_done()

    async def _deliver(self, n: Notification) -> None:
        assert self._client is not None
        where = safe_address(n.request.url)
        if self.policy is not None:
            try:
                host = httpx.URL(n.request.url).host
                await check_host(host, self.policy, what=where)
            except (SourceError, httpx.InvalidURL) as exc:
                self.stats.failed += 1
                self.stats.last_error[n.what] = str(exc)
                log.warning("%s: not sent: %s", n.what, exc)
                return
        delay = self.backoff[0]
        for attempt in range(1, self.attempts + 1):
            self.stats.attempts += 1
            try:
                resp = await self._client.request(
                    n.request.method,
                    n.request.url,
                    headers=list(n.request.headers),
                    content=n.request.body,
                    timeout=n.timeout,
                )
                await resp.aclose()
                status = resp.status_code
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if 200 <= status < 300:
                    self.stats.delivered += 1
                    log.info("%s: delivered to %s (%d)", n.what, where, status)
                    return
                problem = f"HTTP {status}"
                if status < 500 and status not in RETRY_STATUS:
                    self.stats.failed += 1
                    self.stats.last_error[n.what] = f"{where}: {problem}"
                    log.warning("%s: %s refused it (%s); not retried", n.what, where, problem)
                    return
            if attempt == self.attempts:
                break
            log.info("%s: %s to %s; retry %d in %gs", n.what, problem, where, attempt, delay)
            await self.sleep(delay)
            delay = min(delay * 2, self.backoff[1])
        self.stats.failed += 1
        self.stats.last_error[n.what] = f"{where}: {problem}"
        log.warning(
            "%s: gave up after %d attempts (%s to %s)", n.what, self.attempts, problem, where
        )
