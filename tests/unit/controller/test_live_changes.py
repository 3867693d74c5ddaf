"""The change notification of the controller's live caches: what a waiting sync listens to."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gitsail.controller.manager import _Changes, _LiveCaches
from gitsail.kube import Kube, WatchEvent


async def test_a_change_since_the_token_ends_the_wait_at_once() -> None:
    changes = _Changes()
    token = changes.seen()
    changes.notify()  # lands while the waiter was still reading: not lost
    await asyncio.wait_for(changes.after(token), timeout=5)
    assert changes.seen() == token + 1


async def test_a_waiter_sleeps_until_the_next_change() -> None:
    changes = _Changes()
    waiter = asyncio.create_task(changes.after(changes.seen()))
    await asyncio.sleep(0)
    assert not waiter.done()
    changes.notify()
    await asyncio.wait_for(waiter, timeout=5)


async def test_every_watch_event_is_a_change_even_one_no_reconcile_needs() -> None:
    told: list[str] = []
    live = _LiveCaches(cast(Kube, None), lambda _event, what: told.append(what))
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    pump = asyncio.create_task(live._pump(queue))
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate-1", "namespace": "shop", "resourceVersion": "1"},
    }
    try:
        waiter = asyncio.create_task(live.changes.after(live.changes.seen()))
        await queue.put(WatchEvent("ADDED", job))
        await asyncio.wait_for(waiter, timeout=5)
        # Only its status moves (a Job completing): no reconcile, but a waiting sync wakes.
        waiter = asyncio.create_task(live.changes.after(live.changes.seen()))
        await queue.put(WatchEvent("MODIFIED", {**job, "status": {"succeeded": 1}}))
        await asyncio.wait_for(waiter, timeout=5)
        assert live.changes.seen() == 2
        assert told == ["changed"]
    finally:
        pump.cancel()
