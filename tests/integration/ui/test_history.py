"""The diff between two deployed revisions, drift attribution and hook Pods' logs, through
the API against the real control plane, git server and in-process controller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import create_app, eventually
from tests.integration.ui.conftest import PASSWORDS, RunningServer, login
from tests.integration.ui.test_api import bearer, project

pytestmark = pytest.mark.integration

OLD_SECRET, NEW_SECRET = "first-secret-value-1", "second-secret-value-2"


def secret(value: str) -> str:
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-password\n"
        f"stringData:\n  password: {value}\n"
    )


HOOK = """apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  annotations:
    argocd.argoproj.io/hook: PostSync
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: smoke, image: registry.invalid/smoke:1}]
"""


async def sync_and_wait(
    client: httpx.AsyncClient,
    server: RunningServer,
    api: Kube,
    token: str,
    entries: int,
    revision: str,
) -> dict[str, Any]:
    ns = server.namespace
    r = await client.post(
        f"{server.url}/api/v1/applications/hist/sync",
        json={"appNamespace": ns, "revision": revision},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text

    async def done() -> dict[str, Any] | None:
        app = await api.get("argoproj.io/v1alpha1", "Application", "hist", ns) or {}
        status = app.get("status") or {}
        state = status.get("operationState") or {}
        if state.get("phase") in ("Failed", "Error"):
            raise AssertionError(state)
        if len(status.get("history") or []) != entries:
            return None
        # The request is cleared by a write after the status one; until then a new sync
        # is refused as "another operation is already in progress".
        return status if "operation" not in app else None

    return await eventually(done, timeout=180, what=f"history entry {entries - 1}")


async def test_revision_diff_drift_and_hook_logs(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    ns, url = server.namespace, server.url
    params = {"appNamespace": ns}
    v1 = git_repo.commit_and_push(
        {
            "app/cm.yaml": configmap("ui-cm", v="1"),
            "app/secret.yaml": secret(OLD_SECRET),
            "app/hook.yaml": HOOK,
        },
        "v1",
    )
    await project(api, ns, "default")
    await create_app(api, ns, "hist", public_url(git_repo))

    async def cached() -> bool:
        return server.service.state.get("applications", ns, "hist") is not None

    await eventually(cached, timeout=20, what="the app in the server's cache")
    async with httpx.AsyncClient(timeout=120) as client:
        token = await login(client, url, "deployer", PASSWORDS["deployer"])
        await sync_and_wait(client, server, api, token, 1, v1)
        v2 = git_repo.commit_and_push(
            {
                "app/cm.yaml": configmap("ui-cm", v="2"),
                "app/secret.yaml": secret(NEW_SECRET),
                "app/new.yaml": configmap("new-cm", k="x"),
            },
            "v2",
        )
        status = await sync_and_wait(client, server, api, token, 2, v2)
        first, second = status["history"]
        assert (first["revision"], second["revision"]) == (v1, v2)

        # -- the diff between the two deployed revisions ---------------------------------
        r = await client.get(
            f"{url}/api/v1/applications/hist/revisions/diff",
            params={**params, "from": first["id"], "to": second["id"]},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        assert OLD_SECRET not in r.text
        assert NEW_SECRET not in r.text
        items = {(i["kind"], i["name"]): i for i in r.json()["items"]}
        assert items[("ConfigMap", "new-cm")]["change"] == "added"
        changed = items[("ConfigMap", "ui-cm")]
        assert changed["change"] == "changed"
        assert changed["paths"] == ["/data/v"]
        assert "-  v: '1'" in changed["diff"]
        assert "+  v: '2'" in changed["diff"]
        assert items[("Secret", "db-password")]["change"] == "changed"  # masked, but changed
        assert r.json()["to"]["revision"] == second["revision"]
        missing = await client.get(
            f"{url}/api/v1/applications/hist/revisions/diff",
            params={**params, "from": 0, "to": 7},
            headers=bearer(token),
        )
        assert missing.status_code == 404

        # -- who changed a drifted field -------------------------------------------------
        await api.merge_patch(
            "v1", "ConfigMap", "ui-cm", {"data": {"v": "3"}}, ns, field_manager="kubectl-edit"
        )

        async def attributed() -> list[dict[str, Any]] | None:
            d = await client.get(
                f"{url}/api/v1/applications/hist/drift", params=params, headers=bearer(token)
            )
            assert d.status_code == 200, d.text
            rows = [i for i in d.json()["items"] if i["manager"] == "kubectl-edit"]
            return rows or None

        (row,) = await eventually(attributed, timeout=60, what="the drift attributed")
        assert row["field"] == "/data/v"
        assert "ConfigMap" in row["resource"]
        assert row["operation"] == "Update"
        assert row["time"]
        page = await client.get(f"{url}/applications/{ns}/hist/diff", headers=bearer(token))
        assert page.status_code == 200
        assert "kubectl-edit" in page.text

        # -- hook Pods' logs -------------------------------------------------------------
        async def hook_pod() -> dict[str, Any] | None:
            tree = await client.get(
                f"{url}/api/v1/applications/hist/resource-tree",
                params=params,
                headers=bearer(token),
            )
            for node in tree.json()["nodes"]:
                parents = node.get("parentRefs") or []
                if node["kind"] == "Pod" and parents and parents[0]["name"] == "smoke":
                    return dict(node)
            return None

        pod = await eventually(hook_pod, timeout=60, what="the PostSync Job's Pod in the tree")
        logs = await client.get(
            f"{url}/api/v1/applications/hist/logs",
            params={**params, "namespace": pod["namespace"], "podName": pod["name"]},
            headers=bearer(token),
        )
        assert logs.status_code == 200, logs.text
        body = logs.json()
        # kwok's Pods have no kubelet behind them: the API server's answer is shown.
        assert body["available"] is False, body
        assert body["message"]
        assert body["podName"] == pod["name"]
        html = await client.get(
            f"{url}/applications/{ns}/hist/logs",
            params={"namespace": pod["namespace"], "podName": pod["name"]},
            headers=bearer(token),
        )
        assert 'data-testid="no-logs"' in html.text
        # A Pod that is not this app's: refused before any request for it.
        other = await client.get(
            f"{url}/api/v1/applications/hist/logs",
            params={**params, "namespace": "kube-system", "podName": "kube-apiserver"},
            headers=bearer(token),
        )
        assert other.status_code == 404, other.text
        # The RBAC resource is logs: a user without it is refused.
        alice = await login(client, url, "reader", PASSWORDS["reader"])
        read = await client.get(
            f"{url}/api/v1/applications/hist/logs",
            params={**params, "namespace": pod["namespace"], "podName": pod["name"]},
            headers=bearer(alice),
        )
        assert read.status_code == 200  # role:readonly may get logs, as in Argo CD
