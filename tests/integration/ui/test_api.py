"""The JSON API against the real control plane: sign-in, RBAC, actions through the
controller, the tree, the diff with a masked Secret, events, SSE, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Conflict, Kube
from gitsail.server.auth import issue_token
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import app_status, create_app, eventually
from tests.integration.ui.conftest import PASSWORDS, RunningServer, login

pytestmark = pytest.mark.integration

SECRET_VALUE = "hunter2-do-not-show"
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  password: {SECRET_VALUE}
"""


async def project(api: Kube, namespace: str, name: str) -> None:
    with contextlib.suppress(Conflict):  # the controller may have made "default" already
        await api.create(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AppProject",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"server": "*", "namespace": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            }
        )


async def two_apps(api: Kube, server: RunningServer, git_repo: Workdir) -> None:
    ns = server.namespace
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("ui-cm", v="1"), "app/secret.yaml": SECRET}, "v1"
    )
    await project(api, ns, "default")
    await project(api, ns, "team-a")
    await create_app(api, ns, "a-web", public_url(git_repo), project="team-a")
    await create_app(api, ns, "b-web", public_url(git_repo))

    async def cached() -> bool:
        return all(server.service.state.get("applications", ns, n) for n in ("a-web", "b-web"))

    await eventually(cached, timeout=20, what="apps in the server's cache")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sign_in_and_bad_input(server: RunningServer) -> None:
    url = server.url
    async with httpx.AsyncClient(timeout=30) as client:
        wrong = await client.post(
            f"{url}/api/v1/session", json={"username": "admin", "password": "x"}
        )
        assert wrong.status_code == 401
        assert (await client.get(f"{url}/api/v1/applications")).status_code == 401
        token = await login(client, url, "admin", server.admin_password)
        info = await client.get(f"{url}/api/v1/session/userinfo", headers=bearer(token))
        assert info.json()["username"] == "admin"

        missing = await client.get(
            f"{url}/api/v1/applications/nope",
            params={"appNamespace": server.namespace},
            headers=bearer(token),
        )
        assert missing.status_code == 404
        assert (
            missing.json()["message"]
            == f"application nope not found in namespace {server.namespace}"
        )

        malformed = await client.post(
            f"{url}/api/v1/applications/nope/sync", content=b"{not json", headers=bearer(token)
        )
        assert malformed.status_code == 422
        assert "malformed JSON" in malformed.json()["message"]

        key = server.service.signing_key()
        expired, _ = issue_token(key, "admin", seconds=60, now=time.time() - 3600)
        gone = await client.get(f"{url}/api/v1/applications", headers=bearer(expired))
        assert gone.status_code == 401
        assert "expired" in gone.json()["message"]

        # Logout revokes the session token.
        assert (
            await client.delete(f"{url}/api/v1/session", headers=bearer(token))
        ).status_code == 200
        assert (
            await client.get(f"{url}/api/v1/applications", headers=bearer(token))
        ).status_code == 401

        docs = await client.get(f"{url}/api/docs/openapi.json")
        assert "/api/v1/applications/{name}/sync" in docs.json()["paths"]


async def test_rbac_limits_lists_gets_actions_and_streams(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    await two_apps(api, server, git_repo)
    url, ns = server.url, server.namespace
    params = {"appNamespace": ns}
    async with httpx.AsyncClient(timeout=30) as client:
        reader = await login(client, url, "reader", PASSWORDS["reader"])
        listed = await client.get(f"{url}/api/v1/applications", headers=bearer(reader))
        assert {a["metadata"]["name"] for a in listed.json()["items"]} == {"a-web", "b-web"}
        denied = await client.post(
            f"{url}/api/v1/applications/a-web/sync",
            json={"appNamespace": ns},
            headers=bearer(reader),
        )
        assert denied.status_code == 403, denied.text
        assert (await api.get("argoproj.io/v1alpha1", "Application", "a-web", ns) or {}).get(
            "operation"
        ) is None

        alice = await login(client, url, "alice", PASSWORDS["alice"])
        listed = await client.get(f"{url}/api/v1/applications", headers=bearer(alice))
        assert [a["metadata"]["name"] for a in listed.json()["items"]] == ["a-web"]
        hidden = await client.get(
            f"{url}/api/v1/applications/b-web", params=params, headers=bearer(alice)
        )
        assert hidden.status_code == 404
        other_sync = await client.post(
            f"{url}/api/v1/applications/b-web/sync",
            json={"appNamespace": ns},
            headers=bearer(alice),
        )
        assert other_sync.status_code == 404

        # The stream shows alice her app, never the other one, also when both change.
        seen: list[str] = []

        async def read_stream() -> None:
            async with client.stream(
                "GET", f"{url}/api/v1/stream/applications", headers=bearer(alice), timeout=60
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])["result"]
                        seen.append(event["application"]["metadata"]["name"])
                        if seen.count("a-web") >= 2:
                            return

        reader_task = asyncio.create_task(read_stream())
        await asyncio.sleep(0)
        for name in ("b-web", "a-web"):
            await api.merge_patch(
                "argoproj.io/v1alpha1",
                "Application",
                name,
                {"metadata": {"labels": {"touched": "yes"}}},
                ns,
            )
        await asyncio.wait_for(reader_task, 30)
        assert set(seen) == {"a-web"}


