"""The reconcile loop under failure and change, on the real cluster: a failing app does not
spin, health follows a status-only change within seconds, and sync retries back off as
Argo CD's do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_appproject import default_project_object
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    RunningController,
    app_status,
    create_app,
    eventually,
)

pytestmark = pytest.mark.integration

APPLICATION = "argoproj.io/v1alpha1"


def _reconciles(running: RunningController, namespace: str) -> float:
    registry = running.controller.metrics.registry
    value = registry.get_sample_value(
        "gitsail_app_reconcile_duration_seconds_count", {"namespace": namespace}
    )
    return value or 0.0


def _comparison_error(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "ComparisonError":
            return str(condition.get("message") or "")
    return ""


async def test_a_failing_kustomization_backs_off_and_its_status_stays_put(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push(
        {
            "app/kustomization.yaml": "resources:\n  - cm.yaml\n  - missing.yaml\n",
            "app/cm.yaml": configmap("c", a="1"),
        },
        "broken",
    )
    # The project exists first: its creation on first use (by the controller) is an event
    # of its own, which may re-queue the app; this test is about the app's own writes.
    await api.create(default_project_object(control_ns))
    await create_app(api, control_ns, "broken", public_url(git_repo), syncPolicy=AUTOMATED)

    async def failing() -> str:
        return _comparison_error(await app_status(api, control_ns, "broken"))

    message = await eventually(failing, timeout=30, what="ComparisonError condition")
    assert "missing.yaml" in message
    assert "gitsail-render" not in message, "a private work-dir path in the message"
    assert "/src/" not in message, "a private work-dir path in the message"
    # The comparison that failed wrote the condition; that write of its own status must not
    # wake the app (backoff aside, a status that changed on every reconcile made it spin).
    await asyncio.sleep(3)  # less than the first 5 s backoff
    assert _reconciles(running, control_ns) == 1, "the app's own status write woke it"
    app = await api.get(APPLICATION, "Application", "broken", control_ns)
    assert app is not None
    version = app["metadata"]["resourceVersion"]
    before = _reconciles(running, control_ns)
    await asyncio.sleep(12)  # measuring a rate over a window, not waiting for a state
    reconciles = _reconciles(running, control_ns) - before
    # 5 s, then 10 s of backoff: at most two more comparisons in 12 s (it spun at ~20/s).
    assert reconciles <= 3, f"{reconciles} reconciles of a failing app in 12 s"
    app = await api.get(APPLICATION, "Application", "broken", control_ns)
    assert app is not None
    assert app["metadata"]["resourceVersion"] == version, "an unchanged error was rewritten"
    assert _comparison_error(app["status"]) == message


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: slow}
spec:
  replicas: 1
  minReadySeconds: 8
  selector: {matchLabels: {app: slow}}
  template:
    metadata: {labels: {app: slow}}
    spec: {containers: [{name: app, image: registry.invalid/slow:1}]}
"""


async def test_health_follows_a_deployment_becoming_available_without_a_poll(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/d.yaml": DEPLOYMENT}, "slow deployment")
    await create_app(api, control_ns, "slow", public_url(git_repo), syncPolicy=AUTOMATED)

    async def progressing() -> bool:
        status = await app_status(api, control_ns, "slow")
        return (status.get("operationState") or {}).get("phase") == "Succeeded" and (
            status.get("health") or {}
        ).get("status") == "Progressing"

    await eventually(progressing, timeout=30, what="synced and Progressing")

    async def available() -> bool:
        d = await api.get("apps/v1", "Deployment", "slow", control_ns)
        conditions = ((d or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    # minReadySeconds keeps it Progressing well past the controller's post-sync look.
    await eventually(available, timeout=60, what="Deployment Available")
    became_available = time.monotonic()

    async def healthy() -> bool:
        status = await app_status(api, control_ns, "slow")
        return (status.get("health") or {}).get("status") == "Healthy"

    # The periodic refresh is 30 s away: only the status change can make this in time.
    await eventually(healthy, timeout=8, what="app Healthy from the Deployment's status")
    assert time.monotonic() - became_available < 8


async def test_sync_retries_are_spaced_and_a_namespace_created_meanwhile_is_picked_up(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    target = f"{control_ns}-late"
    git_repo.commit_and_push({"app/cm.yaml": configmap("later", a="1")}, "c")
    await create_app(
        api,
        control_ns,
        "backoff",
        public_url(git_repo),
        destination={"server": "https://kubernetes.default.svc", "namespace": target},
        syncPolicy={
            "automated": {"prune": True},
            "retry": {"limit": 5, "backoff": {"duration": "5s", "factor": 2}},
        },
    )

    async def operation_state() -> dict[str, Any]:
        return (await app_status(api, control_ns, "backoff")).get("operationState") or {}

    async def first_retry_scheduled() -> dict[str, Any] | None:
        state = await operation_state()
        return state if state.get("retryCount") == 1 and state.get("finishedAt") else None

    state = await eventually(first_retry_scheduled, timeout=30, what="retry #1 scheduled")
    failed = time.monotonic()
    assert state["phase"] == "Running"  # Argo CD: the operation runs on through its retries
    assert "Retrying attempt #1 in 5s" in state["message"]
    # Within the 5 s backoff nothing is retried (it retried four times within 1.3 s).
    for _ in range(10):
        await asyncio.sleep(0.25)
        assert (await operation_state()).get("retryCount") == 1
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
    try:

        async def succeeded() -> dict[str, Any] | None:
            state = await operation_state()
            return state if state.get("phase") == "Succeeded" else None

        state = await eventually(succeeded, timeout=30, what="retry #1 succeeds")
        assert time.monotonic() - failed >= 3.5  # finishedAt is kept to the second
        assert state["retryCount"] == 1
        assert await api.get("v1", "ConfigMap", "later", target) is not None
    finally:
        await api.delete("v1", "Namespace", target)
