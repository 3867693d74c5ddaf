"""One fetch per (store, key, version) for all ExternalSecrets: dedup, cache, rate limit.

ESO reads every ExternalSecret's keys on every refresh, so 1000 objects reading one key
make 1000 reads per interval. Here every read goes through one ``FetchCache``:

- **in flight**: concurrent asks for the same (store, key, version, metadata) share one
  call;
- **fresh**: a value checked less than ``max_age`` ago (the asking object's refresh
  interval) is answered from memory;
- **pinned**: a value read at an explicit version never changes and is not read again;
- **change detection**: an older value is first checked with the store's cheap call
  (``Provider.current_version``: Vault KV v2 metadata, AWS DescribeSecret); when the version
  is the same, only the check time moves; otherwise (or without such a call) it is re-read;
- **per-store rate limit**: every call to a store first takes a token from that store's
  bucket (``rate`` per second, ``burst``), so no refresh wave throttles a provider;
- ``force``: a forced sync (ESO's force-sync annotation) reads again, whatever is cached.

Errors are not cached: the next ask tries again. The cache is bounded (``max_entries``,
least recently used out). Counters (``reads``, ``checks``, ``hits``) feed the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from gitsail.secrets.external.provider import Provider, Remote

__all__ = ["CacheKey", "FetchCache", "TokenBucket"]


@dataclass(frozen=True)
class CacheKey:
    store: Hashable  # the store's identity and spec digest (a changed store is a new cache)
    key: str
    version: str = ""
    metadata: bool = False


@dataclass
class _Entry:
    remote: Remote
    checked: float  # when the value was last read or confirmed current


class TokenBucket:
    """An async token bucket: ``take()`` waits for a token (``rate`` per second)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.at = clock()
        self.clock = clock
        self.sleep = sleep
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.sleep((1 - self.tokens) / self.rate)


@dataclass
class FetchCache:
    """See the module docstring."""

    rate: float = 10.0
    burst: int = 20
    max_entries: int = 20_000
    clock: Callable[[], float] = time.monotonic
    reads: int = 0
    checks: int = 0
    hits: int = 0
    _entries: OrderedDict[CacheKey, _Entry] = field(default_factory=OrderedDict)
    _flight: dict[CacheKey, asyncio.Future[Remote]] = field(default_factory=dict)
    _buckets: dict[Hashable, TokenBucket] = field(default_factory=dict)

    def bucket(self, store: Hashable) -> TokenBucket:
        bucket = self._buckets.get(store)
        if bucket is None:
            bucket = self._buckets[store] = TokenBucket(self.rate, self.burst, clock=self.clock)
        return bucket

    async def get(
        self, key: CacheKey, provider: Provider, *, max_age: float, force: bool = False
    ) -> Remote:
        entry = self._entries.get(key)
        if entry is not None and not force:
            pinned = bool(key.version)
            if pinned or self.clock() - entry.checked < max_age:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.remote
        flying = self._flight.get(key)
        if flying is not None:
            self.hits += 1
            return await asyncio.shield(flying)
        future: asyncio.Future[Remote] = asyncio.get_running_loop().create_future()
        self._flight[key] = future
        try:
            remote = await self._fetch(key, provider, entry, force)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(remote)
            return remote
        finally:
            del self._flight[key]

    async def _fetch(
        self, key: CacheKey, provider: Provider, entry: _Entry | None, force: bool
    ) -> Remote:
        bucket = self.bucket(key.store)
        if entry is not None and not force and not key.metadata and entry.remote.version:
            await bucket.take()
            self.checks += 1
            current = await provider.current_version(key.key)
            if current is not None and current == entry.remote.version:
                entry.checked = self.clock()
                self._entries.move_to_end(key)
                return entry.remote
        await bucket.take()
        self.reads += 1
        remote = await provider.read(key.key, key.version, metadata=key.metadata)
        self._entries[key] = _Entry(remote, self.clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return remote

    def checked(self, key: CacheKey) -> float:
        """When the cached value of ``key`` was last read or confirmed (now when absent)."""
        entry = self._entries.get(key)
        return entry.checked if entry is not None else self.clock()

    def forget_store(self, store: Hashable) -> None:
        """Drop what a store's old spec read (its spec changed or it was deleted)."""
        for key in [k for k in self._entries if k.store == store]:
            del self._entries[key]
        self._buckets.pop(store, None)

    def __len__(self) -> int:
        return len(self._entries)
