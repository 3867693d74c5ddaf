"""`gitsail app sync` options that are refused before anything is asked of a cluster."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gitsail.cli.app import app


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--allow-empty"], "--allow-empty applies to --in-process syncs"),
        (["--async", "--in-process"], "--async asks the controller"),
        (["--retry-limit", "2", "--retry-backoff-duration", "soon"], "invalid duration 'soon'"),
        (["--resource", "Deployment/web"], "use GROUP:KIND:NAME"),
    ],
)
def test_sync_options_that_cannot_work_are_refused_up_front(args: list[str], says: str) -> None:
    result = CliRunner().invoke(
        app, ["sync", "shop", *args, "--kubeconfig", "/nonexistent"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1
    assert says in " ".join(result.output.split())


def test_help_says_how_to_sync_without_a_controller() -> None:
    result = CliRunner().invoke(app, ["sync", "--help"], env={"COLUMNS": "300"})
    assert "without a controller: run the engine in this process" in " ".join(result.output.split())
