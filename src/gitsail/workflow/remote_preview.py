"""``gitsail preview --pr``: the preview of two refs of a remote repository.

A pull request's CI job usually has a shallow checkout of one commit, or none at all; the
base and head it compares live on the server (``main`` and ``refs/pull/7/head``, a branch,
a tag, a full commit SHA). Both are fetched by the source layer's ``GitSource``, the one the
controller uses, with everything it enforces before git runs: the URL is parsed and checked
against the operator's policy (``file://`` only with ``GITSAIL_ALLOW_FILE_URLS``, denied
networks never contacted), revisions are checked as git arguments and resolved with
``ls-remote``, credentials never reach argv or disk (userinfo in the URL is split off; a
token comes from the environment), every git command has a timeout, and symlinks that
leave a checkout are refused.

The cache is private to the run (a fresh ``0700`` temporary directory, removed at the end):
nothing fetched for one pull request is served to another, and the user's own checkout is
not touched. The two checkouts are then compared exactly as ``preview BASE..HEAD`` compares
a local checkout's exports (``preview.compare_trees``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from gitsail.model import Artifact
from gitsail.policy import Policy
from gitsail.source import GitSource, RepoCredentials
from gitsail.source.credentials import credentials_from_url
from gitsail.workflow.preview import AppSource, Preview, Render, compare_trees

__all__ = ["PASSWORD_ENV", "USERNAME_ENV", "fetch_pair", "preview_remote", "remote_credentials"]

USERNAME_ENV = "GITSAIL_GIT_USERNAME"
PASSWORD_ENV = "GITSAIL_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password


def remote_credentials(url: str, environ: dict[str, str] | None = None) -> RepoCredentials | None:
    """Credentials for ``url``: userinfo in the URL, else ``GITSAIL_GIT_PASSWORD`` (a CI
    token) with ``GITSAIL_GIT_USERNAME`` (default ``git``) from the environment."""
    env = dict(os.environ if environ is None else environ)
    clean, from_url = credentials_from_url(url)
    if from_url is not None:
        return from_url
    password = env.get(PASSWORD_ENV, "")
    if not password:
        return None
    return RepoCredentials(url=clean, username=env.get(USERNAME_ENV) or "git", password=password)


async def fetch_pair(
    git: GitSource, url: str, base: str, head: str, creds: RepoCredentials | None
) -> tuple[Artifact, Artifact]:
    """Both revisions of ``url`` fetched and checked out (the whole tree of each)."""
    before = await git.fetch(url, base, ".", creds)
    after = await git.fetch(url, head, ".", creds)
    return before, after


def _remove(tree: Path) -> None:
    """Delete the private cache (its checkouts are sealed read-only: writable first)."""
    tree.chmod(0o700)
    for current, dirs, _files in os.walk(tree):
        for name in dirs:
            entry = Path(current) / name
            if not entry.is_symlink():
                entry.chmod(0o700)
    shutil.rmtree(tree, ignore_errors=True)


def preview_remote(
    url: str,
    base: str,
    head: str,
    *,
    apps: Callable[[Path, Path], Sequence[AppSource]],
    render: Render,
    policy: Policy,
    creds: RepoCredentials | None = None,
    on_head: Callable[[Path, Preview], None] | None = None,
) -> Preview:
    """The preview of ``base`` against ``head`` of the remote ``url`` (SourceError when a
    fetch is refused or fails; the message names the URL without its credentials).
    ``on_head(head_root, preview)`` runs while the head checkout still exists (``--live``)."""
    scratch = Path(tempfile.mkdtemp(prefix="gitsail-preview-pr-"))
    try:
        git = GitSource(scratch / "source", policy=policy)
        before, after = asyncio.run(fetch_pair(git, url, base, head, creds))
        result = compare_trees(
            (before.root, before.revision),
            (after.root, after.revision),
            apps=apps,
            render=render,
        )
        if on_head is not None:
            on_head(after.root, result)
        return result
    finally:
        _remove(scratch)
