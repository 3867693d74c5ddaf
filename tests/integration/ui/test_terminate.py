"""Terminating a running sync through the API (Argo CD's DELETE .../operation): the server
writes ``operationState.phase: Terminating``, the in-process controller stops before the
next wave and ends the operation Failed, "Operation terminated"."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gitsail.cli.main import app as cli
from gitsail.cli.operation import request_operation
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import app_status, create_app, eventually
from tests.integration.ui.conftest import PASSWORDS, RunningServer, login
from tests.integration.ui.test_api import bearer, project

pytestmark = pytest.mark.integration

# Wave 0 never becomes healthy (its pods need a node label no node has); wave 1 would
# follow it.
STUCK = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  annotations:
    argocd.argoproj.io/sync-wave: "0"
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {gitsail.test/no-such-node: "true"}
      containers: [{name: c, image: registry.invalid/none:1}]
"""
LATER = configmap("later-wave", v="1").replace(
    "metadata:\n  name: later-wave",
    'metadata:\n  name: later-wave\n  annotations:\n    argocd.argoproj.io/sync-wave: "1"',
)


async def test_terminate_a_running_sync(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    ns, url = server.namespace, server.url
    git_repo.commit_and_push({"app/stuck.yaml": STUCK, "app/later.yaml": LATER}, "waves")
    await project(api, ns, "default")
    await create_app(api, ns, "slow", public_url(git_repo))

    async def cached() -> bool:
        return server.service.state.get("applications", ns, "slow") is not None

    await eventually(cached, timeout=20, what="the app in the server's cache")
    params = {"appNamespace": ns}
    async with httpx.AsyncClient(timeout=60) as client:
        token = await login(client, url, "deployer", PASSWORDS["deployer"])
        nothing = await client.delete(
            f"{url}/api/v1/applications/slow/operation", params=params, headers=bearer(token)
        )
        assert nothing.status_code == 400, nothing.text  # no operation yet
        sync = await client.post(
            f"{url}/api/v1/applications/slow/sync", json={"appNamespace": ns}, headers=bearer(token)
        )
        assert sync.status_code == 200, sync.text

        async def waiting() -> dict[str, Any] | None:
            state = (await app_status(api, ns, "slow")).get("operationState") or {}
            running = state.get("phase") == "Running"
            return state if running and "waiting for healthy" in str(state.get("message")) else None

        await eventually(waiting, timeout=90, what="the sync waiting on wave 0")
        # A read-only user may not terminate it.
        reader = await login(client, url, "reader", PASSWORDS["reader"])
        denied = await client.delete(
            f"{url}/api/v1/applications/slow/operation", params=params, headers=bearer(reader)
        )
        assert denied.status_code == 403, denied.text

        stop = await client.delete(
            f"{url}/api/v1/applications/slow/operation", params=params, headers=bearer(token)
        )
        assert stop.status_code == 200, stop.text

        async def ended() -> dict[str, Any] | None:
            state = (await app_status(api, ns, "slow")).get("operationState") or {}
            return state if state.get("phase") in ("Failed", "Error", "Succeeded") else None

        state = await eventually(ended, timeout=60, what="the operation ended")
        assert (state["phase"], state["message"]) == ("Failed", "Operation terminated")
        assert state.get("finishedAt")
        # Wave 1 never started; wave 0 was applied before the request.
        assert await api.get("v1", "ConfigMap", "later-wave", ns) is None
        assert await api.get("apps/v1", "Deployment", "stuck", ns) is not None

        # The request field is cleared by its own write after the status one (the status is a
        # subresource), so it is awaited, with a deadline, like the phase above.
        async def cleared() -> dict[str, Any] | None:
            obj = await api.get("argoproj.io/v1alpha1", "Application", "slow", ns)
            return obj if obj is not None and not obj.get("operation") else None

        obj = await eventually(cleared, timeout=30, what="the operation request cleared")
        assert not (obj.get("status") or {}).get("history")  # nothing was deployed

        events = await client.get(
            f"{url}/api/v1/applications/slow/events", params=params, headers=bearer(token)
        )
        messages = [e.get("message", "") for e in events.json()["items"]]
        assert any("deployer terminated the running operation" in m for m in messages), messages


async def test_terminate_op_cli(
    server: RunningServer, api: Kube, git_repo: Workdir, cluster: Cluster
) -> None:
    """`gitsail app terminate-op` writes the same request; the controller honours it."""
    ns = server.namespace
    git_repo.commit_and_push({"app/stuck.yaml": STUCK, "app/later.yaml": LATER}, "waves")
    await project(api, ns, "default")
    await create_app(api, ns, "slow-cli", public_url(git_repo))
    await request_operation(
        api, ns, "slow-cli", {"sync": {"revision": "main"}, "initiatedBy": {"username": "t"}}
    )

    async def waiting() -> bool:
        state = (await app_status(api, ns, "slow-cli")).get("operationState") or {}
        return state.get("phase") == "Running" and "waiting for healthy" in str(
            state.get("message")
        )

    await eventually(waiting, timeout=90, what="the sync waiting on wave 0")
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["app", "terminate-op", "slow-cli", "-N", ns, "--kubeconfig", str(cluster.kubeconfig)],
    )
    assert result.exit_code == 0, result.output
    assert "operation terminating" in result.output

    async def ended() -> dict[str, Any] | None:
        state = (await app_status(api, ns, "slow-cli")).get("operationState") or {}
        return state if state.get("phase") in ("Failed", "Error", "Succeeded") else None

    state = await eventually(ended, timeout=60, what="the operation ended")
    assert (state["phase"], state["message"]) == ("Failed", "Operation terminated")
    assert await api.get("v1", "ConfigMap", "later-wave", ns) is None
    again = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["app", "terminate-op", "slow-cli", "-N", ns, "--kubeconfig", str(cluster.kubeconfig)],
    )
    assert again.exit_code != 0
    assert "No operation is in progress" in again.output


