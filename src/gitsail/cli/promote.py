"""`gitsail promote --from DIR --to DIR`: a promotion as a commit or a pull-request branch."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from gitsail.cli.image import changes_rows, print_published
from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.model import Obj
from gitsail.render import RenderError, render_local
from gitsail.source.yamledit import EditError
from gitsail.workflow.gitops import GitError, Repo
from gitsail.workflow.promote import plan_promotion
from gitsail.workflow.publish import publish

__all__ = ["promote", "render_app"]


def render_app(app: Path, root: Path) -> list[Obj]:
    """Render an app directory of a checkout the way ``gitsail render`` does."""
    return list(render_local(app, root=root).manifests)


def promote(
    source: Path = typer.Option(..., "--from", help="the tested environment's directory"),
    target: Path = typer.Option(..., "--to", help="the environment to promote into"),
    commit: bool = typer.Option(False, "--commit", help="commit the change"),
    push: bool = typer.Option(False, "--push", help="commit and push the change"),
    branch: str = typer.Option("", "--branch", help="commit on this new branch (for a PR)"),
    remote: str = typer.Option("origin", "--remote", help="the remote to push to"),
    no_render: bool = typer.Option(False, "--no-render", help="skip the rendered diff"),
    output: Format = OutputOption,
) -> None:
    """Copy the images one environment runs into another (the article's promotion); print
    the branch and a Markdown pull-request description with the rendered diff."""
    try:
        repo = Repo.at(target)
        promotion = plan_promotion(
            source, target, repo.root, render=None if no_render else render_app
        )
    except (EditError, GitError, RenderError) as exc:
        raise fail(str(exc)) from exc
    if not promotion.images:
        if output is Format.table:
            console.print(f"{promotion.target} already runs what {promotion.source} runs")
        else:
            emit({"images": [], "changes": [], "branch": "", "commit": ""}, output)
        return
    first = promotion.images[0]
    more = f" and {len(promotion.images) - 1} more" if len(promotion.images) > 1 else ""
    message = (
        f"chore(promote): {first[0]} {first[2]} from {promotion.source} to {promotion.target}{more}"
    )
    try:
        done = publish(
            repo,
            promotion.edits,
            message,
            commit=commit,
            push=push,
            branch=branch,
            remote=remote,
        )
    except GitError as exc:
        raise fail(str(exc)) from exc
    description = promotion.markdown()
    if output is Format.table:
        emit(changes_rows(promotion.edits, table=True), output, title=escape(message))
        print_published(done, output)
        if done.branch:
            console.print(f"branch: {done.branch}")
        sys.stdout.write("\n" + description + "\n")
        return
    emit(
        {
            "images": [
                {"name": name, "from": str(old), "to": str(new)}
                for name, old, new in promotion.images
            ],
            "changes": changes_rows(promotion.edits),
            "message": message,
            "branch": done.branch,
            "commit": done.commit,
            "pushed": done.pushed,
            "description": description,
        },
        output,
    )
