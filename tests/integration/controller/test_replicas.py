"""Several controller replicas (leader election) and a controller killed mid-sync."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    app_status,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.tasks import dump_line

pytestmark = pytest.mark.integration
T = TypeVar("T")
GATE_NODE = "kwok-node-0"  # a node of the dev cluster (two kwok nodes)


async def test_two_replicas_never_sync_the_same_app_at_once(
    api: Kube, control_ns: str, git_repo: Workdir, tmp_path: Path, crds_installed: None
) -> None:
    first = await start_controller(api, control_ns, tmp_path, leader_elect=True, identity="r1")
    second = await start_controller(api, control_ns, tmp_path, leader_elect=True, identity="r2")
    try:
        git_repo.commit_and_push({"app/cm.yaml": configmap("shared", v="1")}, "v1")
        for n in range(3):
            await create_app(
                api,
                control_ns,
                f"app{n}",
                public_url(git_repo),
                syncPolicy=AUTOMATED,
                source={
                    "repoURL": public_url(git_repo),
                    "path": "app",
                    "targetRevision": "main",
                    "kustomize": {"nameSuffix": f"-{n}"},
                },
            )
        git_repo.commit_and_push({"app/kustomization.yaml": "resources: [cm.yaml]\n"}, "k")

        async def all_synced() -> bool:
            for n in range(3):
                if await api.get("v1", "ConfigMap", f"shared-{n}", control_ns) is None:
                    return False
            return True

        await eventually(all_synced, timeout=60, what="three apps synced")
        leaders = [r for r in (first, second) if r.controller.leading.is_set()]
        assert len(leaders) == 1
        leader = leaders[0]
        follower = second if leader is first else first
        events = await api.list("v1", "Event", control_ns)
        starters = {e.get("reportingInstance") for e in events if e["reason"] == "OperationStarted"}
        assert starters == {leader.controller.options.identity}

        # The leader goes away; the other replica takes over and keeps delivering.
        await stop_controller(leader)
        await eventually(lambda: _leading(follower), timeout=30, what="takeover")
        git_repo.commit_and_push({"app/cm.yaml": configmap("shared", v="2")}, "v2")

        async def v2_everywhere() -> bool:
            for n in range(3):
                cm = await api.get("v1", "ConfigMap", f"shared-{n}", control_ns)
                if cm is None or cm["data"]["v"] != "2":
                    return False
            return True

        # No webhook here: the new leader's first pass after taking over sees the commit.
        await eventually(v2_everywhere, timeout=60, what="follower syncs after takeover")
    finally:
        for running in (first, second):
            await stop_controller(running)


async def _leading(running: object) -> bool:
    return bool(running.controller.leading.is_set())  # type: ignore[attr-defined]


def _spawn_controller(cluster: Cluster, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    (port,) = free_ports(1)
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitsail",
                "controller",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                namespace,
                "--no-leader-elect",
                "--listen",
                f"127.0.0.1:{port}",
                "--resync",
                "30",
                "--jitter",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _explained(
    wait: Awaitable[T],
    proc: subprocess.Popen[bytes],
    log: Path,
    state: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """``wait``; when it fails, the spawned controller's log with where its tasks wait
    (``kill -USR1`` makes it log them), and ``state`` (what the test waited on) then."""
    try:
        return await wait
    except AssertionError as exc:
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            with contextlib.suppress(AssertionError):
                await eventually(
                    lambda: _logged(log, "asyncio tasks"), timeout=10, what="task dump"
                )
        text = _read(log)
        print(text[-20000:])
        dump = text.rfind(" asyncio tasks\n")
        tail = [line[:200] for line in text[: dump if dump >= 0 else None].splitlines()[-8:]]
        # One line, so that the failure's summary (the end of CI's output) has it.
        then = f" | then: {json.dumps(await state(), default=str)[:1500]}" if state else ""
        raise AssertionError(
            f"{exc}{then} | exit: {proc.poll()} | controller log: {' / '.join(tail)} | "
            f"its tasks: {dump_line(text)}"
        ) from exc


async def _logged(log: Path, text: str) -> bool:
    return text in _read(log)


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _deployment(name: str, wave: int, gate: str = "") -> str:
    """A Deployment in ``wave``; with ``gate``, its pod is placed only on a node with that
    label (``open``): it becomes Available only once the test opens the gate."""
    selector = f", nodeSelector: {{{gate}: open}}" if gate else ""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{argocd.argoproj.io/sync-wave: "{wave}"}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: registry.invalid/{name}:1}}]{selector}}}
"""


@pytest.fixture
async def gate(api: Kube, control_ns: str) -> AsyncIterator[str]:
    """A node label key of this test only; the node loses it afterwards."""
    key = f"gate.gitsail.test/{hashlib.sha256(control_ns.encode()).hexdigest()[:12]}"
    try:
        yield key
    finally:
        with contextlib.suppress(Exception):
            await api.merge_patch("v1", "Node", GATE_NODE, {"metadata": {"labels": {key: None}}})


async def test_controller_killed_mid_sync_finishes_the_operation_after_restart(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
    gate: str,
) -> None:
    # Five waves, each waiting for a Deployment to become Available; the third one's pod
    # is placed only once the test opens its gate: the sync waits there (without the gate,
    # five waves on kwok nodes can finish within a second, before the kill).
    files = {f"app/d{w}.yaml": _deployment(f"step{w}", w, gate if w == 2 else "") for w in range(5)}
    git_repo.commit_and_push(files, "five waves")
    log = tmp_path / "controller.log"
    proc = _spawn_controller(cluster, control_ns, log)
    try:
        await create_app(api, control_ns, "interrupted", public_url(git_repo), syncPolicy=AUTOMATED)

        async def waiting_at_the_gate() -> bool:
            status = await app_status(api, control_ns, "interrupted")
            state = status.get("operationState") or {}
            return state.get("phase") == "Running" and "step2" in str(state.get("message"))

        async def app() -> object:
            return await app_status(api, control_ns, "interrupted")

        await _explained(
            eventually(waiting_at_the_gate, timeout=60, what="operation Running, at wave 2"),
            proc,
            log,
            app,
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        status = await app_status(api, control_ns, "interrupted")
        obj = await api.get("argoproj.io/v1alpha1", "Application", "interrupted", control_ns)
        assert obj is not None
        assert status["operationState"]["phase"] == "Running"
        assert "operation" in obj, "the requested operation survives the crash"
        assert await api.get("apps/v1", "Deployment", "step4", control_ns) is None

        await api.merge_patch("v1", "Node", GATE_NODE, {"metadata": {"labels": {gate: "open"}}})
        proc = _spawn_controller(cluster, control_ns, log)

        async def finished() -> bool:
            state = (await app_status(api, control_ns, "interrupted")).get("operationState")
            return bool(state) and state.get("phase") == "Succeeded"

        await _explained(
            eventually(finished, timeout=90, what="operation finished after restart"),
            proc,
            log,
            app,
        )
        for w in range(5):
            assert await api.get("apps/v1", "Deployment", f"step{w}", control_ns) is not None
        obj = await api.get("argoproj.io/v1alpha1", "Application", "interrupted", control_ns)
        assert obj is not None
        assert "operation" not in obj
        # `kill -USR1` logs where each task waits, and the controller goes on.
        assert "asyncio tasks" not in _read(log)
        proc.send_signal(signal.SIGUSR1)
        await eventually(lambda: _logged(log, "asyncio tasks"), timeout=10, what="task dump")
        assert "gitsail-worker" in _read(log)  # the reconcile workers, named
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.sleep(0)
