"""Where every asyncio task of the process is waiting: ``kill -USR1 <controller pid>`` logs it.

A controller that stops making progress without an error (a reconcile awaiting something
that never comes) is diagnosed by what each task awaits, as Go's SIGQUIT dump of
goroutines does for Argo CD and Flux. ``gitsail controller`` logs ``task_stacks()`` on
SIGUSR1; the integration tests print it when a wait on the controller times out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["await_chain", "cancel_and_wait", "task_stacks"]

log = logging.getLogger(__name__)

MAX_TASKS = 500  # a dump stays readable (and bounded) with thousands of tasks
FRAMES = 12  # the innermost frames of each task: where it waits


def await_chain(task: asyncio.Task[object]) -> list[str]:
    """The coroutines ``task`` is suspended in, outermost first, down the ``await`` chain
    (``Task.get_stack`` shows only the task's own coroutine); the innermost ``FRAMES``."""
    lines: list[str] = []
    obj: object = task.get_coro()
    for _ in range(256):  # a chain is finite; a bound all the same
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        frame = frame or getattr(obj, "ag_frame", None)
        if frame is None:
            if obj is not None:
                lines.append(f"  awaiting {type(obj).__name__}")  # a future, or a C awaitable
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_qualname}')
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )
    return lines[-FRAMES:]


def task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every pending task of ``loop`` (the running one by default) with the chain of
    coroutines it is suspended in, innermost last; tasks with identical chains are counted
    once."""
    tasks = asyncio.all_tasks(loop)
    seen: dict[str, list[str]] = {}
    for task in sorted(tasks, key=lambda t: t.get_name()):
        seen.setdefault("\n".join(await_chain(task)), []).append(task.get_name())
    parts = [f"{len(tasks)} asyncio tasks"]
    for n, (stack, names) in enumerate(sorted(seen.items(), key=lambda kv: -len(kv[1]))):
        if n == MAX_TASKS:
            parts.append(f"... and {len(seen) - MAX_TASKS} more stacks")
            break
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"--- {len(names)} × {shown}\n{stack or '  (no frames: not started)'}")
    return "\n".join(parts)


async def cancel_and_wait(
    tasks: Sequence[asyncio.Task[Any]], grace: float, what: str
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them to end, at most ``grace`` seconds. A task still
    running then (it caught the cancellation, or awaits something that ignores it) is
    logged with where it waits and left behind, so a stop never hangs on one; the ones
    left are returned. A task that ended with an error is logged too (a stop goes on)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s had failed", what, task.get_name(), exc_info=task.exception())
    left = sorted(pending, key=lambda t: t.get_name())
    for task in left:
        log.error(
            "%s: %s did not end within %gs of being cancelled; left running, waiting in:\n%s",
            what,
            task.get_name(),
            grace,
            "\n".join(await_chain(task)),
        )
    return left
