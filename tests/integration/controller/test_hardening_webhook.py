"""The webhook endpoint under abuse, and pushes on any replica, against a real cluster and
the real HTTP server (uvicorn with ``make_server``'s limits).

Raw sockets play the attacker: a huge declared body, a body or head that trickles, large
bodies without a length, more requests than the limit; signed pushes play GitHub.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.controller.manager import Controller, ControllerOptions
from gitsail.controller.server import make_server
from gitsail.dev.cluster import free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.policy import DEFAULT_POLICY, Policy
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    WEBHOOK_SECRET,
    RunningController,
    create_app,
    eventually,
    run_with_server,
    stop_controller,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024
POLICY = dataclasses.replace(
    DEFAULT_POLICY,
    webhook_body_bytes=1 * MiB,
    webhook_body_timeout=1.0,
    webhook_concurrency=2,
    webhook_replay_window=100,
)


async def start(
    api: Kube,
    namespace: str,
    tmp_path: Path,
    *,
    policy: Policy = POLICY,
    leader_elect: bool = False,
    identity: str = "h1",
) -> RunningController:
    """A controller served by ``make_server`` (the CLI's server), polling rarely, so only a
    webhook makes a new commit live within a test."""
    from gitsail.source import GitSource, HelmRepoSource

    ctl = Controller(
        api,
        ControllerOptions(
            namespaces=(namespace,),
            leader_elect=leader_elect,
            resync=600,
            jitter=0,
            identity=identity,
            lease_duration=3,
            renew_deadline=2,
            retry_period=0.5,
        ),
    )
    ctl.engine.git = GitSource(tmp_path / f"cache-{identity}")
    ctl.engine.helm_repos = HelmRepoSource(tmp_path / f"cache-{identity}")
    (port,) = free_ports(1)
    server = make_server(ctl, "127.0.0.1", port, policy)

    task = asyncio.create_task(run_with_server(ctl, server))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:

        async def ready() -> bool:
            try:
                response = await client.get(f"{url}/healthz")
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json()["webhooks_ready"]

        await eventually(ready, timeout=30, what="controller ready for webhooks")
    return RunningController(ctl, url, task)


@pytest.fixture
async def hardened(
    api: Kube, control_ns: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[RunningController]:
    running = await start(api, control_ns, tmp_path)
    yield running
    await stop_controller(running)


def signed_push(
    repo_url: str,
    sha: str,
    *,
    added: tuple[str, ...] = (),
    modified: tuple[str, ...] = (),
    delivery: str = "",
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
            "commits": [
                {"id": sha, "added": list(added), "modified": list(modified), "removed": []}
            ],
        }
    ).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or os.urandom(8).hex(),
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    return body, headers


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{url}/api/webhook", content=body, headers=headers)


async def raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def head(length: int | None = None, *, chunked: bool = False) -> bytes:
    lines = ["POST /api/webhook HTTP/1.1", "Host: gitsail", "X-GitHub-Event: push"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``seconds``)."""
    received = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(65536):
            received += chunk
    return received


def rss() -> int:
    resident_pages = Path("/proc/self/statm").read_text().split()[1]
    return int(resident_pages) * os.sysconf("SC_PAGE_SIZE")


# -- the endpoint under abuse -------------------------------------------------------------


async def test_a_large_declared_content_length_is_refused_without_reading(
    hardened: RunningController,
) -> None:
    reader, writer = await raw(hardened.url)
    writer.write(head(300 * MiB))
    await writer.drain()
    started = time.monotonic()
    answer = await closed_within(reader, 5)  # no body was sent: it was never waited for
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 2
    assert b"314572800" in answer


async def test_a_body_that_trickles_is_cut_off(hardened: RunningController) -> None:
    reader, writer = await raw(hardened.url)
    writer.write(head(1000))
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"{")
                await writer.drain()
                await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    try:
        answer = await closed_within(reader, 5)
    finally:
        sender.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 3


