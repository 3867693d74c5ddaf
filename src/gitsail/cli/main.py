"""The `gitsail` entry point: one Typer app, a sub-app per area."""

from __future__ import annotations

import typer

from gitsail import __version__
from gitsail.cli import app as app_cmd
from gitsail.cli import appset as appset_cmd
from gitsail.cli import demo, dev, flux
from gitsail.cli import proj as proj_cmd
from gitsail.cli.controller import controller
from gitsail.cli.install import install
from gitsail.cli.output import report_unexpected
from gitsail.cli.render import render
from gitsail.cli.seal import app as seal_app

app = typer.Typer(
    name="gitsail",
    help="GitOps continuous delivery for Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(demo.app, name="demo")
app.add_typer(app_cmd.app, name="app")
app.add_typer(appset_cmd.app, name="appset")
app.add_typer(proj_cmd.app, name="proj")  # AppProjects
app.add_typer(flux.get_app, name="get")
app.add_typer(flux.reconcile_app, name="reconcile")
app.add_typer(flux.suspend_app, name="suspend")
app.add_typer(flux.resume_app, name="resume")
app.add_typer(flux.diff_app, name="diff")
app.add_typer(flux.tree_app, name="tree")
app.add_typer(seal_app, name="seal")
app.command()(install)
app.command()(render)
app.command()(controller)


@app.command()
def version() -> None:
    """Print gitsail's version."""
    print(f"gitsail {__version__}")


def main() -> None:
    """Run the CLI; an error no command handled is one line and exit 1, not a traceback."""
    try:
        app()
    except Exception as exc:  # the last resort: every command fails the same way
        raise SystemExit(report_unexpected(exc)) from None
