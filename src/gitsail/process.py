"""Stopping a child process group without hanging on its pipes.

asyncio wakes ``Process.wait()`` only after the child exited *and* every pipe it was given
reached EOF. A reader that was cancelled (a timeout) or stopped early (an output limit)
leaves data in a pipe; once the stream's buffer is full asyncio stops reading, never sees
EOF, and ``wait()`` blocks for ever. ``kill_group`` therefore kills, drains what is left, and
waits, all within a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

__all__ = ["kill_group"]

_REAP_SECONDS = 10.0


async def kill_group(
    proc: asyncio.subprocess.Process,
    *,
    group: bool = True,
    drain: Sequence[asyncio.StreamReader | None] | None = None,
) -> None:
    """SIGKILL ``proc`` (its whole process group when ``group``), drain its pipes, reap it.

    ``drain`` names the streams to read to EOF (default: stdout and stderr); leave out one
    that another coroutine is still reading, as asyncio allows one reader at a time.
    Gives up after a few seconds when a pipe stays open (a grandchild that left the group
    holds it): the child is dead by then, and asyncio reaps it when the pipe closes.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()

    async def read_to_eof(stream: asyncio.StreamReader | None) -> None:
        if stream is not None:
            while await stream.read(1 << 16):
                pass

    with contextlib.suppress(TimeoutError, ProcessLookupError):
        async with asyncio.timeout(_REAP_SECONDS):
            streams = (proc.stdout, proc.stderr) if drain is None else drain
            await asyncio.gather(*(read_to_eof(stream) for stream in streams))
            await proc.wait()
