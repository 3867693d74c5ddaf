"""Commit to a Git repository and push: what Flux's image automation does to its source.

``push_change`` works in a private, throw-away clone (under the ``GitSource`` cache's
``tmp``), through the same hardened git command line as every fetch (``_gitcli``): the
repository's credentials reach git through the credential helper or SSH key file of
``git_session``, never argv; the destination is checked against the operator's denied
networks first; hooks are off.

One call::

    branch       <- the push branch when it exists on the server (commits go on top of it),
                    else the checkout branch (a new push branch starts there)
    fetch        <- that branch only, depth 1, no tags
    edit         -> the caller's function edits the work tree and names the files it wrote
    nothing?     -> None (no commit, no push)
    commit       -> author and committer from the caller (environment, never argv), the
                    message from a file
    push         -> ``HEAD:refs/heads/<push branch>``: a fast-forward only; a server that
                    moved meanwhile rejects it and the caller retries later

Branch names are checked by ``git check-ref-format`` as ``refs/heads/<name>`` (never as an
option); author names and e-mails may hold no control characters or angle brackets.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitsail.source._urls import redact_url
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import InvalidSource, SourceError
from gitsail.source.git import GitSource

__all__ = ["Identity", "PushResult", "push_change"]

_SHA = re.compile(r"^[0-9a-f]{40}$")
_IDENTITY = re.compile(r"^[^\x00-\x1f\x7f<>]{1,256}$")
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True)
class Identity:
    """Who commits: the author (and committer) name and e-mail."""

    name: str
    email: str


@dataclass(frozen=True)
class PushResult:
    commit: str  # the pushed commit's SHA
    branch: str  # the branch it was pushed to
    base: str  # the commit it was made on


Edit = Callable[[Path], Sequence[str]]  # edits the work tree; returns the files written


async def push_change(
    source: GitSource,
    repo_url: str,
    creds: RepoCredentials | None,
    *,
    checkout_branch: str,
    push_branch: str,
    edit: Edit,
    identity: Identity,
    message: Callable[[], str],
) -> PushResult | None:
    """Edit a clone of ``checkout_branch`` with ``edit``, commit as ``identity`` with
    ``message()`` and push to ``push_branch``; None when ``edit`` wrote nothing."""
    repo, url, creds = source._prepare(repo_url, creds)
    shown = redact_url(url)
    for value, what in ((identity.name, "author name"), (identity.email, "author email")):
        if not _IDENTITY.match(value):
            raise InvalidSource(f"the commit {what} {value[:60]!r} is empty or not one line")
    source._ensure_layout()
    await _check_branch(source, checkout_branch, shown)
    await _check_branch(source, push_branch, shown)
    await source._check_destination(repo, url)
    work = Path(tempfile.mkdtemp(prefix="push-", dir=source.cache_dir / "tmp"))
    try:
        with source._session(repo, url, creds) as git:
            await git.run(["init", "--quiet", "--", str(work)], action="init")
            base_branch = checkout_branch
            if push_branch != checkout_branch:
                out, _ = await git.run(
                    ["ls-remote", "--heads", "--", url, f"refs/heads/{push_branch}"],
                    action="ls-remote",
                )
                if out.strip():
                    base_branch = push_branch
            await git.run(
                ["fetch", "--quiet", "--depth=1", "--no-tags", "--", url,
                 f"+refs/heads/{base_branch}:refs/remotes/origin/{base_branch}"],
                cwd=work,
                action="fetch",
            )  # fmt: skip
            await git.run(
                ["checkout", "--quiet", "-B", "gitsail-automation",
                 f"refs/remotes/origin/{base_branch}"],
                cwd=work,
                action="checkout",
            )  # fmt: skip
            base = (await git.run(["rev-parse", "HEAD"], cwd=work))[0].decode().strip()
            written = await asyncio.to_thread(edit, work)
            if not written:
                return None
            await git.run(["add", "--", *written], cwd=work, action="add")
            text = message()
            if not text.strip():
                raise InvalidSource("the commit message is empty")
            message_file = work / ".git" / "GITSAIL_COMMIT_MSG"
            message_file.write_text(text[:MAX_MESSAGE], encoding="utf-8")
            people = {
                "GIT_AUTHOR_NAME": identity.name,
                "GIT_AUTHOR_EMAIL": identity.email,
                "GIT_COMMITTER_NAME": identity.name,
                "GIT_COMMITTER_EMAIL": identity.email,
            }
            await git.run(
                ["commit", "--quiet", "--no-verify", "--cleanup=verbatim", "-F",
                 str(message_file)],
                cwd=work,
                extra_env=people,
                action="commit",
            )  # fmt: skip
            sha = (await git.run(["rev-parse", "HEAD"], cwd=work))[0].decode().strip()
            if not _SHA.match(sha):
                raise SourceError(f"git made no commit in the clone of {shown}", url=shown)
            await git.run(
                ["push", "--quiet", "--", url, f"HEAD:refs/heads/{push_branch}"],
                cwd=work,
                action="push",
            )
        source.forget(repo_url)  # the branch moved: the next resolve asks the server
        return PushResult(commit=sha, branch=push_branch, base=base)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _check_branch(source: GitSource, name: str, shown: str) -> None:
    if not name or name.startswith("-") or len(name) > 250:
        raise InvalidSource(f"{name[:60]!r} is not a branch name", url=shown)
    _, failure = await source._local().run(["check-ref-format", f"refs/heads/{name}"], check=False)
    if failure is not None:
        raise InvalidSource(f"{name[:60]!r} is not a valid branch name", url=shown)
