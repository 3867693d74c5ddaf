"""Who may read what through the shared cache, and where the source stage may connect.

Real git and HTTP servers on loopback: a cached commit is served to an app only after the
server accepted that app's own credentials, and redirects never move a fetch to another
host (git or Helm).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.policy import Policy
from gitsail.source import (
    AuthError,
    GitSource,
    HelmRepoSource,
    InvalidSource,
    RepoCredentials,
    RevisionNotFound,
)
from tests.integration.conftest import GIT_USER

pytestmark = pytest.mark.integration

FILES = {"app/secret.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: private}\n"}


async def test_a_cached_commit_is_served_only_to_callers_the_server_accepts(
    git_repo: Workdir, git_server: GitServer, tmp_path: Path
) -> None:
    sha = git_repo.commit_and_push(FILES, "private")
    plain = git_server.url(git_repo.remote.rsplit("/", 1)[-1])
    source = GitSource(tmp_path / "cache", timeout=30)
    first = await source.fetch(git_repo.remote, "main", "app")  # credentials in the URL
    assert first.revision == sha

    # Same repository, pinned to the SHA (visible in the first app's status), in the cache:
    with pytest.raises(AuthError):
        await source.fetch(plain, sha, "app")  # no credentials
    wrong = RepoCredentials(url=plain, username=GIT_USER[0], password="not-the-password")
    with pytest.raises(AuthError) as caught:
        await source.fetch(plain, sha, "app", wrong)
    assert "not-the-password" not in str(caught.value)

    # The same credentials from a repository Secret are the same identity: no new round trip.
    before = source.stats.ls_remotes
    right = RepoCredentials(url=plain, username=GIT_USER[0], password=GIT_USER[1])
    again = await source.fetch(plain, sha, "app", right)
    assert again.root == first.root
    assert source.stats.ls_remotes == before
    assert source.stats.fetches == 1


async def test_the_access_proof_expires(
    git_repo: Workdir, git_server: GitServer, tmp_path: Path
) -> None:
    sha = git_repo.commit_and_push(FILES, "private")
    source = GitSource(tmp_path / "cache", timeout=30, policy=Policy(repo_access_ttl=0))
    await source.fetch(git_repo.remote, sha, "app")
    await source.fetch(git_repo.remote, sha, "app")
    assert source.stats.ls_remotes == 2  # asked each time: the proof lives 0 seconds
    assert source.stats.fetches == 1


class _Redirect(BaseHTTPRequestHandler):
    target = ""  # base URL every request is redirected to (path kept)

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirector() -> Iterator[tuple[str, type[_Redirect]]]:
    handler = type("Redirect", (_Redirect,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_git_does_not_follow_a_redirect_to_another_host(
    redirector: tuple[str, type[_Redirect]], tmp_path: Path
) -> None:
    with GitServer(tmp_path / "public") as public:  # anonymous: a redirect would just work
        public.create_repo("r")
        work = Workdir(public.url("r"))
        try:
            work.commit_and_push({"app/a.yaml": "kind: ConfigMap\n"}, "public")
        finally:
            work.close()
        base, handler = redirector
        handler.target = f"http://localhost:{public.port}"
        source = GitSource(tmp_path / "cache", timeout=30)
        with pytest.raises(InvalidSource, match="does not follow redirects"):
            await source.fetch(f"{base}/r.git", "main", "app")


async def test_helm_follows_redirects_within_the_same_host_only(
    redirector: tuple[str, type[_Redirect]], tmp_path: Path
) -> None:
    www = tmp_path / "www"
    (www / "moved" / "charts").mkdir(parents=True)
    (www / "moved" / "charts" / "index.yaml").write_text("apiVersion: v1\nentries: {}\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _static(www))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        base, handler = redirector
        source = HelmRepoSource(tmp_path / "cache", timeout=30)
        handler.target = f"http://localhost:{port}/moved"
        with pytest.raises(InvalidSource, match="same host"):
            await source.fetch_chart(f"{base}/charts", "podinfo", "1.0.0")
        # Same host (another port): followed, the index is read; the chart is not in it.
        handler.target = f"http://127.0.0.1:{port}/moved"
        with pytest.raises(RevisionNotFound, match="not in the Helm repository"):
            await source.fetch_chart(f"{base}/charts", "podinfo", "1.0.0")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _static(root: Path) -> type[BaseHTTPRequestHandler]:
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    return partial(Quiet, directory=str(root))  # type: ignore[return-value]
