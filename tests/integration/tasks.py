"""Where asyncio tasks wait, on one line.

CI keeps the start and the end of a failed run's output; a failure's summary line is at the
end. A test that hangs or times out puts where its tasks wait into that line (through these
helpers), so the shortened output still says what was awaited.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from gitsail.controller.stacks import await_chain

# Innermost frames kept per task, and the length of the whole line.
FRAMES = 4
LIMIT = 1800
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
# A task waiting at one of these is idle, not stuck: listed last.
_IDLE = ("Queue.get", "sleep", "Event.wait", "Condition.wait")


def compact_chain(lines: Iterable[str]) -> str:
    """``await_chain``-style lines (``File "...", line N, in f`` / ``awaiting X``) as
    ``f:N > g:M > X``, innermost ``FRAMES`` frames."""
    parts: list[str] = []
    for line in lines:
        match = _FRAME.search(line)
        if match:
            parts.append(f"{match['func']}:{match['line']}")
        elif line.strip().startswith("awaiting "):
            parts.append(line.strip().removeprefix("awaiting "))
    return " > ".join(parts[-FRAMES:]) or "(not started)"


def one_line(groups: dict[str, list[str]], limit: int = LIMIT) -> str:
    """Chains with the names of the tasks waiting in each, busiest first: chains through
    test code, then the rest, idle ones last; cut at ``limit`` characters."""

    def rank(item: tuple[str, list[str]]) -> tuple[int, int]:
        chain, names = item
        if "test_" in chain or any(n.startswith("Task-") for n in names):
            first = 0
        elif any(idle in chain for idle in _IDLE):
            first = 2
        else:
            first = 1
        return first, -len(names)

    shown = []
    for chain, names in sorted(groups.items(), key=rank):
        who = ",".join(names[:3]) + (f"+{len(names) - 3}" if len(names) > 3 else "")
        shown.append(f"[{who}] {chain}")
    text = " ; ".join(shown)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tasks_line(tasks: Iterable[asyncio.Task[object]], limit: int = LIMIT) -> str:
    """Pending ``tasks`` on one line (``one_line``)."""
    groups: dict[str, list[str]] = {}
    for task in tasks:
        if not task.done():
            groups.setdefault(compact_chain(await_chain(task)), []).append(task.get_name())
    return one_line(groups, limit) if groups else "(none)"


def dump_line(text: str, limit: int = LIMIT) -> str:
    """The last task dump (``gitsail.controller.stacks.task_stacks``, as a controller logs
    it on SIGUSR1) found in ``text``, on one line; "" when there is none."""
    start = text.rfind(" asyncio tasks\n")
    if start < 0:
        return ""
    groups: dict[str, list[str]] = {}
    names: list[str] = []
    lines: list[str] = []

    def close() -> None:
        if names:
            groups.setdefault(compact_chain(lines), []).extend(names)

    for line in text[start:].splitlines()[1:]:
        if line.startswith("--- "):
            close()
            names = [n.strip() for n in line.split("×", 1)[-1].split(",")]
            lines = []
        elif line.startswith("  "):
            lines.append(line)
        else:
            break  # the dump ended: the log goes on
    close()
    return one_line(groups, limit)
