"""`gitsail doctor [PATH]`: a manifests repository against the GitOps checklist."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path

import httpx
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from gitsail.cli.output import console, err_console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj
from gitsail.render import render_local
from gitsail.secrets.sealing import SealingError, public_key_from_pem
from gitsail.workflow.doctor import Finding, doctor, sarif
from gitsail.workflow.doctor_cluster import DRIFT_REPEATS, ClusterReport, cluster_findings
from gitsail.workflow.doctor_fix import FixReport, seal_plain_secrets
from gitsail.workflow.preview import AppSource

__all__ = ["doctor_cmd"]

MAX_CERT_BYTES = 64 * 1024


class DoctorFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    sarif = "sarif"


def _render(app: AppSource, root: Path) -> list[Obj]:
    return list(render_local(root / app.path, app.options, root=root).manifests)


class FailOn(StrEnum):
    error = "error"
    warning = "warning"
    never = "never"


def doctor_cmd(
    path: Path = typer.Argument(Path(), help="the repository (default: here)"),
    no_render: bool = typer.Option(
        False, "--no-render", help="skip the checks that render production apps"
    ),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="also check the live cluster of the current kubeconfig (apps' sync policies, "
        "drift that keeps coming back, images running with :latest)",
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
    drift_repeats: int = typer.Option(
        DRIFT_REPEATS, "--drift-repeats", min=1, help="detections that make drift recurring"
    ),
    fix: bool = typer.Option(
        False, "--fix", help="make the mechanical fixes in the files (seal plain Secrets)"
    ),
    cert: Path | None = typer.Option(
        None,
        "--cert",
        envvar="SEALED_SECRETS_CERT",
        help="the Sealed Secrets certificate for --fix (gitsail seal --fetch-cert)",
    ),
    fail_on: FailOn = typer.Option(
        FailOn.warning, "--fail-on", help="exit 1 on findings of this severity or worse"
    ),
    output: DoctorFormat = typer.Option(
        DoctorFormat.table, "--output", "-o", help="table, json, yaml or sarif"
    ),
) -> None:
    """Score a repository (and with --cluster the cluster) against the article's GitOps
    checklist and warning signs; each finding with where it is and how to fix it.

    Exit codes: 0 nothing at --fail-on's severity, 1 findings, 2 doctor could not run."""
    if not path.is_dir():
        raise fail(f"{path} is not a directory", code=2)
    render = None if no_render else _render
    findings = doctor(path, render=render)
    fixes: FixReport | None = None
    if fix:
        if cert is None:
            raise fail(
                "--fix seals plain Secrets: give --cert FILE (gitsail seal --fetch-cert > "
                "cert.pem)",
                code=2,
            )
        try:
            data = cert.read_bytes()[: MAX_CERT_BYTES + 1]
            if len(data) > MAX_CERT_BYTES:
                raise SealingError(f"{cert} is larger than {MAX_CERT_BYTES} bytes")
            key = public_key_from_pem(data)
        except (OSError, SealingError) as exc:
            raise fail(f"--cert: {exc}", code=2) from exc
        fixes = seal_plain_secrets(path, findings, key)
        if fixes.fixed:
            findings = doctor(path, render=render)
    notes: tuple[str, ...] = ()
    if cluster:
        config = kubeconfig.split(":")[0] if kubeconfig else None
        try:
            report = asyncio.run(_cluster(config, context, drift_repeats))
        except (KubeError, OSError, ValueError, httpx.HTTPError) as exc:
            raise fail(f"cannot read the cluster: {exc}", code=2) from exc
        findings = [*findings, *report.findings]
        notes = report.notes
    _print(findings, output)
    _print_fixes(fixes, notes, output)
    if fail_on is FailOn.never:
        return
    failing = [f for f in findings if fail_on is FailOn.warning or f.severity == "error"]
    if failing:
        raise typer.Exit(1)


async def _cluster(kubeconfig: str | None, context: str | None, repeats: int) -> ClusterReport:
    async with Kube(await load_kubeconfig(kubeconfig, context)) as kube:
        return await cluster_findings(kube, drift_repeats=repeats)


def _print_fixes(fixes: FixReport | None, notes: tuple[str, ...], output: DoctorFormat) -> None:
    """What --fix did and what the cluster check could not read (stderr for machine
    formats, so stdout stays one document)."""
    lines: list[str] = []
    if fixes is not None:
        lines += [f"fixed {line}" for line in fixes.fixed]
        lines += [f"not fixed {line}" for line in fixes.skipped]
        if not fixes.fixed and not fixes.skipped:
            lines.append("nothing to fix mechanically")
    lines += [f"note: {n}" for n in notes]
    target = console if output is DoctorFormat.table else err_console
    for line in lines:
        target.print(escape(line), highlight=False)


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
