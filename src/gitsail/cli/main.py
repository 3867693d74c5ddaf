"""The `gitsail` entry point: one Typer app, a sub-app per area.

The app is built on first use (``app``, ``main``). ``gitsail controller`` — the long-running
process — gets an app of that one command, so it never imports the other commands' modules
(the CLI's Flux, Helm, ApplicationSet, seal and dev code, ``cryptography`` among them:
megabytes of resident memory a controller never uses).
"""

from __future__ import annotations

import sys

import typer

from gitsail import __version__
from gitsail.cli.output import Format, report_unexpected

__all__ = ["build_app", "main"]  # and ``app``, built on first use


def _root() -> typer.Typer:
    return typer.Typer(
        name="gitsail",
        help="GitOps continuous delivery for Kubernetes.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )


def version(
    tools: bool = typer.Option(
        False, "--tools", help="also the helm, kustomize and jsonnet binaries gitsail uses"
    ),
    output: Format = typer.Option(Format.table, "--output", "-o", help="table, json or yaml"),
) -> None:
    """Print gitsail's version (and, with --tools, which tool binaries it runs)."""
    from gitsail.cli.version import print_version

    print_version(__version__, tools=tools, output=output)


def build_app() -> typer.Typer:
    """Every command."""
    from gitsail.cli import app as app_cmd
    from gitsail.cli import appset as appset_cmd
    from gitsail.cli import ci as ci_cmd
    from gitsail.cli import cluster as cluster_cmd
    from gitsail.cli import demo, dev, flux
    from gitsail.cli import image as image_cmd
    from gitsail.cli import proj as proj_cmd
    from gitsail.cli.controller import controller
    from gitsail.cli.doctor import doctor_cmd
    from gitsail.cli.install import install
    from gitsail.cli.preview import preview_cmd
    from gitsail.cli.promote import promote
    from gitsail.cli.render import render
    from gitsail.cli.seal import app as seal_app

    app = _root()
    app.add_typer(dev.app, name="dev")
    app.add_typer(demo.app, name="demo")
    app.add_typer(app_cmd.app, name="app")
    app.add_typer(appset_cmd.app, name="appset")
    app.add_typer(proj_cmd.app, name="proj")  # AppProjects
    from gitsail.cli.externalsecrets import register as register_external_secrets

    register_external_secrets(flux.get_app, flux.reconcile_app)
    from gitsail.cli.flux_image import register as register_image_automation

    register_image_automation(flux.get_app, flux.reconcile_app, flux.suspend_app, flux.resume_app)
    app.add_typer(cluster_cmd.app, name="cluster")  # Argo CD cluster Secrets
    app.add_typer(flux.get_app, name="get")
    app.add_typer(flux.reconcile_app, name="reconcile")
    app.add_typer(flux.suspend_app, name="suspend")
    app.add_typer(flux.resume_app, name="resume")
    app.add_typer(flux.diff_app, name="diff")
    app.add_typer(flux.tree_app, name="tree")
    app.add_typer(seal_app, name="seal")
    app.add_typer(image_cmd.app, name="image")
    app.add_typer(ci_cmd.app, name="ci")  # `gitsail ci init github|gitlab`
    app.command()(install)
    app.command()(render)
    app.command()(promote)
    app.command("preview")(preview_cmd)
    app.command("doctor")(doctor_cmd)
    app.command()(controller)
    app.command()(version)
    from gitsail.server.command import server  # the API and web UI (docs/ui.md)

    app.command()(server)
    return app


def _controller_app() -> typer.Typer:
    """``gitsail controller`` alone (the same command, options and help)."""
    from gitsail.cli.controller import controller

    app = _root()

    @app.callback()
    def _gitsail() -> None:
        """GitOps continuous delivery for Kubernetes."""  # a group, as in the full app

    app.command()(controller)
    return app


_built: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    global _built
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _built is None:
        _built = build_app()
    return _built


def main() -> None:
    """Run the CLI; an error no command handled is one line and exit 1, not a traceback."""
    try:
        if sys.argv[1:] == ["--version"]:
            print(f"gitsail {__version__}")
            return
        if sys.argv[1:2] == ["controller"]:
            _controller_app()()
        else:
            __getattr__("app")()
    except Exception as exc:  # the last resort: every command fails the same way
        raise SystemExit(report_unexpected(exc)) from None
