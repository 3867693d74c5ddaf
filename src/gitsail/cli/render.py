"""`gitsail render`: print an app's manifests from a local checkout, without a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
import yaml

from gitsail.cli.output import Format, fail
from gitsail.render import RenderError, RenderOptions, dump_yaml, render_local


def render(
    path: Path = typer.Argument(..., help="app directory, or repo root with --app"),
    application: Path | None = typer.Option(
        None,
        "--app",
        help="an Application manifest: its spec.source options are used and "
        "its source.path is read relative to PATH",
    ),
    kube_version: str = typer.Option("", "--kube-version", help="for Helm .Capabilities"),
    output: Format = typer.Option(Format.yaml, "--output", "-o", help="yaml or json"),
) -> None:
    """Render manifests the way a sync would (directory, Kustomize or Helm)."""
    options = None
    app_dir = path
    if application is not None:
        try:
            manifest = yaml.safe_load(application.read_text())
            source = manifest["spec"]["source"]
            meta = manifest.get("metadata") or {}
            dest = (manifest["spec"].get("destination") or {}).get("namespace", "")
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise fail(
                f"{application}: not an Application manifest with spec.source ({exc})"
            ) from exc
        options = RenderOptions.from_source(
            source, app_name=str(meta.get("name", "app")), namespace=dest
        )
        app_dir = path / str(source.get("path") or ".")
    try:
        rendered = render_local(app_dir, options, kube_version=kube_version)
    except RenderError as exc:
        raise fail(str(exc)) from exc
    if output is Format.json:
        sys.stdout.write(json.dumps(list(rendered.manifests), indent=2) + "\n")
    else:
        sys.stdout.write(dump_yaml(list(rendered.manifests)))


__all__ = ["render"]
