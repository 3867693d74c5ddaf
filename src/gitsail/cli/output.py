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
import traceback
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "Format",
    "OutputOption",
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
