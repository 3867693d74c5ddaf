"""Fault-injection fixtures: a private control plane whose processes the tests may kill,
restart and pause, and helpers that do it.

The fault suite never runs against a shared cluster (``GITSAIL_TEST_CLUSTER`` is ignored):
restarting an apiserver or pausing etcd would break whatever else uses it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev import cluster as devcluster
from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube, load_kubeconfig

# The integration suite's fixtures (namespace, git server, repos, CRDs, control namespace),
# re-exported so pytest finds them here; ``cluster`` below replaces theirs.
from tests.integration.conftest import git_repo, git_server, kube, namespace
from tests.integration.controller.conftest import api, control_ns, crds_installed
from tests.integration.controller_process import ControllerProcess

__all__ = [
    "api",
    "control_ns",
    "crds_installed",
    "git_repo",
    "git_server",
    "kube",
    "namespace",
]

PROBE_BUDGET = 2.0  # seconds a liveness probe may take while a fault is in progress


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    name = f"faults-{os.getpid()}"
    c = devcluster.up(name, nodes=2)
    try:
        yield c
    finally:
        devcluster.down(name)


def _record(cluster: Cluster, role: str) -> devcluster.ProcessRecord:
    return next(p for p in cluster.processes if p.role == role)


def restart(cluster: Cluster, role: str, *, sig: int = signal.SIGKILL) -> None:
    """Kill one process of the cluster and start it again with the same argv."""
    record = _record(cluster, role)
    argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(record.pid, sig)
    deadline = time.monotonic() + 20
    while record.alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"{role} (pid {record.pid}) did not exit")
        time.sleep(0.05)
    cluster.processes.remove(record)
    _argv[(cluster.name, role)] = [a.decode() for a in argv]
    devcluster.spawn(cluster, role, _argv[(cluster.name, role)])


# The argv each restarted process was started with, to start it again if it dies at once:
# while nothing listens on its port, a client reconnecting to it can take that very port as
# its own source port (a TCP self-connect), and the new process fails with "address already
# in use". A kubelet restarts a crashed static pod the same way.
_argv: dict[tuple[str, str], list[str]] = {}


@contextlib.contextmanager
def paused(cluster: Cluster, role: str) -> Iterator[None]:
    """SIGSTOP one process of the cluster for the duration of the block."""
    pid = _record(cluster, role).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_api_ready(cluster: Cluster, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with cluster.http(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return
            record = _record(cluster, "kube-apiserver")
            argv = _argv.get((cluster.name, "kube-apiserver"))
            if argv is not None and not record.alive():
                cluster.processes.remove(record)
                devcluster.spawn(cluster, "kube-apiserver", argv)
            time.sleep(0.2)
    record = _record(cluster, "kube-apiserver")
    log = Path(record.log).read_text(errors="replace").splitlines()[-20:]
    raise AssertionError(
        f"kube-apiserver not ready after {timeout}s (alive: {record.alive()}):\n" + "\n".join(log)
    )


async def probe_seconds(url: str) -> float:
    """How long /healthz takes to answer 200 (fails the test when it does not)."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=PROBE_BUDGET * 2) as client:
        response = await client.get(f"{url}/healthz")
    assert response.status_code == 200, response.text
    return time.monotonic() - started


@pytest.fixture
async def fresh_api(cluster: Cluster) -> AsyncIterator[Kube]:
    """A client opened after any restart earlier in the test (new connections)."""
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as client:
        yield client


@pytest.fixture
def controller_process(
    cluster: Cluster, control_ns: str, tmp_path: Path, crds_installed: None
) -> Iterator[Any]:
    started: list[ControllerProcess] = []

    def start() -> ControllerProcess:
        proc = ControllerProcess(
            cluster,
            control_ns,
            tmp_path / f"controller-{len(started)}.log",
            env={"GITSAIL_ALLOW_FILE_URLS": "true"},
        )
        started.append(proc)
        proc.wait_up()
        return proc

    yield start
    for proc in started:
        proc.kill()
