"""Session fixtures: one real control plane and one git server per pytest session.

Set GITSAIL_TEST_CLUSTER=<name> to run against (and keep) a named dev cluster, which makes
repeated local runs start in a second; otherwise a private cluster is started and removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import GitServer, Workdir
from tests.integration.helpers import Kube
from tests.integration.tasks import tasks_line

GIT_USER = ("gitsail-test", "s3cret-pass")
# Seconds a test's tasks have to end after its fixtures are torn down.
LEAK_GRACE_S = 5.0
# The tests' event loop (one per session), for the report of a test that timed out.
_LOOP: list[asyncio.AbstractEventLoop] = []


def _remove_orphans() -> None:
    """Remove test clusters left by pytest sessions that were killed."""
    for c in devcluster.list_clusters():
        match = re.fullmatch(r"pytest-(\d+)", c.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            devcluster.down(c.name)


class _Records(logging.Handler):
    """The messages logged at ERROR or above while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
async def _no_task_outlives_its_test(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test shares one event loop: a task a test leaves running (a watch of a
    controller it stopped, a request nobody awaits) works on during the tests after it.
    Set up first, torn down last: what the test started should have ended a few seconds
    after its own fixtures are gone; what has not is cancelled (waiting a bounded time for
    it) and reported as a warning with where it waited. (A warning, not a failure, until
    the servers of the UI tests, whose browser keeps connections open, end within it.)"""
    _LOOP[:] = [asyncio.get_running_loop()]
    before = set(asyncio.all_tasks())
    stuck = _Records()
    stacks_log = logging.getLogger("gitsail.controller.stacks")
    stacks_log.addHandler(stuck)
    try:
        yield
    finally:
        stacks_log.removeHandler(stuck)
    for message in stuck.messages:  # a controller's stop left a task that would not end
        warnings.warn(f"{request.node.nodeid}: {' / '.join(message.splitlines())}", stacklevel=1)
    me = asyncio.current_task()
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        left = [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    if left:
        report = tasks_line(left)
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=LEAK_GRACE_S)  # bounded: a task may refuse to end
        warnings.warn(
            f"{request.node.nodeid} left {len(left)} asyncio tasks running: {report}",
            stacklevel=1,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test stopped by pytest-timeout (the loop idle, something awaited forever): where
    each of the loop's tasks waits, added to the failure's summary line."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    excinfo = call.excinfo
    if not report.failed or excinfo is None or not _LOOP:
        return
    if "pytest-timeout" not in str(excinfo.value):
        return
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        crash.message += f" | asyncio tasks: {tasks_line(asyncio.all_tasks(_LOOP[0]))}"


@pytest.fixture(scope="session")
def cluster() -> Iterator[devcluster.Cluster]:
    reuse = os.environ.get("GITSAIL_TEST_CLUSTER")
    if reuse:
        yield devcluster.up(reuse, nodes=2)
        return
    _remove_orphans()
    name = f"pytest-{os.getpid()}"
    c = devcluster.up(name, nodes=2)
    try:
        yield c
    finally:
        devcluster.down(name)


@pytest.fixture(scope="session")
def kube(cluster: devcluster.Cluster) -> Iterator[Kube]:
    with cluster.http(timeout=30) as client:
        yield Kube(client)


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    ns = kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": f"{base}-"}},
    )["metadata"]["name"]
    yield ns
    kube.client.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitServer]:
    root = Path(tempfile.mkdtemp(prefix="gitsail-git-"))
    with GitServer(root, credentials=GIT_USER) as server:
        yield server
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def git_repo(git_server: GitServer, request: pytest.FixtureRequest) -> Iterator[Workdir]:
    """A new repository on the git server and a work tree to commit and push to it."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:60]
    git_server.create_repo(name)
    work = Workdir(git_server.url(name, with_credentials=True))
    yield work
    work.close()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
