"""How commands print: Rich tables for people, ``-o json|yaml`` for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

__all__ = ["Format", "OutputOption", "console", "emit", "err_console", "fail"]

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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for people and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
