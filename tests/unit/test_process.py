"""kill_group: a child whose output nobody reads any more is killed and reaped, not waited on
for ever."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gitsail.process import kill_group

# Writes far more than a pipe plus asyncio's stream buffer hold, then sleeps: the pipe stays
# full until someone reads it.
_FLOOD = "import sys, time\nsys.stdout.write('x' * (1 << 22)); sys.stdout.flush(); time.sleep(600)"


async def _flooding_child() -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FLOOD,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    await proc.stdout.read(1 << 16)  # it is running and writing
    # Let asyncio fill its stream buffer and pause reading the pipe (no event tells when).
    async with asyncio.timeout(30):
        while len(proc.stdout._buffer) < (1 << 17):  # type: ignore[attr-defined]  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return proc


async def test_a_child_with_unread_output_is_reaped() -> None:
    proc = await _flooding_child()
    async with asyncio.timeout(30):
        await kill_group(proc)
    assert proc.returncode is not None
    assert proc.returncode < 0


async def test_without_draining_the_wait_hangs() -> None:
    """The failure kill_group exists for: kill, then wait() alone, never returns."""
    proc = await _flooding_child()
    proc.kill()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3):
            await proc.wait()
    await kill_group(proc)
    assert proc.returncode is not None
