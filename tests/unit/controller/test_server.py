"""The webhook endpoint's limits, driven through ASGI with an in-memory controller."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import httpx

from gitsail.controller.manager import Controller, RefreshNotRecorded
from gitsail.controller.metrics import Metrics
from gitsail.controller.server import make_app
from gitsail.controller.webhook import PushEvent, WebhookSecrets
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.artifacts import ArtifactStore

SECRET = "gh-shared-s3cret"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


class FakeController:
    """What the server needs from a ``Controller``."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.secrets: WebhookSecrets | None = WebhookSecrets(github=SECRET)
        self.pushes: list[PushEvent] = []
        self.fail_next = False
        self.hold: asyncio.Event | None = None
        self.secret_reads = 0
        self.entered: asyncio.Queue[PushEvent] = asyncio.Queue()
        self.artifacts = ArtifactStore(
            Path(tempfile.mkdtemp(prefix="gitsail-artifacts-")), base_url="http://t"
        )

        self.stoppers: list[Callable[[], Awaitable[None]]] = []

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        self.stoppers.append(stop)

    def webhook_secrets(self) -> WebhookSecrets | None:
        self.secret_reads += 1
        return self.secrets

    async def refresh_for_push(self, event: PushEvent) -> list[tuple[str, str]]:
        self.entered.put_nowait(event)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_next:
            self.fail_next = False
            raise RefreshNotRecorded("the apiserver is unavailable; retry the delivery")
        self.pushes.append(event)
        return [("argocd", "web")]


def push(after: str = SHA, delivery: str = "d-1") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": after,
            "repository": {"clone_url": "https://git.example.com/acme/deploy.git"},
            "commits": [{"added": ["apps/web/new.yaml"], "modified": [], "removed": []}],
        }
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def client(fake: FakeController, policy: Policy = DEFAULT_POLICY) -> httpx.AsyncClient:
    app = make_app(cast(Controller, fake), policy)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gitsail")


def refused(fake: FakeController) -> float:
    value = fake.metrics.webhook_requests_total.labels("github", "refused")._value.get()
    return float(value)


async def test_a_signed_push_is_accepted_and_the_secret_is_read_from_memory() -> None:
    fake = FakeController()
    body, headers = push()
    async with client(fake) as http:
        response = await http.post("/api/webhook", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"refreshed": ["argocd/web"]}
    assert len(fake.pushes) == 1
    assert fake.pushes[0].changed_files == ("apps/web/new.yaml",)


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    fake = FakeController()
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(100):
            read += 1
            yield b"x" * 1024

    policy = dataclasses.replace(DEFAULT_POLICY, webhook_body_bytes=1000)
    async with client(fake, policy) as http:
        response = await http.post(
            "/api/webhook",
            content=body(),
            headers={"X-GitHub-Event": "push", "Content-Length": str(300 * 1024 * 1024)},
        )
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert "314572800" in response.text
    assert fake.secret_reads == 0
    assert refused(fake) == 1


async def test_a_malformed_content_length_is_refused() -> None:
    fake = FakeController()
    async with client(fake) as http:
        response = await http.post(
            "/api/webhook",
            content=b"{}",
            headers={"X-GitHub-Event": "push", "Content-Length": "-1"},
        )
    assert response.status_code == 400


async def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    fake = FakeController()
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 10_000_000:
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    policy = dataclasses.replace(DEFAULT_POLICY, webhook_body_bytes=256 * 1024)
    async with client(fake, policy) as http:
        response = await http.post(
            "/api/webhook", content=endless(), headers={"X-GitHub-Event": "push"}
        )
    assert response.status_code == 413
    assert sent <= 512 * 1024
    assert fake.secret_reads == 0


async def test_a_body_that_trickles_is_cut_off_after_the_body_timeout() -> None:
    fake = FakeController()

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"{"
            await asyncio.sleep(0.05)

    policy = dataclasses.replace(DEFAULT_POLICY, webhook_body_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client(fake, policy) as http:
        response = await http.post(
            "/api/webhook", content=trickle(), headers={"X-GitHub-Event": "push"}
        )
    assert response.status_code == 408
    assert loop.time() - started < 2
    assert "0.3 s" in response.text


async def test_requests_over_the_concurrency_limit_get_503_with_retry_after() -> None:
    fake = FakeController()
    fake.hold = asyncio.Event()
    policy = dataclasses.replace(DEFAULT_POLICY, webhook_concurrency=2)
    async with client(fake, policy) as http:
        requests = [push(after=f"{n:040x}", delivery=f"d{n}") for n in (1, 2)]
        held = [
            asyncio.create_task(http.post("/api/webhook", content=body, headers=headers))
            for body, headers in requests
        ]
        async with asyncio.timeout(5):  # both are inside, holding the two slots
            await fake.entered.get()
            await fake.entered.get()
        body, headers = push(delivery="d-3")
        extra = await http.post("/api/webhook", content=body, headers=headers)
        fake.hold.set()
        first, second = await asyncio.gather(*held)
    assert extra.status_code == 503
    assert extra.headers["retry-after"] == "1"
    assert (first.status_code, second.status_code) == (200, 200)


async def test_a_replayed_delivery_is_refused_even_with_a_new_delivery_id() -> None:
    fake = FakeController()
    body, headers = push()
    async with client(fake) as http:
        assert (await http.post("/api/webhook", content=body, headers=headers)).status_code == 200
        again = await http.post("/api/webhook", content=body, headers=headers)
        renamed = await http.post(
            "/api/webhook", content=body, headers={**headers, "X-GitHub-Delivery": "d-new"}
        )
        other_body, other_headers = push(after="1" * 40, delivery="d-1")
        same_id = await http.post("/api/webhook", content=other_body, headers=other_headers)
    assert (again.status_code, renamed.status_code, same_id.status_code) == (409, 409, 409)
    assert len(fake.pushes) == 1


async def test_a_push_that_could_not_be_recorded_is_503_and_may_be_redelivered() -> None:
    fake = FakeController()
    fake.fail_next = True
    body, headers = push()
    async with client(fake) as http:
        failed = await http.post("/api/webhook", content=body, headers=headers)
        retried = await http.post("/api/webhook", content=body, headers=headers)
    assert failed.status_code == 503
    assert "retry-after" in failed.headers
    assert retried.status_code == 200
    assert len(fake.pushes) == 1


async def test_webhooks_before_the_secret_watch_started_get_503() -> None:
    fake = FakeController()
    fake.secrets = None
    body, headers = push()
    async with client(fake) as http:
        response = await http.post("/api/webhook", content=body, headers=headers)
    assert response.status_code == 503
    assert fake.pushes == []


async def test_refusals_never_echo_the_signature() -> None:
    fake = FakeController()
    body, headers = push()
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "ab" * 32}
    async with client(fake) as http:
        response = await http.post("/api/webhook", content=body, headers=forged)
    assert response.status_code == 401
    assert "ab" * 32 not in response.text
    assert SECRET not in response.text