async def test_a_head_that_trickles_is_cut_off(hardened: RunningController) -> None:
    reader, writer = await raw(hardened.url)
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in head(10).decode():
                writer.write(byte.encode())
                await writer.drain()
                await asyncio.sleep(0.5)

    sender = asyncio.create_task(trickle())
    try:
        await closed_within(reader, 5)
    finally:
        sender.cancel()
        writer.close()
    assert time.monotonic() - started < 3


async def test_large_bodies_without_a_length_keep_memory_bounded(
    hardened: RunningController,
) -> None:
    """Three 300 MB chunked POSTs at once: each is cut off at the 1 MiB limit."""
    chunk = b"x" * MiB
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    baseline = rss()
    peak = baseline
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)

    async def flood() -> tuple[int, bytes]:
        reader, writer = await raw(hardened.url)
        sent = 0
        try:
            writer.write(head(chunked=True))
            while sent < 300 * MiB:
                writer.write(frame)
                await writer.drain()
                sent += len(chunk)
        except ConnectionError:
            pass
        try:
            answer = await closed_within(reader, 10)
        except ConnectionError:
            answer = b""
        writer.close()
        return sent, answer

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(flood(), flood(), flood())
    stop.set()
    await sampler
    for sent, answer in results:
        assert sent < 300 * MiB, "the server kept reading a body over its limit"
        # 413 once past the limit; 503 for the one over the concurrency limit; or the
        # connection was closed while the client was still writing.
        assert answer == b"" or answer[:12] in (b"HTTP/1.1 413", b"HTTP/1.1 503"), answer[:200]
    assert peak - baseline < 64 * MiB, f"memory grew by {(peak - baseline) // MiB} MiB"


async def test_requests_over_the_concurrency_limit_get_503_at_once(
    hardened: RunningController,
) -> None:
    held = [await raw(hardened.url) for _ in range(2)]
    for _, writer in held:
        writer.write(head(1000) + b"{")  # inside, waiting for the rest of the body
        await writer.drain()

    async def third() -> httpx.Response | None:
        body, headers = signed_push("https://git.example.com/none.git", "1" * 40)
        response = await post(hardened.url, body, headers)
        return response if response.status_code == 503 else None

    # Both slots are taken as soon as the two heads are in; poll until they are.
    refused = await eventually(third, timeout=5, what="a 503 while both slots are taken")
    assert refused.headers["retry-after"] == "1"
    for _, writer in held:
        writer.close()


async def test_a_replayed_push_is_refused(
    api: Kube, hardened: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    sha = git_repo.commit_and_push({"app/cm.yaml": configmap("replayed", v="1")}, "v1")
    await create_app(api, control_ns, "replayed", public_url(git_repo))
    body, headers = signed_push(public_url(git_repo), sha, modified=("app/cm.yaml",))
    first = await post(hardened.url, body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["refreshed"] == [f"{control_ns}/replayed"]
    again = await post(hardened.url, body, headers)
    fresh_id = await post(hardened.url, body, {**headers, "X-GitHub-Delivery": "new-id"})
    assert (again.status_code, fresh_id.status_code) == (409, 409)


async def test_the_secret_is_read_from_a_watch_not_per_request(
    api: Kube, hardened: RunningController, control_ns: str
) -> None:
    gets: list[tuple[Any, ...]] = []
    real_get = hardened.controller.kube.get

    async def counting_get(*args: Any, **kwargs: Any) -> Any:
        if "Secret" in args:
            gets.append(args)
        return await real_get(*args, **kwargs)

    hardened.controller.kube.get = counting_get  # type: ignore[method-assign]
    try:
        for n in range(20):
            body, headers = signed_push("https://git.example.com/none.git", f"{n + 1:040x}")
            assert (await post(hardened.url, body, headers)).status_code == 200
    finally:
        hardened.controller.kube.get = real_get  # type: ignore[method-assign]
    assert gets == []

    # A rotated secret is picked up from the watch, without a restart.
    await api.merge_patch(
        "v1",
        "Secret",
        "argocd-secret",
        {"stringData": {"webhook.github.secret": "rotated-secret"}},
        namespace=control_ns,
    )
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": "f" * 40,
            "repository": {"clone_url": "https://git.example.com/none.git"},
        }
    ).encode()
    signature = hmac.new(b"rotated-secret", body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
    }

    async def accepted() -> bool:
        # Not remembered as seen until accepted, so the same delivery may be sent again.
        return (await post(hardened.url, body, headers)).status_code == 200

    await eventually(accepted, timeout=10, what="the rotated secret to be accepted")


