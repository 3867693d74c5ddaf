"""``gitsail server`` in-process on 127.0.0.1 next to an in-process controller, with local
accounts and an RBAC policy in the test namespace (its control namespace)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from gitsail.dev.cluster import free_ports
from gitsail.kube import Kube
from gitsail.policy import Policy
from gitsail.server.app import make_app, start_service
from gitsail.server.auth import hash_password
from gitsail.server.service import INITIAL_ADMIN_SECRET, Service
from tests.integration.controller import conftest as controller_fixtures
from tests.integration.controller.conftest import RunningController, eventually

# The controller tests' fixtures, shared: an in-process controller in the test namespace.
api = controller_fixtures.api
control_ns = controller_fixtures.control_ns
crds_installed = controller_fixtures.crds_installed
running = controller_fixtures.running

PASSWORDS = {"reader": "reader-pass-1", "alice": "alice-pass-1", "deployer": "deploy-pass-1"}
RBAC = """
p, role:team-a, applications, get, team-a/*, allow
p, role:team-a, applications, sync, team-a/*, allow
g, alice, role:team-a
g, deployer, role:admin
g, reader, role:readonly
"""


@dataclass
class RunningServer:
    url: str
    service: Service
    admin_password: str
    namespace: str


async def _accounts(api: Kube, namespace: str) -> None:
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": namespace},
            "data": {f"accounts.{n}": "login" for n in PASSWORDS}
            | {"accounts.deployer": "apiKey, login"},
        }
    )
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "namespace": namespace},
            "data": {"policy.csv": RBAC},  # no default role: alice sees team-a's apps only
        }
    )
    hashes = {
        f"accounts.{n}.password": base64.b64encode(hash_password(p).encode()).decode()
        for n, p in PASSWORDS.items()
    }
    await api.merge_patch("v1", "Secret", "argocd-secret", {"data": hashes}, namespace)


@pytest.fixture
async def server(
    api: Kube, control_ns: str, running: RunningController
) -> AsyncIterator[RunningServer]:
    await _accounts(api, control_ns)
    service, password = await start_service(api, control_ns, (control_ns,), Policy.from_env())
    assert password, "a fresh control namespace gets a generated admin password"
    secret = await api.get("v1", "Secret", INITIAL_ADMIN_SECRET, control_ns)
    assert secret is not None
    assert base64.b64decode(secret["data"]["password"]).decode() == password
    (port,) = free_ports(1)
    uv = uvicorn.Server(
        uvicorn.Config(
            make_app(service),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(uv.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                response = await client.get(f"{url}/healthz")
            except httpx.HTTPError:
                return False
            # Served once the caches have seen the accounts and the signing key.
            return response.status_code == 200 and bool(service.accounts().get("alice"))

        await eventually(up, timeout=20, what="server /healthz")
    try:
        yield RunningServer(url, service, password, control_ns)
    finally:
        uv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 5)
        await service.state.stop()


async def login(client: httpx.AsyncClient, url: str, user: str, password: str) -> str:
    response = await client.post(
        f"{url}/api/v1/session", json={"username": user, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token
