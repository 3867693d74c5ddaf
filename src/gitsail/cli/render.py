"""`gitsail render`: print an app's manifests from a local checkout, without a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
import yaml

from gitsail.cli.output import Format, fail
from gitsail.kinds.argo_application import AppSpecError, check_application, render_options
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
    try:
        if application is not None:
            options, app_dir = _options_of(application, path)
        rendered = render_local(app_dir, options, kube_version=kube_version)
    except RenderError as exc:
        raise fail(str(exc)) from exc
    if output is Format.json:
        sys.stdout.write(json.dumps(list(rendered.manifests), indent=2) + "\n")
    else:
        sys.stdout.write(dump_yaml(list(rendered.manifests)))


def _options_of(application: Path, root: Path) -> tuple[RenderOptions, Path]:
    """The render options and app directory an Application manifest file asks for."""
    try:
        manifest = yaml.safe_load(application.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise fail(f"{application}: cannot read an Application manifest: {exc}") from exc
    if isinstance(manifest, dict) and manifest.get("metadata") is None:
        manifest["metadata"] = {}
    if isinstance(manifest, dict) and isinstance(manifest["metadata"], dict):
        manifest["metadata"].setdefault("name", "app")  # a local file may leave it out
    try:
        check_application(manifest)
    except AppSpecError as exc:
        raise fail(f"{application}: {exc}") from exc
    spec = manifest["spec"]
    source = spec.get("source")
    if not source:
        raise fail(f"{application}: not an Application manifest with spec.source")
    options = render_options(
        source,
        app_name=manifest["metadata"]["name"],
        namespace=(spec.get("destination") or {}).get("namespace") or "",
    )
    return options, root / (source.get("path") or ".")


__all__ = ["render"]