# -- which apps a push refreshes (manifest-generate-paths) -------------------------------


async def test_a_push_that_only_adds_a_file_refreshes_the_app(
    api: Kube, hardened: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    files = {"app/cm.yaml": configmap("first", v="1"), "other/cm.yaml": configmap("other")}
    git_repo.commit_and_push(files, "v1")
    await create_app(api, control_ns, "grows", public_url(git_repo), syncPolicy=AUTOMATED)
    await create_app(
        api,
        control_ns,
        "elsewhere",
        public_url(git_repo),
        path="other",
        metadata={"annotations": {"argocd.argoproj.io/manifest-generate-paths": "."}},
    )

    async def exists(name: str) -> bool:
        return await api.get("v1", "ConfigMap", name, control_ns) is not None

    await eventually(lambda: exists("first"), what="initial sync")
    sha = git_repo.commit_and_push({"app/second.yaml": configmap("second", v="1")}, "add")
    body, headers = signed_push(public_url(git_repo), sha, added=("app/second.yaml",))
    response = await post(hardened.url, body, headers)
    assert response.status_code == 200, response.text
    # The app without the annotation is refreshed; the annotated app of another folder not.
    assert response.json()["refreshed"] == [f"{control_ns}/grows"]
    await eventually(lambda: exists("second"), timeout=20, what="the added file synced")


# -- any replica takes a push ------------------------------------------------------------


async def test_a_push_sent_to_the_standby_replica_reaches_the_leader(
    api: Kube, control_ns: str, git_repo: Workdir, tmp_path: Path, crds_installed: None
) -> None:
    first = await start(api, control_ns, tmp_path, leader_elect=True, identity="r1")
    second = await start(api, control_ns, tmp_path, leader_elect=True, identity="r2")
    try:
        git_repo.commit_and_push({"app/cm.yaml": configmap("pushed", v="1")}, "v1")
        await create_app(api, control_ns, "pushed", public_url(git_repo), syncPolicy=AUTOMATED)

        async def value() -> str | None:
            cm = await api.get("v1", "ConfigMap", "pushed", control_ns)
            return cm["data"]["v"] if cm else None

        await eventually(value, timeout=60, what="initial sync by the leader")
        leaders = [r for r in (first, second) if r.controller.leading.is_set()]
        assert len(leaders) == 1
        standby = second if leaders[0] is first else first

        sha = git_repo.commit_and_push({"app/cm.yaml": configmap("pushed", v="2")}, "v2")
        body, headers = signed_push(public_url(git_repo), sha, modified=("app/cm.yaml",))
        response = await post(standby.url, body, headers)
        assert response.status_code == 200, response.text
        assert response.json()["refreshed"] == [f"{control_ns}/pushed"]

        async def v2() -> bool:
            return await value() == "2"

        await eventually(v2, timeout=30, what="the push on the standby synced by the leader")

        async def annotation_cleared() -> bool:
            obj = await api.get("argoproj.io/v1alpha1", "Application", "pushed", control_ns)
            annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
            return "argocd.argoproj.io/refresh" not in annotations

        await eventually(annotation_cleared, timeout=20, what="the refresh annotation removed")
    finally:
        for running in (first, second):
            await stop_controller(running)
