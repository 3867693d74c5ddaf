"""A controller killed in the middle of a sync resumes it: a PreSync hook runs once.

``gitsail controller`` runs as a real process against the test's namespace. The operation
runs a PreSync Job hook (``generateName``: every run is a new Job, so runs can be counted;
kwok completes its pod), a wave-0 ConfigMap, a wave-1 Deployment whose pods need a node
label no node has yet (the gate), and a wave-2 ConfigMap, so the operation waits for the
Deployment. The controller is SIGKILLed while it waits, another one starts, the gate opens
(the test's own label on one kwok node, removed afterwards), and the operation must end
Succeeded with the hook run exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.app.conftest import public_url
from tests.integration.controller_process import ControllerProcess

pytestmark = pytest.mark.integration

T = TypeVar("T")
NODE = "kwok-node-0"
HOOK = """apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: registry.invalid/migrate:1
"""


def configmap(name: str, wave: int) -> str:
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  annotations:
    argocd.argoproj.io/sync-wave: "{wave}"
data:
  wave: "{wave}"
"""


def gated_deployment(gate: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    argocd.argoproj.io/sync-wave: "1"
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      nodeSelector:
        {gate}: open
      containers:
        - name: web
          image: registry.invalid/web:1
"""


@pytest.fixture
def controllers(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Any]:
    started: list[ControllerProcess] = []

    async def start() -> ControllerProcess:
        proc = ControllerProcess(cluster, namespace, tmp_path / f"controller-{len(started)}.log")
        started.append(proc)
        await proc.wait_up_async()
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
async def gate(kube_client: Kube, namespace: str) -> AsyncIterator[str]:
    """A node label key of this test only; the node loses it afterwards."""
    key = f"gate.gitsail.test/{hashlib.sha256(namespace.encode()).hexdigest()[:12]}"
    try:
        yield key
    finally:
        with contextlib.suppress(Exception):
            await kube_client.merge_patch("v1", "Node", NODE, {"metadata": {"labels": {key: None}}})


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 90, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def test_a_restarted_controller_resumes_the_sync_and_runs_a_done_presync_hook_once(
    kube_client: Kube,
    namespace: str,
    git_repo: Workdir,
    repo_secret: object,
    controllers: Callable[[], Awaitable[ControllerProcess]],
    gate: str,
) -> None:
    git_repo.commit_and_push(
        {
            "app/hook.yaml": HOOK,
            "app/config.yaml": configmap("config", 0),
            "app/web.yaml": gated_deployment(gate),
            "app/after.yaml": configmap("after", 2),
        },
        "hook, waves and a gated deployment",
    )
    await kube_client.create(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "resumed", "namespace": namespace},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": public_url(git_repo),
                    "path": "app",
                    "targetRevision": "main",
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            },
            "operation": {
                "sync": {"revision": "main"},
                "initiatedBy": {"username": "test"},
            },
        }
    )

    async def state() -> dict[str, Any]:
        app = await kube_client.get("argoproj.io/v1alpha1", "Application", "resumed", namespace)
        return dict(((app or {}).get("status") or {}).get("operationState") or {})

    async def hook_runs() -> list[Obj]:
        jobs = await kube_client.list("batch/v1", "Job", namespace)
        return [j for j in jobs if j["metadata"]["name"].startswith("migrate-")]

    first = await controllers()

    async def waiting_for_web() -> dict[str, Any] | None:
        s = await state()
        waiting = str(s.get("message", "")).startswith(
            "waiting for healthy state of apps/Deployment/web"
        )
        return s if waiting and s.get("phase") == "Running" else None

    waiting = await eventually(
        waiting_for_web, what=f"the operation to wait for web ({first.output()})"
    )
    assert waiting["progress"] == {"syncPhase": "Sync", "wave": 1}
    hooks = [r for r in waiting["syncResult"]["resources"] if r.get("hookType") == "PreSync"]
    assert [h["hookPhase"] for h in hooks] == ["Succeeded"]
    assert len(await hook_runs()) == 1

    first.kill()
    second = await controllers()

    async def resumed() -> bool:
        # (Or started over: then the hook runs again, which the assertions below catch.)
        return "resuming the sync of" in second.output() or len(await hook_runs()) > 1

    await eventually(resumed, what="the second controller to resume the operation")
    await kube_client.merge_patch("v1", "Node", NODE, {"metadata": {"labels": {gate: "open"}}})

    async def finished() -> dict[str, Any] | None:
        s = await state()
        return s if s.get("phase") in ("Succeeded", "Failed", "Error") else None

    done = await eventually(finished, what=f"the operation to finish ({second.output()})")
    assert done["phase"] == "Succeeded", done.get("message")
    runs = await hook_runs()
    assert len(runs) == 1, [j["metadata"]["name"] for j in runs]
    rows = {(r["syncPhase"], r["name"]): r for r in done["syncResult"]["resources"]}
    hook = rows[("PreSync", runs[0]["metadata"]["name"])]
    assert (hook["hookPhase"], hook["uid"]) == ("Succeeded", runs[0]["metadata"]["uid"])
    assert {("Sync", "config"), ("Sync", "web"), ("Sync", "after")} <= set(rows)
    assert "progress" not in done
    assert await kube_client.get("v1", "ConfigMap", "after", namespace) is not None
