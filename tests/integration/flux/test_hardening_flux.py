"""Issue 7's classes of bug, looked for again in the Flux source kinds (real cluster, real git).

A password written into a GitRepository's ``spec.url`` is used for the fetch and never shown:
not in the conditions of a failed fetch (a commit outside its branch, a server that hangs
past ``spec.timeout``), whichever message carries the URL.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gitsail.dev.gitserver import Workdir, git
from gitsail.source import redact_url
from tests.integration.conftest import GIT_USER
from tests.integration.flux.test_gitrepository import (
    MANIFESTS,
    Harness,
    article,
    condition,
    harness,
    store,
)

__all__ = ["harness", "store"]  # fixtures re-exported for pytest

pytestmark = pytest.mark.integration

PASSWORD = GIT_USER[1]


async def test_a_commit_outside_its_branch_is_reported_without_the_urls_password(
    harness: Harness, git_repo: Workdir
) -> None:
    git_repo.commit_and_push(MANIFESTS, "on both branches")
    git("push", "--quiet", "origin", "HEAD:refs/heads/release", cwd=git_repo.path)
    only_main = git_repo.commit_and_push({"extra.yaml": "kind: ConfigMap\n"}, "main only")
    obj = article(git_repo.remote)  # http://user:password@host/repo.git
    obj["spec"]["ref"] = {"branch": "release", "commit": only_main}
    await harness.apply(obj)

    _, failed = await harness.reconcile()

    ready = condition(failed, "Ready")
    assert ready["status"] == "False"
    assert (
        f"is not in branch release (spec.ref.branch) of {redact_url(git_repo.remote)}"
        in (ready["message"])
    )
    assert PASSWORD not in json.dumps(failed["status"])


class _Hanging:
    """A TCP server that accepts and never answers: a git server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[_Hanging]:
    server = _Hanging()
    yield server
    server.close()


async def test_a_fetch_that_times_out_is_reported_without_the_urls_password(
    harness: Harness, hanging: _Hanging
) -> None:
    url = f"http://{GIT_USER[0]}:{PASSWORD}@127.0.0.1:{hanging.port}/hangs.git"
    obj: dict[str, Any] = article(url)
    obj["spec"]["timeout"] = "2s"
    await harness.apply(obj)

    delay, failed = await harness.reconcile()

    assert delay is not None  # retried
    ready = condition(failed, "Ready")
    assert "timed out after 2s" in ready["message"]
    assert f"http://127.0.0.1:{hanging.port}/hangs.git" in ready["message"]
    assert PASSWORD not in json.dumps(failed["status"])
