"""The WatchCache informer against the real apiserver.

The relist-on-410 path is covered by tests/unit/kube/test_cache.py through the cache's
WatchSource seam: a real apiserver answers 410 only once its watch cache has evicted a
version, which no test can provoke quickly and reliably.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gitsail.kube import Kube, WatchCache, WatchEvent
from gitsail.model import Obj
from tests.integration.kube.conftest import eventually

pytestmark = pytest.mark.integration


def configmap(namespace: str, name: str, value: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "cached"}},
        "data": {"v": value},
    }


@pytest.fixture
async def cache(api: Kube, namespace: str) -> AsyncIterator[WatchCache]:
    await api.apply(configmap(namespace, "before", "0"))
    cache = WatchCache(api, "v1", "ConfigMap", namespace, label_selector="app=cached")
    await cache.start()
    yield cache
    await cache.stop()


async def next_event(queue: asyncio.Queue[WatchEvent]) -> tuple[str, str, str]:
    event = await asyncio.wait_for(queue.get(), 30)
    return event.type, event.object["metadata"]["name"], event.object["data"]["v"]


async def test_start_returns_synced(cache: WatchCache, namespace: str) -> None:
    before = cache.get(namespace, "before")
    assert before is not None
    assert before["kind"] == "ConfigMap"
    assert [o["metadata"]["name"] for o in cache.items()] == ["before"]  # selector applied
    assert int(cache.resource_version) > 0
    assert cache.running


async def test_subscribers_see_changes_and_the_store_follows(
    api: Kube, cache: WatchCache, namespace: str
) -> None:
    queue = cache.subscribe()
    await api.apply(configmap(namespace, "new", "1"))
    assert await next_event(queue) == ("ADDED", "new", "1")
    await api.apply(configmap(namespace, "new", "2"))
    assert await next_event(queue) == ("MODIFIED", "new", "2")
    await api.delete("v1", "ConfigMap", "before", namespace, propagation="Background")
    assert await next_event(queue) == ("DELETED", "before", "0")

    assert cache.get(namespace, "before") is None
    live = cache.get(namespace, "new")
    assert live is not None
    assert live["data"] == {"v": "2"}
    cache.unsubscribe(queue)


async def test_cache_reconnects_from_its_version_after_the_stream_ends(
    api: Kube, namespace: str
) -> None:
    cache = WatchCache(api, "v1", "ConfigMap", namespace, watch_timeout=1)
    await cache.start()
    try:
        listed_at = cache.resource_version
        # Streams last 1-2 s; changes across several reconnects all arrive, with no relist.
        for i in range(3):
            await api.apply(configmap(namespace, f"c{i}", str(i)))

            async def cached(name: str = f"c{i}") -> Obj | None:
                return cache.get(namespace, name)

            await eventually(cached, what=f"c{i} in the cache")
            opened = cache.watches

            async def reconnected(opened: int = opened) -> bool:
                return cache.watches > opened

            await eventually(reconnected, what="the next watch stream")
        assert cache.relists == 1
        assert int(cache.resource_version) > int(listed_at)
        assert cache.last_error is None
    finally:
        await cache.stop()
