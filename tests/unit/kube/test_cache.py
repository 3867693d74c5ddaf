"""The informer loop, driven by a scripted fake of its WatchSource seam."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gitsail.kube.cache import WatchCache
from gitsail.kube.errors import Forbidden, Gone, InvalidName, ServerError
from gitsail.kube.retry import Backoff
from gitsail.kube.watch import WatchEvent
from gitsail.model import Obj

Stream = list[WatchEvent | Exception]


def cm(name: str, rv: str, ns: str = "shop") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
    }


def bookmark(rv: str) -> WatchEvent:
    return WatchEvent("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": rv}})


@dataclass
class FakeSource:
    """Answers lists and watches from scripts; an exhausted watch script blocks forever."""

    lists: deque[tuple[list[Obj], str] | Exception] = field(default_factory=deque)
    streams: deque[Stream] = field(default_factory=deque)
    watched_from: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    listed: int = 0

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        self.listed += 1
        answer = self.lists.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from.put_nowait(resource_version)
        if not self.streams:
            await asyncio.Event().wait()
        for item in self.streams.popleft():
            if isinstance(item, Exception):
                raise item
            yield item


class CountingBackoff(Backoff):
    """No waiting; remembers which attempts backed off."""

    def delay(self, attempt: int) -> float:
        BACKOFFS.append(attempt)
        return 0.0


BACKOFFS: list[int] = []


@pytest.fixture(autouse=True)
def _reset_backoffs() -> None:
    BACKOFFS.clear()


async def next_watch(source: FakeSource) -> str | None:
    return await asyncio.wait_for(source.watched_from.get(), 2)


async def events(queue: asyncio.Queue[WatchEvent], count: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for _ in range(count):
        e = await asyncio.wait_for(queue.get(), 2)
        out.append((e.type, e.object["metadata"]["name"], e.resource_version))
    return out


def make_cache(source: FakeSource) -> WatchCache:
    return WatchCache(source, "v1", "ConfigMap", "shop", backoff=CountingBackoff())


async def test_start_lists_then_watches_from_the_lists_resource_version() -> None:
    source = FakeSource(lists=deque([([cm("a", "3"), cm("b", "4")], "10")]))
    cache = make_cache(source)
    await cache.start()
    try:
        assert cache.resource_version == "10"
        assert cache.get("shop", "a") == cm("a", "3")
        assert cache.get("shop", "zzz") is None
        assert sorted(o["metadata"]["name"] for o in cache.items()) == ["a", "b"]
        assert await next_watch(source) == "10"
    finally:
        await cache.stop()
    assert not cache.running


async def test_events_update_the_store_and_reach_subscribers_without_bookmarks() -> None:
    source = FakeSource(
        lists=deque([([cm("a", "3")], "10")]),
        streams=deque(
            [
                [
                    WatchEvent("ADDED", cm("b", "11")),
                    WatchEvent("MODIFIED", cm("a", "12")),
                    bookmark("13"),
                    WatchEvent("DELETED", cm("b", "14")),
                    bookmark("20"),
                ]
            ]
        ),
    )
    cache = make_cache(source)
    queue = cache.subscribe()
    await cache.start()
    try:
        assert await events(queue, 1) == [("ADDED", "a", "3")]  # from the initial list
        assert await events(queue, 3) == [
            ("ADDED", "b", "11"),
            ("MODIFIED", "a", "12"),
            ("DELETED", "b", "14"),
        ]
        # The stream ended: reconnect from the last bookmark, not from the list.
        assert await next_watch(source) == "10"
        assert await next_watch(source) == "20"
        assert cache.resource_version == "20"
        assert [o["metadata"]["name"] for o in cache.items()] == ["a"]
        assert source.listed == 1
        assert queue.empty()
    finally:
        await cache.stop()


async def test_gone_relists_and_delivers_what_changed_meanwhile() -> None:
    source = FakeSource(
        lists=deque(
            [
                ([cm("a", "3"), cm("b", "4")], "10"),
                ([cm("a", "30"), cm("c", "31")], "40"),
            ]
        ),
        streams=deque([[Gone(410, "Expired", "too old resource version: 10 (35)")]]),
    )
    cache = make_cache(source)
    await cache.start()
    queue = cache.subscribe()
    try:
        assert await next_watch(source) == "10"
        assert sorted(await events(queue, 3)) == [
            ("ADDED", "c", "31"),
            ("DELETED", "b", "4"),  # synthetic: vanished while nobody watched
            ("MODIFIED", "a", "30"),
        ]
        # Never again from the refused version: from the new list.
        assert await next_watch(source) == "40"
        assert cache.resource_version == "40"
        assert cache.relists == 2
        assert isinstance(cache.last_error, Gone)
        assert BACKOFFS == []  # one 410 is routine
    finally:
        await cache.stop()


async def test_repeated_gone_without_progress_backs_off() -> None:
    gone = Gone(410, "Expired", "too old")
    source = FakeSource(
        lists=deque([([], "10"), ([], "11"), ([], "12"), ([], "13")]),
        streams=deque([[gone], [gone], [gone]]),
    )
    cache = make_cache(source)
    await cache.start()
    try:
        assert [await next_watch(source) for _ in range(4)] == ["10", "11", "12", "13"]
        assert BACKOFFS == [1, 2]
    finally:
        await cache.stop()


async def test_other_errors_back_off_then_relist() -> None:
    source = FakeSource(
        lists=deque(
            [
                ([cm("a", "3")], "10"),
                ServerError(0, "ConnectionError", "refused"),
                ([cm("a", "3")], "50"),
            ]
        ),
        streams=deque([[WatchEvent("MODIFIED", cm("a", "11")), ServerError(503, "x", "down")]]),
    )
    cache = make_cache(source)
    await cache.start()
    try:
        assert await next_watch(source) == "10"
        assert await next_watch(source) == "50"
        assert source.listed == 3
        assert BACKOFFS == [0, 1]  # watch error, then the failed list
    finally:
        await cache.stop()


async def test_a_stream_that_ends_at_once_with_nothing_backs_off() -> None:
    source = FakeSource(lists=deque([([], "10")]), streams=deque([[], []]))
    cache = make_cache(source)
    await cache.start()
    try:
        assert [await next_watch(source) for _ in range(3)] == ["10", "10", "10"]
        assert BACKOFFS == [0, 1]
        assert source.listed == 1
    finally:
        await cache.stop()


async def test_start_raises_when_the_first_list_fails() -> None:
    source = FakeSource(lists=deque([Forbidden(403, "Forbidden", "no")]))
    cache = make_cache(source)
    with pytest.raises(Forbidden):
        await cache.start()
    assert not cache.running


async def test_unsubscribed_queues_get_nothing_more() -> None:
    source = FakeSource(
        lists=deque([([], "10")]), streams=deque([[WatchEvent("ADDED", cm("a", "11"))]])
    )
    cache = make_cache(source)
    queue = cache.subscribe()
    cache.unsubscribe(queue)
    await cache.start()
    try:
        await next_watch(source)
        await next_watch(source)
        assert cache.get("shop", "a") is not None
        assert queue.empty()
    finally:
        await cache.stop()


def test_a_cache_refuses_a_namespace_that_is_not_a_namespace_name() -> None:
    with pytest.raises(InvalidName, match="namespace"):
        WatchCache(FakeSource(), "v1", "ConfigMap", namespace="..")


async def test_cached_objects_share_their_short_string_values() -> None:
    def decoded(name: str, rv: str) -> Obj:  # as the apiserver's answer: fresh strings
        obj = cm(name, rv)
        obj["data"] = {"mode": "".join(["stri", "ct"]), "cert": "".join(["x"] * 100)}
        return obj

    source = FakeSource(
        lists=deque([([decoded("a", "3")], "10")]),
        streams=deque([[WatchEvent("ADDED", decoded("b", "11"))]]),
    )
    cache = make_cache(source)
    queue = cache.subscribe()
    await cache.start()
    try:
        await events(queue, 2)
        a, b = (cache.get("shop", n) for n in ("a", "b"))
        assert a is not None
        assert b is not None
        assert a["data"] == b["data"]
        assert a["data"]["mode"] is b["data"]["mode"]  # one copy, from the list and a watch
        assert a["data"]["cert"] is not b["data"]["cert"]  # long values are left alone
    finally:
        await cache.stop()
