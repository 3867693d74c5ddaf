"""`gitsail ci init github|gitlab`: write the article's delivery pipeline for the user's CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.workflow.ci import CIError, CIOptions, Pipeline, generate

__all__ = ["app"]

app = typer.Typer(help="CI pipelines that deliver through Git (build, scan, push, bump, preview)")


@app.command("init")
def init(
    provider: str = typer.Argument(..., metavar="github|gitlab", help="the CI to write for"),
    image: str = typer.Option(
        "",
        "--image",
        help="the image CI builds and pushes, without tag (default: ghcr.io/OWNER/REPO on "
        "GitHub, $CI_REGISTRY_IMAGE on GitLab)",
    ),
    manifests_repo: str = typer.Option(
        "",
        "--manifests-repo",
        help="the manifests repository's https URL (GitHub: OWNER/NAME too); default: this "
        "repository",
    ),
    environment: str = typer.Option(
        "apps/overlays/development",
        "--environment",
        help="the environment directory CI bumps in the manifests repository",
    ),
    manifests_image: str = typer.Option(
        "", "--manifests-image", help="the image name the manifests use, if not --image"
    ),
    branch: str = typer.Option("main", "--branch", help="the default branch of both repos"),
    gitsail_image: str = typer.Option(
        CIOptions.gitsail_image, "--gitsail-image", help="the gitsail image CI jobs run in"
    ),
    context: str = typer.Option(".", "--context", help="the Docker build context"),
    directory: Path = typer.Option(Path(), "--dir", help="the repository to write into"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
    output: Format = OutputOption,
) -> None:
    """Write the pipeline files and name the secrets they need. Refuses to overwrite an
    existing file without --force."""
    options = CIOptions(
        provider=provider,
        image=image,
        manifests_repo=manifests_repo,
        environment=environment,
        manifests_image=manifests_image,
        branch=branch,
        gitsail_image=gitsail_image,
        context=context,
    )
    try:
        pipeline = generate(options)
    except CIError as exc:
        raise fail(str(exc)) from exc
    if not directory.is_dir():
        raise fail(f"{directory} is not a directory")
    targets = [(directory / f.path, f.text) for f in pipeline.files]
    existing = [str(path) for path, _ in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        raise fail(f"{', '.join(existing)} exists already; give --force to overwrite")
    for path, text in targets:
        if path.is_symlink():
            path.unlink()  # never write through a link to elsewhere
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.gitsail-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    _print(pipeline, [str(p) for p, _ in targets], output)


def _print(pipeline: Pipeline, written: list[str], output: Format) -> None:
    data: dict[str, Any] = {
        "provider": pipeline.provider,
        "files": [
            {"path": path, "repository": f.repository}
            for path, f in zip(written, pipeline.files, strict=True)
        ],
        "secrets": [
            {"name": s.name, "purpose": s.purpose, "repository": s.where} for s in pipeline.secrets
        ],
        "notes": list(pipeline.notes),
    }
    if output is not Format.table:
        emit(data, output)
        return
    for path in written:
        console.print(f"wrote [bold]{escape(path)}[/]", soft_wrap=True)
    if pipeline.secrets:
        console.print("\nsecrets to add (never in the files):")
        for s in pipeline.secrets:
            console.print(
                f"  [bold]{s.name}[/] ({s.where} repository): {escape(s.purpose)}",
                soft_wrap=True,
            )
    else:
        console.print("\nsecrets: none beyond the CI's built-in token")
    for note in pipeline.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
