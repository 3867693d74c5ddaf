"""``DeferredStart``: an automated sync's start is written only when it could be seen."""

from __future__ import annotations

import asyncio

import pytest

from gitsail.app.engine import DeferredStart
from gitsail.kube import ServerError


class Writes:
    def __init__(self) -> None:
        self.count = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.count += 1


async def test_a_sync_that_ends_before_the_delay_writes_no_start() -> None:
    writes = Writes()
    deferred = DeferredStart(writes, delay=3600)
    deferred.start()
    await deferred.settle()
    assert writes.count == 0
    assert not deferred.written


async def test_a_sync_that_outlives_the_delay_writes_its_start_once() -> None:
    writes = Writes()
    deferred = DeferredStart(writes, delay=0)
    deferred.start()
    await _until(lambda: deferred.written)
    await deferred.ensure()  # progress after the timer: nothing more
    await deferred.settle()
    assert writes.count == 1


async def test_progress_writes_the_start_at_once_and_disarms_the_timer() -> None:
    writes = Writes()
    deferred = DeferredStart(writes, delay=3600)
    deferred.start()
    await deferred.ensure()
    await deferred.ensure()
    await deferred.settle()
    assert writes.count == 1


async def test_settle_waits_for_a_start_write_in_flight() -> None:
    """The end write never lands before a start write already sent (it would be undone)."""
    writes = Writes()
    writes.gate = asyncio.Event()
    deferred = DeferredStart(writes, delay=0)
    deferred.start()
    settled = asyncio.Event()

    async def settle() -> None:
        await asyncio.sleep(0)  # let the timer fire and start its write
        await deferred.settle()
        settled.set()

    task = asyncio.create_task(settle())
    await _until(lambda: not deferred._sleeping)
    assert not settled.is_set()
    writes.gate.set()
    await task
    assert writes.count == 1
    assert deferred.written


async def test_a_failed_timer_write_is_logged_and_made_again_when_needed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writes = Writes()
    writes.fail = ServerError(500, "InternalError", "etcd is slow")
    deferred = DeferredStart(writes, delay=0)
    deferred.start()
    await _until(lambda: "start of a sync was not recorded" in caplog.text)
    assert not deferred.written
    writes.fail = None
    await deferred.ensure()
    assert writes.count == 1


async def _until(condition: object, deadline: float = 5.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.005)