STUCK_HOOK = """apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {gitsail.test/no-such-node: "true"}
      containers: [{name: m, image: registry.invalid/migrate:1}]
"""


async def test_terminate_deletes_the_running_hook(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    ns = server.namespace
    git_repo.commit_and_push(
        {"app/hook.yaml": STUCK_HOOK, "app/cm.yaml": configmap("after-hook", v="1")}, "hook"
    )
    await project(api, ns, "default")
    await create_app(api, ns, "hooked", public_url(git_repo))
    await request_operation(
        api, ns, "hooked", {"sync": {"revision": "main"}, "initiatedBy": {"username": "t"}}
    )

    async def waiting() -> bool:
        state = (await app_status(api, ns, "hooked")).get("operationState") or {}
        return "waiting for completion of hook" in str(state.get("message"))

    await eventually(waiting, timeout=90, what="the sync waiting on its PreSync hook")
    assert await api.get("batch/v1", "Job", "migrate", ns) is not None
    async with httpx.AsyncClient(timeout=60) as client:
        token = await login(client, server.url, "deployer", PASSWORDS["deployer"])
        stop = await client.delete(
            f"{server.url}/api/v1/applications/hooked/operation",
            params={"appNamespace": ns},
            headers=bearer(token),
        )
        assert stop.status_code == 200, stop.text

    async def ended() -> dict[str, Any] | None:
        state = (await app_status(api, ns, "hooked")).get("operationState") or {}
        return state if state.get("phase") in ("Failed", "Error", "Succeeded") else None

    state = await eventually(ended, timeout=60, what="the operation ended")
    assert state["message"] == "Operation terminated"
    (row,) = [r for r in state["syncResult"]["resources"] if r.get("hookType")]
    assert (row["hookPhase"], row["message"]) == ("Failed", "terminated")

    async def job_gone() -> bool:
        job = await api.get("batch/v1", "Job", "migrate", ns)
        return job is None or bool(job["metadata"].get("deletionTimestamp"))

    await eventually(job_gone, timeout=30, what="the hook Job deleted")
    assert await api.get("v1", "ConfigMap", "after-hook", ns) is None
