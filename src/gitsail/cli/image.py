"""`gitsail image set`: bump an image in an environment's directory, commit and push it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.source.yamledit import EditError
from gitsail.workflow.gitops import GitError, Repo
from gitsail.workflow.imageref import ImageRefError, parse_update
from gitsail.workflow.imageset import FileEdit, plan_image_set
from gitsail.workflow.publish import Published, publish
from gitsail.workflow.registry import RegistryCheck, verify_image

__all__ = ["app", "changes_rows", "print_published"]

app = typer.Typer(
    help="Set image tags and digests in a manifests repository.", no_args_is_help=True
)


def changes_rows(
    edits: tuple[FileEdit, ...] | list[FileEdit], *, table: bool = False
) -> list[dict[str, object]]:
    """One row per changed value (``table``: escaped for Rich markup)."""
    shown = escape if table else str
    return [
        {"file": c.file, "line": c.line, "field": shown(c.field), "old": c.old, "new": c.new}
        for edit in edits
        for c in edit.changes
    ]


def print_published(done: Published, output: Format) -> None:
    if output is not Format.table:
        return
    if done.commit:
        pushed = " and pushed" if done.pushed else ""
        console.print(f"committed {done.commit[:12]} on {done.branch}{pushed}")


@app.command("set")
def set_image(
    directory: Path = typer.Argument(..., help="the environment's directory (in a checkout)"),
    image: str = typer.Argument(..., help="NAME=IMAGE[:TAG|@DIGEST], or NAME:TAG, NAME@DIGEST"),
    key: list[str] = typer.Option(
        [], "--key", help="a dotted path in a values file to set to the tag (image.tag)"
    ),
    policy: str = typer.Option(
        "", "--policy", help='set values marked # {"$imagepolicy": "NS:NAME[:tag]"}'
    ),
    commit: bool = typer.Option(False, "--commit", help="commit the change"),
    push: bool = typer.Option(False, "--push", help="commit and push the change"),
    branch: str = typer.Option("", "--branch", help="commit on this new branch"),
    remote: str = typer.Option("origin", "--remote", help="the remote to push to"),
    message: str = typer.Option("", "--message", "-m", help="the commit message"),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="do not check that the tag exists in the registry"
    ),
    output: Format = OutputOption,
) -> None:
    """Set an image's tag or digest where DIRECTORY defines it (kustomize images:, Helm
    values, plain manifests), keeping the files' comments and formatting."""
    try:
        update = parse_update(image)
        repo = Repo.at(directory)
        plan = plan_image_set(directory, update, keys=key, policy=policy, root=repo.root)
    except (ImageRefError, EditError, GitError) as exc:
        raise fail(str(exc)) from exc
    if plan.matched == 0:
        raise fail(f"{update.name} is not set anywhere in {directory}; nothing to change")
    if not no_verify and (update.tag or update.digest):
        try:
            verify_image(update.target)
        except RegistryCheck as exc:
            raise fail(str(exc)) from exc
    where = repo.relative(directory)
    text = message or f"chore(deploy): set {update.name} to {update.target.version} in {where}"
    try:
        done = publish(
            repo, plan.edits, text, commit=commit, push=push, branch=branch, remote=remote
        )
    except GitError as exc:
        raise fail(str(exc)) from exc
    rows = changes_rows(plan.edits)
    if output is Format.table:
        if not rows:
            console.print(f"{update.name} is already {update.target.version} in {where}")
        else:
            emit(changes_rows(plan.edits, table=True), output, title=f"{update.name} in {where}")
        print_published(done, output)
        return
    emit(
        {"changes": rows, "commit": done.commit, "branch": done.branch, "pushed": done.pushed},
        output,
    )