async def test_sync_tree_diff_and_events(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    await two_apps(api, server, git_repo)
    url, ns = server.url, server.namespace
    params = {"appNamespace": ns}
    async with httpx.AsyncClient(timeout=60) as client:
        token = await login(client, url, "deployer", PASSWORDS["deployer"])
        diff = await client.get(
            f"{url}/api/v1/applications/b-web/managed-resources",
            params=params,
            headers=bearer(token),
        )
        assert diff.status_code == 200, diff.text
        kinds = {(i["kind"], i["name"]) for i in diff.json()["items"]}
        assert {("ConfigMap", "ui-cm"), ("Secret", "app-secret")} <= kinds
        assert SECRET_VALUE not in diff.text
        assert all(i["modified"] for i in diff.json()["items"])

        # A double click: two identical requests, one operation, one deployment.
        body = {"appNamespace": ns, "prune": True}
        first, second = await asyncio.gather(
            client.post(f"{url}/api/v1/applications/b-web/sync", json=body, headers=bearer(token)),
            client.post(f"{url}/api/v1/applications/b-web/sync", json=body, headers=bearer(token)),
        )
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        assert first.json()["operation"]["initiatedBy"]["username"] == "deployer"

        async def synced() -> dict[str, Any] | None:
            status = await app_status(api, ns, "b-web")
            phase = (status.get("operationState") or {}).get("phase")
            if phase in ("Failed", "Error"):
                raise AssertionError(status["operationState"])
            return (
                status
                if (status.get("sync") or {}).get("status") == "Synced" and phase == "Succeeded"
                else None
            )

        status = await eventually(synced, timeout=120, what="b-web Synced")
        assert len(status.get("history") or []) == 1
        assert await api.get("v1", "ConfigMap", "ui-cm", ns) is not None

        async def tree() -> list[dict[str, Any]] | None:
            response = await client.get(
                f"{url}/api/v1/applications/b-web/resource-tree",
                params=params,
                headers=bearer(token),
            )
            nodes: list[dict[str, Any]] = response.json()["nodes"]
            return (
                nodes
                if any(n["kind"] == "ConfigMap" and n["name"] == "ui-cm" for n in nodes)
                else None
            )

        nodes = await eventually(tree, timeout=30, what="the tree from the server's cache")
        assert SECRET_VALUE not in json.dumps(nodes)

        events = await client.get(
            f"{url}/api/v1/applications/b-web/events", params=params, headers=bearer(token)
        )
        messages = [e.get("message", "") for e in events.json()["items"]]
        assert any("deployer initiated sync" in m for m in messages), messages


async def test_api_tokens_are_revocable(server: RunningServer) -> None:
    url = server.url
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, url, "admin", server.admin_password)
        created = await client.post(
            f"{url}/api/v1/account/deployer/token", json={}, headers=bearer(admin)
        )
        assert created.status_code == 200, created.text
        token, token_id = created.json()["token"], created.json()["id"]

        async def works() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 200

        await eventually(works, timeout=20, what="the new API token accepted")
        revoked = await client.delete(
            f"{url}/api/v1/account/deployer/token/{token_id}", headers=bearer(admin)
        )
        assert revoked.status_code == 200

        async def refused() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 401

        await eventually(refused, timeout=20, what="the revoked token refused")
