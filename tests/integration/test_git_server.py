"""The loopback git server: smart HTTP with and without credentials, push, file:// URLs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from gitsail.dev.gitserver import GitServer, Workdir, git, init_bare
from tests.integration.conftest import GIT_USER

pytestmark = pytest.mark.integration


def _clone(url: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="gitsail-clone-")) / "c"
    git("clone", "--quiet", url, str(target))
    return target


def test_push_then_clone_with_credentials(git_repo: Workdir, git_server: GitServer) -> None:
    sha = git_repo.commit_and_push({"apps/a.yaml": "kind: ConfigMap\n"}, "first")
    clone = _clone(git_repo.remote)
    try:
        assert (clone / "apps/a.yaml").read_text() == "kind: ConfigMap\n"
        assert git("rev-parse", "HEAD", cwd=clone).strip() == sha
    finally:
        shutil.rmtree(clone.parent)


def test_missing_or_wrong_credentials_are_refused(git_repo: Workdir, git_server: GitServer) -> None:
    git_repo.commit_and_push({"x": "1"}, "x")
    name = git_repo.remote.rsplit("/", 1)[-1]
    with pytest.raises(RuntimeError, match=r"Authentication failed|could not read Username"):
        git("ls-remote", git_server.url(name))
    wrong = git_server.url(name).replace("http://", f"http://{GIT_USER[0]}:nope@")
    with pytest.raises(RuntimeError, match="Authentication failed"):
        git("ls-remote", wrong)


def test_anonymous_server_serves_without_credentials(tmp_path: Path) -> None:
    with GitServer(tmp_path / "repos") as server:
        server.create_repo("open")
        work = Workdir(server.url("open"))
        try:
            sha = work.commit_and_push({"README": "hi\n"}, "hello")
        finally:
            work.close()
        refs = git("ls-remote", server.url("open"))
        assert f"{sha}\trefs/heads/main" in refs


def test_large_push_uses_chunked_transfer(git_repo: Workdir) -> None:
    # Over http.postBuffer (1 MiB) git streams the pack with chunked encoding.
    import os

    blob = os.urandom(3 * 1024 * 1024).hex()
    sha = git_repo.commit_and_push({"big.txt": blob}, "big")
    assert sha in git("ls-remote", git_repo.remote)


def test_file_url_repositories_work(tmp_path: Path) -> None:
    bare = init_bare(tmp_path / "local.git")
    work = Workdir(f"file://{bare}")
    try:
        sha = work.commit_and_push({"k.yaml": "a: 1\n"}, "c")
        work.tag("v1.0.0")
        work.push(tags=True)
    finally:
        work.close()
    refs = git("ls-remote", f"file://{bare}")
    assert f"{sha}\trefs/heads/main" in refs
    assert "refs/tags/v1.0.0" in refs
