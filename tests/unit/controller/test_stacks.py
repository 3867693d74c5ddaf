"""The task dump ``kill -USR1`` logs: each waiting task, where it waits, alike ones once."""

from __future__ import annotations

import asyncio

from gitsail.controller.stacks import task_stacks


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
