"""The task dump ``kill -USR1`` logs (each waiting task, where it waits, alike ones once), and
a stop that cancels tasks without hanging on one that will not end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gitsail.controller.stacks import cancel_and_wait, task_stacks


async def _stuck_on(event: asyncio.Event) -> None:
    await event.wait()


async def _elsewhere(event: asyncio.Event) -> None:
    await _stuck_on(event)


async def test_every_waiting_task_is_named_with_the_frame_it_waits_in() -> None:
    never = asyncio.Event()
    alike = [asyncio.create_task(_stuck_on(never), name=f"worker-{n}") for n in range(7)]
    other = asyncio.create_task(_elsewhere(never), name="lonely")
    await asyncio.sleep(0)  # every task reaches its await
    try:
        dump = task_stacks()
        count = int(dump.split(" ", 1)[0])
        assert dump.startswith(f"{count} asyncio tasks")
        assert count >= 9  # the seven, the lonely one, this test (and the runner's own)
        # The seven identical stacks are one entry, counted, five names shown.
        assert "--- 7 × worker-0, worker-1, worker-2, worker-3, worker-4 and 2 more" in dump
        assert "--- 1 × lonely" in dump
        lonely = dump.split("--- 1 × lonely", 1)[1]
        chain = lonely.split("---", 1)[0].splitlines()
        # The whole await chain, outermost first: down to the Event the task waits on.
        assert [line.rsplit(" in ", 1)[-1] for line in chain if " in " in line] == [
            "_elsewhere",
            "_stuck_on",
            "Event.wait",
        ]
        assert chain[-1].startswith("  awaiting Future")  # (FutureIter: the C future)
    finally:
        for task in (*alike, other):
            task.cancel()
        await asyncio.gather(*alike, other, return_exceptions=True)


async def _refuses_cancel(first: asyncio.Event, release: asyncio.Event) -> None:
    """Swallows its cancellation and waits on: a task a stop must not hang on."""
    try:
        await first.wait()
    except asyncio.CancelledError:
        await release.wait()


async def _fails() -> None:
    raise RuntimeError("boom")


async def test_a_stop_waits_for_cancelled_tasks_and_leaves_one_that_will_not_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never, release = asyncio.Event(), asyncio.Event()
    polite = asyncio.create_task(_stuck_on(never), name="polite")
    stubborn = asyncio.create_task(_refuses_cancel(never, release), name="stubborn")
    failed = asyncio.create_task(_fails(), name="failed")
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.ERROR, logger="gitsail.controller.stacks"):
            left = await cancel_and_wait([polite, stubborn, failed], 0.05, "test stop")
        assert left == [stubborn]
        assert polite.cancelled()
        messages = [r.getMessage() for r in caplog.records]
        assert any(
            "stubborn did not end within 0.05s" in m and "_refuses_cancel" in m for m in messages
        )
        assert any("failed had failed" in m for m in messages)
        assert await cancel_and_wait([], 0.05, "nothing") == []
    finally:
        release.set()
        await asyncio.gather(stubborn, return_exceptions=True)
