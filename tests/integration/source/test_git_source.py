"""GitSource against real git servers: smart HTTP with credentials, and file:// repositories."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.gitserver import GitServer, Workdir, init_bare
from gitsail.policy import Policy
from gitsail.source import (
    AuthError,
    FetchError,
    GitSource,
    PathNotFound,
    RepoCredentials,
    RevisionNotFound,
    match_credentials,
)
from gitsail.source._gitcli import GitCommand
from tests.integration.conftest import GIT_USER

pytestmark = pytest.mark.integration

APP = {
    "apps/web/kustomization.yaml": "resources: [deploy.yaml]\n",
    "apps/web/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    "apps/api/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\n",
}


def _plain_url(git_server: GitServer, work: Workdir) -> str:
    return git_server.url(work.remote.rsplit("/", 1)[-1])


def _repo_secret(url: str, username: str, password: str) -> dict[str, object]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "repo-web",
            "namespace": "argocd",
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "data": {"url": b64(url), "username": b64(username), "password": b64(password)},
        "stringData": {"type": "git"},
    }


@pytest.fixture
def source(tmp_path: Path) -> GitSource:
    return GitSource(tmp_path / "cache", timeout=30)


async def test_https_fetch_with_credentials_from_a_repository_secret(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    sha = git_repo.commit_and_push(APP, "apps")
    url = _plain_url(git_server, git_repo)
    creds = match_credentials(url, [_repo_secret(url + "/", *GIT_USER)])
    assert creds is not None

    artifact = await source.fetch(url, "main", "apps/web", creds)

    assert artifact.revision == sha
    assert artifact.requested == "main"
    assert artifact.url == url
    assert artifact.kind == "git"
    assert (artifact.directory / "deploy.yaml").read_text().startswith("apiVersion: apps/v1")
    assert artifact.root == source.cache_dir / "checkouts" / sha
    assert artifact.digest.startswith("sha256:")
    # the password is nowhere on disk in the clone cache
    for file in (source.cache_dir / "repos").rglob("*"):
        if file.is_file():
            assert GIT_USER[1].encode() not in file.read_bytes(), file


async def test_credentials_embedded_in_the_url_are_used_but_never_shown(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    git_repo.commit_and_push(APP, "apps")
    artifact = await source.fetch(git_repo.remote, "HEAD", ".")
    assert GIT_USER[1] not in artifact.url
    assert "@" not in artifact.url
    config = next((source.cache_dir / "repos").glob("*.git")) / "config"
    assert GIT_USER[1] not in config.read_text()


async def test_wrong_password_is_an_auth_error_without_the_password(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    git_repo.commit_and_push(APP, "apps")
    url = _plain_url(git_server, git_repo)
    wrong = RepoCredentials(url=url, username=GIT_USER[0], password="wrong-pass-123")
    with pytest.raises(AuthError) as caught:
        await source.resolve(url, "main", wrong)
    assert "wrong-pass-123" not in str(caught.value)
    assert url in str(caught.value)
    with pytest.raises(AuthError):
        await source.fetch(url, "main", ".")  # no credentials at all


async def test_unreachable_server_is_a_fetch_error_quickly(source: GitSource) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        await source.fetch(f"http://user:pw-xyz@127.0.0.1:{port}/repo.git", "main", ".")
    assert time.monotonic() - started < 10
    assert "pw-xyz" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_target_revisions_branch_tag_sha_head_and_semver(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    first = git_repo.commit_and_push({"app/v.txt": "1.0.0\n"}, "one")
    git_repo.tag("v1.0.0")
    second = git_repo.commit_and_push({"app/v.txt": "1.2.0\n"}, "two")
    git_repo.tag("v1.2.0")
    third = git_repo.commit_and_push({"app/v.txt": "2.0.0\n"}, "three")
    git_repo.tag("v2.0.0")
    main = git_repo.commit_and_push({"app/v.txt": "main\n"}, "head of main")
    git_repo.tag("v2.1.0-rc.1")
    git_repo.push(tags=True)

    async def content(revision: str) -> tuple[str, str]:
        artifact = await source.fetch(url, revision, "app", creds)
        return artifact.revision, (artifact.directory / "v.txt").read_text().strip()

    assert await content("main") == (main, "main")
    assert await content("") == (main, "main")
    assert await content("HEAD") == (main, "main")
    assert await content("v1.0.0") == (first, "1.0.0")
    assert await content(second) == (second, "1.2.0")
    assert await content("1.*") == (second, "1.2.0")
    assert await content(">=1.0.0 <2.0.0") == (second, "1.2.0")
    assert await content("~1.0") == (first, "1.0.0")
    assert await content("*") == (third, "2.0.0")  # stable releases only
    assert await content(">=2.1.0-0") == (main, "main")  # asks for prereleases
    assert await source.resolve(url, "v2.1.0-rc.1", creds) == main
    with pytest.raises(RevisionNotFound, match="semver range"):
        await source.fetch(url, ">=3.0.0", "app", creds)
    with pytest.raises(RevisionNotFound, match="not a branch, tag or commit"):
        await source.fetch(url, "no-such-branch", "app", creds)
    with pytest.raises(RevisionNotFound):
        await source.fetch(url, "0" * 40, "app", creds)


async def test_same_revision_is_fetched_once_for_many_apps(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    git_repo.commit_and_push(APP, "apps")

    web, api, web_again = await asyncio.gather(
        source.fetch(url, "main", "apps/web", creds),
        source.fetch(url + "/", "main", "apps/api", creds),
        source.fetch(url, "main", "apps/web", creds),
    )

    assert source.stats.fetches == 1
    assert source.stats.checkouts == 1
    assert web.root == api.root == web_again.root
    assert web.digest == web_again.digest != api.digest
    # a later poll of an unchanged branch costs an ls-remote, not a fetch
    await source.fetch(url, "main", "apps/api", creds)
    assert source.stats.fetches == 1


async def test_polls_share_remembered_refs_until_forgotten(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    first = git_repo.commit_and_push(APP, "apps")
    source.refs_ttl = 3600
    assert await source.resolve(url, "main", creds) == first
    calls = source.stats.ls_remotes
    second = git_repo.commit_and_push({"apps/web/cm.yaml": "kind: ConfigMap\n# 2\n"}, "2")
    # Within the TTL every poll is answered from the remembered refs: no ls-remote.
    assert await source.resolve(url, "main", creds) == first
    assert source.stats.ls_remotes == calls
    source.forget(url)  # what a webhook does
    assert await source.resolve(url, "main", creds) == second
    assert source.stats.ls_remotes == calls + 1


async def test_commit_to_another_app_keeps_this_apps_digest(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    git_repo.commit_and_push(APP, "apps")
    before_web = await source.fetch(url, "main", "apps/web", creds)
    before_api = await source.fetch(url, "main", "apps/api", creds)

    git_repo.commit_and_push({"apps/api/cm.yaml": "kind: ConfigMap\n# changed\n"}, "api only")
    after_web = await source.fetch(url, "main", "apps/web", creds)
    after_api = await source.fetch(url, "main", "apps/api", creds)

    assert after_web.revision != before_web.revision
    assert after_web.digest == before_web.digest
    assert after_api.digest != before_api.digest
    assert source.stats.fetches == 2


async def test_missing_path_names_the_repository_and_commit(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    sha = git_repo.commit_and_push(APP, "apps")
    with pytest.raises(PathNotFound) as caught:
        await source.fetch(url, "main", "apps/nope", creds)
    assert f"path 'apps/nope' does not exist in {url} at {sha}" in str(caught.value)


async def test_file_repository(tmp_path: Path) -> None:
    source = GitSource(tmp_path / "cache", timeout=30, policy=Policy(allow_file_urls=True))
    bare = init_bare(tmp_path / "local.git")
    work = Workdir(f"file://{bare}")
    try:
        sha = work.commit_and_push({"app/a.yaml": "kind: ConfigMap\n"}, "local")
    finally:
        work.close()
    for url in (f"file://{bare}", str(bare)):
        artifact = await source.fetch(url, "main", "app")
        assert artifact.revision == sha
        assert (artifact.directory / "a.yaml").is_file()
    assert source.stats.fetches == 1


async def test_checkout_is_read_only(
    git_repo: Workdir, git_server: GitServer, source: GitSource
) -> None:
    git_repo.commit_and_push(APP, "apps")
    artifact = await source.fetch(git_repo.remote, "main", "apps/web")
    mode = (artifact.directory / "deploy.yaml").stat().st_mode
    assert not mode & 0o222


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue  # exited meanwhile
    return found


async def test_hanging_server_times_out_and_the_git_process_group_is_killed(
    tmp_path: Path,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections, never answers
        port = listener.getsockname()[1]
        source = GitSource(tmp_path / "cache", timeout=1.5)
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"timed out after 1\.5s"):
            await source.resolve(f"http://127.0.0.1:{port}/slow.git", "main")
        assert time.monotonic() - started < 5
    assert _processes_mentioning(f"127.0.0.1:{port}/slow.git") == []


async def test_a_poll_at_a_known_commit_runs_no_git_and_hashes_nothing(
    git_repo: Workdir, git_server: GitServer, source: GitSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    git_repo.commit_and_push(APP, "apps")
    source.refs_ttl = 3600  # the refs are remembered: this measures what follows them
    first = await source.fetch(url, "main", "apps/web", creds)
    commands: list[list[str]] = []
    real_run = GitCommand.run

    async def counted(self: GitCommand, args: list[str], *a: Any, **kw: Any) -> Any:
        commands.append(list(args))
        return await real_run(self, args, *a, **kw)

    def no_hashing(*_a: Any, **_kw: Any) -> str:
        raise AssertionError("the digest of a known commit and path is computed again")

    monkeypatch.setattr(GitCommand, "run", counted)
    monkeypatch.setattr("gitsail.source.git.input_digest", no_hashing)
    again = await source.fetch(url, "main", "apps/web", creds)
    assert commands == []
    assert (again.revision, again.digest) == (first.revision, first.digest)
    # Another path of the same commit is hashed once (and needs no git either).
    monkeypatch.undo()
    monkeypatch.setattr(GitCommand, "run", counted)
    api = await source.fetch(url, "main", "apps/api", creds)
    assert commands == []
    assert api.digest != first.digest


async def test_a_poll_within_the_refs_ttl_is_the_remembered_artifact_until_the_refs_move(
    git_repo: Workdir, git_server: GitServer, source: GitSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _plain_url(git_server, git_repo)
    creds = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1])
    first = git_repo.commit_and_push(APP, "apps")
    source.refs_ttl = 3600
    artifact = await source.fetch(url, "main", "apps/web", creds)
    stats = (source.stats.ls_remotes, source.stats.fetches, source.stats.checkouts)

    def no_work(*_a: Any, **_kw: Any) -> Any:
        raise AssertionError("a remembered artifact was resolved, fetched or checked out")

    with monkeypatch.context() as patched:
        for name in ("_resolve", "_ensure_commit", "_checkout"):
            patched.setattr(GitSource, name, no_work)
        assert await source.fetch(url, "main", "apps/web", creds) is artifact
    # Other credentials, another path: not this artifact.
    other = RepoCredentials(url=url, username=GIT_USER[0], password=GIT_USER[1] + "-not")
    with pytest.raises(AuthError):
        await source.fetch(url, "main", "apps/web", other)
    assert (await source.fetch(url, "main", "apps/api", creds)).path == "apps/api"
    # A push is seen once the refs are asked again (a webhook's forget, or the TTL).
    second = git_repo.commit_and_push({"apps/web/cm.yaml": "kind: ConfigMap\n# 2\n"}, "2")
    assert (await source.fetch(url, "main", "apps/web", creds)).revision == first
    source.forget(url)
    assert (await source.fetch(url, "main", "apps/web", creds)).revision == second
    third = git_repo.commit_and_push({"apps/web/cm.yaml": "kind: ConfigMap\n# 3\n"}, "3")
    source.refs_ttl = 1e-9  # (every answer is stale at once)
    assert (await source.fetch(url, "main", "apps/web", creds)).revision == third
    assert source.stats.ls_remotes > stats[0]
