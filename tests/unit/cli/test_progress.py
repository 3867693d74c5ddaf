"""Live sync progress: a table on a terminal, one line per change when piped."""

from __future__ import annotations

import io

from rich.console import Console

from gitsail.cli.output import SyncProgress


def piped() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_piped_progress_prints_one_line_per_change_and_nothing_twice() -> None:
    out, buffer = piped()
    row = {"kind": "ConfigMap", "namespace": "shop", "name": "a", "status": "Synced"}
    with SyncProgress("sync shop", out=out) as progress:
        progress.state("Running", "sync started")
        progress.state("Running", "sync started")
        progress.resource(row)
        progress.resource(dict(row))
        progress.resource({**row, "name": "[b]", "status": "SyncFailed", "message": "denied"})
        progress.state("Failed", "one or more objects failed to apply")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "Running: sync started"
    assert lines[1].split() == ["Sync", "ConfigMap", "shop/a", "Synced"]
    # Tenant text is printed as it is, never read as markup.
    assert lines[2].split() == ["Sync", "ConfigMap", "shop/[b]", "SyncFailed", "denied"]
    assert lines[3] == "Failed: one or more objects failed to apply"
    assert len(lines) == 4


def test_hook_rows_show_their_phase() -> None:
    out, buffer = piped()
    with SyncProgress("sync shop", out=out) as progress:
        progress.resource(
            {
                "kind": "Job",
                "name": "migrate",
                "status": "Synced",
                "syncPhase": "PreSync",
                "hookType": "PreSync",
            }
        )
    assert buffer.getvalue().split()[0] == "PreSync/PreSync"


def test_terminal_progress_draws_a_table_with_the_phase() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=True, width=200)
    with SyncProgress("sync shop", out=out) as progress:
        progress.state("Succeeded", "successfully synced (all tasks run)")
        progress.resource({"kind": "ConfigMap", "name": "a", "status": "Synced"})
    text = buffer.getvalue()
    assert "sync shop" in text
    assert "successfully synced" in text
    assert "ConfigMap" in text
