"""`gitsail version`: gitsail's version and, with ``--tools``, the tool binaries it runs."""

from __future__ import annotations

import sys

from gitsail import toolchain
from gitsail.cli.output import Format, console, emit, fail

__all__ = ["print_version"]


def print_version(version: str, *, tools: bool, output: Format) -> None:
    """Print the version; with ``tools``, each tool's path, version and pin (exit 1 if one
    is missing, so a script can check an installation with it)."""
    if not tools:
        if output is Format.table:
            print(f"gitsail {version}")
        else:
            emit({"gitsail": version}, output)
        return
    rows = toolchain.runtime_tools()
    if output is Format.table:
        print(f"gitsail {version}")
        for row in rows:
            line = f"{row['tool']} {row['version'] or '-'} (pinned {row['pinned']})"
            if row["path"]:
                line += f" {row['path']}"
            if row["status"] != "ok":
                line += f": {row['status']}"
            console.print(line, highlight=False, soft_wrap=True)
            if row.get("error"):
                console.print(f"  {row['error']}", highlight=False, soft_wrap=True)
    else:
        emit({"gitsail": version, "tools": rows}, output)
    sys.stdout.flush()
    missing = [r["tool"] for r in rows if r["status"] in ("missing", "broken")]
    if missing:
        raise fail(f"missing: {', '.join(missing)}")
