"""How commands print: Rich tables for people, ``-o json|yaml`` for programs, and errors.

Every failure ends the same way: one ``error: …`` line on stderr and a non-zero exit.
Commands raise ``fail(message)`` for what they expect; anything else that escapes a command
reaches ``report_unexpected`` (called by the entry point), which prints the exception as one
line instead of a traceback. ``GITSAIL_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

__all__ = [
    "Format",
    "OutputOption",
    "SyncProgress",
    "console",
    "emit",
    "err_console",
    "fail",
    "report_unexpected",
]

console = Console()
err_console = Console(stderr=True)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = typer.Option(Format.table, "--output", "-o", help="table, json or yaml")


def emit(data: Any, fmt: Format, *, columns: Sequence[str] = (), title: str | None = None) -> None:
    """Print ``data`` (a list of rows, or one mapping) in the requested format."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return
    rows = data if isinstance(data, list) else [data]
    cols = list(columns) or (list(rows[0].keys()) if rows else [])
    table = Table(title=title, header_style="bold")
    for col in cols:
        table.add_column(col.upper())
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in cols))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]no[/]"
    return "" if value is None else str(value)


_COLORS = {"Synced": "green", "Pruned": "yellow", "SyncFailed": "red", "PruneSkipped": "dim"}


class SyncProgress:
    """Live progress of a sync: the operation's phase and message, then one row per resource.

    On a terminal it is a Rich live table redrawn as results come; when output is piped
    (or ``plain``), each change is one line, so logs and CI show the same thing in order.
    Rows have the shape of ``operationState.syncResult.resources`` entries.
    """

    def __init__(self, title: str, *, plain: bool | None = None, out: Console | None = None):
        self.title = title
        self.out = out or console
        self.plain = (not self.out.is_terminal) if plain is None else plain
        self.phase = ""
        self.message = ""
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> SyncProgress:
        if not self.plain:
            self._live = Live(self.render(), console=self.out, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(kind, exc, tb)
            self._live = None

    def state(self, phase: str, message: str) -> None:
        """The operation's phase and message (printed when either changes)."""
        if (phase, message) == (self.phase, self.message):
            return
        self.phase, self.message = phase, message
        if self.plain:
            self.out.print(
                f"{phase}: {message}" if message else phase, highlight=False, markup=False
            )
        self._redraw()

    def resource(self, row: dict[str, Any]) -> None:
        """A resource result (printed when it is new or changed)."""
        key = tuple(
            str(row.get(k) or "")
            for k in ("syncPhase", "hookType", "group", "kind", "namespace", "name")
        )
        if self.rows.get(key) == row:
            return
        self.rows[key] = row
        if self.plain:
            self.out.print(
                f"  {_phase_of(row):<16} {_resource_of(row):<48} {row.get('status', '')}"
                + (f"  {row.get('message')}" if row.get("message") else ""),
                highlight=False,
                markup=False,
            )
        self._redraw()

    def _redraw(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def render(self) -> Table:
        elapsed = time.monotonic() - self.started
        caption = escape(f"{self.phase}: {self.message}" if self.message else self.phase)
        table = Table(
            title=f"{self.title} ({elapsed:.1f}s)", caption=caption or None, header_style="bold"
        )
        for col in ("phase", "kind", "namespace", "name", "status", "message"):
            table.add_column(col.upper())
        for row in self.rows.values():
            status = str(row.get("status") or "")
            color = _COLORS.get(status, "white")
            table.add_row(
                escape(_phase_of(row)),
                escape(str(row.get("kind") or "")),
                escape(str(row.get("namespace") or "")),
                escape(str(row.get("name") or "")),
                f"[{color}]{escape(status)}[/]",
                escape(str(row.get("message") or "")[:80]),
            )
        return table


def _phase_of(row: dict[str, Any]) -> str:
    hook = row.get("hookType")
    return str(row.get("syncPhase") or "Sync") + (f"/{hook}" if hook else "")


def _resource_of(row: dict[str, Any]) -> str:
    ns = f"{row['namespace']}/" if row.get("namespace") else ""
    return f"{row.get('kind', '')} {ns}{row.get('name', '')}"


def _print_error(message: str) -> None:
    # Messages carry tenant text (names, paths, tool output): never read as Rich markup,
    # never wrapped at the terminal width.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for people and return the Exit to raise."""
    _print_error(message)
    return typer.Exit(code)


def report_unexpected(exc: BaseException) -> int:
    """Print an exception no command handled as one ``error:`` line; the exit code to use.

    gitsail's own errors already say what failed and what to do, so their message is shown
    as it is; any other exception is a bug, shown with its type.
    """
    own = type(exc).__module__.startswith("gitsail.")
    message = str(exc).strip()
    if not own or not message:
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        message += " (unexpected; set GITSAIL_DEBUG=1 to see where)"
    if os.environ.get("GITSAIL_DEBUG", "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    _print_error(" ".join(message.split()) if not own else message)
    return 1
