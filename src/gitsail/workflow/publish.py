"""Write edits and, when asked, commit them, on the current branch or a new one, and push.

The order is fixed so a refusal changes nothing: every name is checked and the files to edit
are checked for uncommitted changes (a commit would take them along) before anything is
written; then the branch is created, the files written, committed (only those files) and
pushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gitsail.workflow.gitops import GitError, Repo, check_branch_name, check_remote_name
from gitsail.workflow.imageset import FileEdit, write_edits

__all__ = ["Published", "publish"]


@dataclass(frozen=True)
class Published:
    """What happened: the new commit ("" when nothing was committed), on which branch, and
    whether it was pushed."""

    commit: str
    branch: str
    pushed: bool


def publish(
    repo: Repo,
    edits: Sequence[FileEdit],
    message: str,
    *,
    commit: bool,
    push: bool,
    branch: str = "",
    remote: str = "origin",
) -> Published:
    """Write ``edits``; commit and push them as asked (``branch``: on a new branch)."""
    commit = commit or push or bool(branch)
    paths = [edit.path for edit in edits]
    if commit:
        check_remote_name(remote)
        if branch:
            check_branch_name(branch, repo.root)
            if repo.branch_exists(branch):
                raise GitError(f"branch {branch!r} exists already; choose another --branch")
        dirty = repo.dirty(paths)
        if dirty:
            raise GitError(
                f"{', '.join(dirty)}: uncommitted changes; commit or stash them first "
                "(the commit would include them)"
            )
    if not edits:
        return Published("", branch, False)
    if commit and branch:
        repo.switch_new(branch)
    write_edits(edits)
    if not commit:
        return Published("", "", False)
    sha = repo.commit(paths, message)
    target = branch or repo.current_branch()
    if push:
        repo.push(remote, target)
    return Published(sha, target, push)
