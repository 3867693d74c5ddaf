"""Where every asyncio task of the process is waiting: ``kill -USR1 <controller pid>`` logs it.

A controller that stops making progress without an error (a reconcile awaiting something
that never comes) is diagnosed by what each task awaits, as Go's SIGQUIT dump of
goroutines does for Argo CD and Flux. ``gitsail controller`` logs ``task_stacks()`` on
SIGUSR1; the integration tests print it when a wait on the controller times out.
"""

from __future__ import annotations

import asyncio
import io

__all__ = ["task_stacks"]

MAX_TASKS = 500  # a dump stays readable (and bounded) with thousands of tasks
FRAMES = 12  # the innermost frames of each task: where it waits


def task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every pending task of ``loop`` (the running one by default) with the frames it is
    suspended in, innermost last; tasks with identical stacks are counted once."""
    tasks = asyncio.all_tasks(loop)
    seen: dict[str, list[str]] = {}
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out = io.StringIO()
        task.print_stack(limit=FRAMES, file=out)
        lines = out.getvalue().splitlines()[1:]  # the "Stack for <Task ...>" header
        seen.setdefault("\n".join(lines), []).append(task.get_name())
    parts = [f"{len(tasks)} asyncio tasks"]
    for n, (stack, names) in enumerate(sorted(seen.items(), key=lambda kv: -len(kv[1]))):
        if n == MAX_TASKS:
            parts.append(f"... and {len(seen) - MAX_TASKS} more stacks")
            break
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"--- {len(names)} × {shown}\n{stack or '  (no frames: not started)'}")
    return "\n".join(parts)
