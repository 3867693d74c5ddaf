"""The shared fetch cache: one read for many askers, change detection, pinned versions."""

from __future__ import annotations

import asyncio
import contextlib

from gitsail.secrets.external.cache import CacheKey, FetchCache, TokenBucket
from gitsail.secrets.external.provider import Find, Remote


class CountingProvider:
    kind = "fake"

    def __init__(self) -> None:
        self.value = b"v1"
        self.version = "1"
        self.reads = 0
        self.checks = 0
        self.gate: asyncio.Event | None = None

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return Remote(self.value, version or self.version)

    async def current_version(self, key: str) -> str | None:
        self.checks += 1
        return self.version

    async def find(self, find: Find) -> dict[str, bytes]:
        return {}

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_asks_share_one_read() -> None:
    provider = CountingProvider()
    provider.gate = asyncio.Event()
    cache = FetchCache(rate=0)
    key = CacheKey("store", "db")
    tasks = [asyncio.create_task(cache.get(key, provider, max_age=60)) for _ in range(50)]
    await asyncio.sleep(0)
    provider.gate.set()
    results = await asyncio.gather(*tasks)
    assert provider.reads == 1
    assert {r.value for r in results} == {b"v1"}


async def test_fresh_values_are_answered_from_memory_then_checked_by_version() -> None:
    clock = Clock()
    provider = CountingProvider()
    cache = FetchCache(rate=0, clock=clock)
    key = CacheKey("store", "db")
    await cache.get(key, provider, max_age=60)
    clock.now += 30
    await cache.get(key, provider, max_age=60)
    assert (provider.reads, provider.checks) == (1, 0)
    clock.now += 31  # stale: a version check, same version, no read
    assert (await cache.get(key, provider, max_age=60)).value == b"v1"
    assert (provider.reads, provider.checks) == (1, 1)
    provider.value, provider.version = b"v2", "2"
    clock.now += 61  # stale, new version: read
    assert (await cache.get(key, provider, max_age=60)).value == b"v2"
    assert (provider.reads, provider.checks) == (2, 2)


async def test_pinned_versions_are_never_read_twice_and_force_reads() -> None:
    clock = Clock()
    provider = CountingProvider()
    cache = FetchCache(rate=0, clock=clock)
    pinned = CacheKey("store", "db", version="7")
    await cache.get(pinned, provider, max_age=1)
    clock.now += 1000
    await cache.get(pinned, provider, max_age=1)
    assert provider.reads == 1
    await cache.get(pinned, provider, max_age=1, force=True)
    assert provider.reads == 2


async def test_errors_are_not_cached() -> None:
    class Failing(CountingProvider):
        async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
            self.reads += 1
            raise RuntimeError("down")

    provider = Failing()
    cache = FetchCache(rate=0)
    for _ in range(2):
        with contextlib.suppress(RuntimeError):
            await cache.get(CacheKey("s", "k"), provider, max_age=60)
    assert provider.reads == 2
    assert len(cache) == 0


async def test_token_bucket_waits_for_tokens() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    bucket = TokenBucket(2.0, 2, clock=clock, sleep=sleep)
    for _ in range(4):
        await bucket.take()
    assert sum(slept) == 1.0  # two at once, then one every half second
