"""Flux Receivers against the dev control plane, with an in-process controller serving
``/hook/<digest>``: the path Flux computes, a signed push that asks a GitRepository to
reconcile within seconds, and every way a request is refused.

The Receiver's status is written by calling ``ReceiverReconciler`` directly (the
controller's registry of kinds will call it); the endpoint does not need it: it computes
the path from its own watches of Receivers and their Secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from gitsail.app.install import install_crds
from gitsail.controller.manager import Controller, ControllerOptions
from gitsail.controller.server import make_app
from gitsail.dev.cluster import Cluster, free_ports
from gitsail.kinds.flux_receiver import ReceiverReconciler, webhook_path
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.controller.conftest import eventually

pytestmark = pytest.mark.integration

TOKEN = "receiver-token-0123456789abcdef"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
RECEIVER = "notification.toolkit.fluxcd.io/v1"
GITREPO = "source.toolkit.fluxcd.io/v1"


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as client:
        await install_crds(client)  # the Controller watches every kind it delivers
        yield client


class Running:
    def __init__(self, url: str, app: Starlette) -> None:
        self.url = url
        self.app = app


@pytest.fixture
async def controller(api: Kube, namespace: str, tmp_path: Path) -> AsyncIterator[Running]:
    ctl = Controller(
        api, ControllerOptions(namespaces=(namespace,), leader_elect=False, resync=30, jitter=0)
    )
    app = make_app(ctl)
    (port,) = free_ports(1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )

    async def both() -> None:
        await asyncio.gather(ctl.run(), server.serve())

    task = asyncio.create_task(both())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=20, what="controller /healthz")
    try:
        yield Running(url, app)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.state.receivers.stop()


async def setup(api: Kube, namespace: str, name: str, **spec: Any) -> Obj:
    """A token Secret (once), GitRepository ``web`` (once), and a Receiver; reconciled."""
    if await api.get("v1", "Secret", "webhook-token", namespace) is None:
        await api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "webhook-token", "namespace": namespace},
                "stringData": {"token": TOKEN},
            }
        )
        await api.create(
            {
                "apiVersion": GITREPO,
                "kind": "GitRepository",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"interval": "10m", "url": "https://git.example.com/web.git"},
            }
        )
    obj = await api.create(
        {
            "apiVersion": RECEIVER,
            "kind": "Receiver",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "secretRef": {"name": "webhook-token"},
                "resources": [{"apiVersion": GITREPO, "kind": "GitRepository", "name": "web"}],
                **spec,
            },
        }
    )

    async def secrets(ns: str, secret: str) -> Obj | None:
        return await api.get("v1", "Secret", secret, ns)

    assert await ReceiverReconciler(api, secrets).reconcile(obj, frozenset({"test"})) == 600.0
    live = await api.get(RECEIVER, "Receiver", name, namespace)
    assert live is not None
    return live


async def requested_at(api: Kube, namespace: str) -> str | None:
    repo = await api.get(GITREPO, "GitRepository", "web", namespace)
    return ((repo or {}).get("metadata", {}).get("annotations") or {}).get(REQUESTED_AT)


def signed(body: bytes, event: str = "push", token: str = TOKEN) -> dict[str, str]:
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={signature}",
    }


async def test_receiver_status_reports_flux_path_and_a_signed_push_requests_a_reconcile(
    api: Kube, namespace: str, controller: Running
) -> None:
    live = await setup(api, namespace, "github", type="github", events=["ping", "push"])
    path = webhook_path(TOKEN, "github", namespace)
    digest = hashlib.sha256(f"{TOKEN}github{namespace}".encode()).hexdigest()
    assert path == f"/hook/{digest}"
    status = live["status"]
    assert status["webhookPath"] == path
    assert status["observedGeneration"] == 1
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert ready["message"] == f"Receiver initialized for path: {path}"

    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
    async with httpx.AsyncClient(base_url=controller.url) as http:
        forged = await http.post(path, content=body, headers=signed(body, token="guess"))
        assert forged.status_code == 401
        assert await requested_at(api, namespace) is None

        issues = await http.post(path, content=body, headers=signed(body, event="issues"))
        assert issues.status_code == 200
        assert issues.json()["requested"] == []
        ping = await http.post(path, content=b"{}", headers=signed(b"{}", event="ping"))
        assert ping.status_code == 200
        assert await requested_at(api, namespace) is None

        unknown = await http.post(f"/hook/{'0' * 64}", content=body, headers=signed(body))
        assert unknown.status_code == 404

        loop = asyncio.get_running_loop()
        sent = loop.time()
        accepted = await http.post(path, content=body, headers=signed(body))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["requested"] == [f"GitRepository/{namespace}/web"]
        stamp = await eventually(
            lambda: requested_at(api, namespace), timeout=10, what="requestedAt on web"
        )
        assert loop.time() - sent < 5
        assert stamp.endswith("Z")
        assert stamp[:4].isdigit()

        replay = await http.post(path, content=body, headers=signed(body))
        assert replay.status_code == 409


async def test_gitlab_token_and_generic_hmac(
    api: Kube, namespace: str, controller: Running
) -> None:
    await setup(api, namespace, "gitlab", type="gitlab", events=["Push Hook"])
    await setup(api, namespace, "hmac", type="generic-hmac")
    async with httpx.AsyncClient(base_url=controller.url) as http:
        gitlab = webhook_path(TOKEN, "gitlab", namespace)
        wrong = await http.post(
            gitlab, content=b"{}", headers={"X-Gitlab-Token": "x", "X-Gitlab-Event": "Push Hook"}
        )
        assert wrong.status_code == 401
        tag = await http.post(
            gitlab,
            content=b"{}",
            headers={"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Tag Push Hook"},
        )
        assert tag.json()["requested"] == []
        assert await requested_at(api, namespace) is None
        push = await http.post(
            gitlab, content=b"{}", headers={"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}
        )
        assert push.status_code == 200
        first = await eventually(lambda: requested_at(api, namespace), timeout=10, what="gitlab")

        hmac_path = webhook_path(TOKEN, "hmac", namespace)
        payload = b'{"image":"ghcr.io/org/app:v1.0.0"}'
        unsigned = await http.post(hmac_path, content=payload)
        assert unsigned.status_code == 401
        signature = hmac.new(TOKEN.encode(), payload, hashlib.sha512).hexdigest()
        ok = await http.post(
            hmac_path, content=payload, headers={"X-Signature": f"sha512={signature}"}
        )
        assert ok.status_code == 200, ok.text

        async def moved() -> str | None:
            now = await requested_at(api, namespace)
            return now if now != first else None

        await eventually(moved, timeout=10, what="a second requestedAt")


async def test_a_receiver_without_its_secret_is_not_ready_and_has_no_path(
    api: Kube, namespace: str
) -> None:
    obj = await api.create(
        {
            "apiVersion": RECEIVER,
            "kind": "Receiver",
            "metadata": {"name": "orphan", "namespace": namespace},
            "spec": {
                "type": "generic",
                "secretRef": {"name": "missing"},
                "resources": [{"kind": "GitRepository", "name": "web"}],
            },
        }
    )

    async def secrets(ns: str, name: str) -> Obj | None:
        return await api.get("v1", "Secret", name, ns)

    assert await ReceiverReconciler(api, secrets).reconcile(obj, frozenset()) == 30.0
    live = await api.get(RECEIVER, "Receiver", "orphan", namespace)
    assert live is not None
    ready = next(c for c in live["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TokenNotFound")
    assert f"'{namespace}/missing'" in ready["message"]
    assert live["status"]["webhookPath"] == ""
