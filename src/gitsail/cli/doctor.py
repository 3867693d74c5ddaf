"""`gitsail doctor [PATH]`: a manifests repository against the GitOps checklist."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from gitsail.cli.output import console, fail
from gitsail.model import Obj
from gitsail.render import render_local
from gitsail.workflow.doctor import Finding, doctor, sarif
from gitsail.workflow.preview import AppSource

__all__ = ["doctor_cmd"]


class DoctorFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    sarif = "sarif"


def _render(app: AppSource, root: Path) -> list[Obj]:
    return list(render_local(root / app.path, app.options, root=root).manifests)


def doctor_cmd(
    path: Path = typer.Argument(Path(), help="the repository (default: here)"),
    no_render: bool = typer.Option(
        False, "--no-render", help="skip the checks that render production apps"
    ),
    output: DoctorFormat = typer.Option(
        DoctorFormat.table, "--output", "-o", help="table, json, yaml or sarif"
    ),
) -> None:
    """Score a repository against the article's GitOps checklist and warning signs; each
    finding with file:line and how to fix it. Exit 1 when there is a finding."""
    if not path.is_dir():
        raise fail(f"{path} is not a directory")
    findings = doctor(path, render=None if no_render else _render)
    _print(findings, output)
    if findings:
        raise typer.Exit(1)


def _print(findings: list[Finding], output: DoctorFormat) -> None:
    rows = [f.as_dict() for f in findings]
    if output is DoctorFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif output is DoctorFormat.yaml:
        sys.stdout.write(yaml.safe_dump(rows, sort_keys=False))
    elif output is DoctorFormat.sarif:
        sys.stdout.write(json.dumps(sarif(findings), indent=2) + "\n")
    elif not findings:
        console.print("[green]no findings[/]: the checklist holds for this repository")
    else:
        table = Table(header_style="bold")
        for col in ("severity", "rule", "where", "finding", "fix"):
            table.add_column(col.upper())
        for f in findings:
            where = f"{f.file}:{f.line}" if f.line else f.file
            color = "red" if f.severity == "error" else "yellow"
            table.add_row(
                f"[{color}]{f.severity}[/]",
                f.rule,
                escape(where),
                escape(f.message),
                escape(f.fix),
            )
        console.print(table)
