"""Helpers and fixtures shared by the controller tests: an in-process controller with its
HTTP server, Applications, signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from gitsail.controller.manager import Controller, ControllerOptions
from gitsail.controller.server import make_app
from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import GitServer
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.conftest import GIT_USER
from tests.integration.tasks import tasks_line

T = TypeVar("T")
WEBHOOK_SECRET = "whsec-test-0123456789"
# Seconds a cancelled in-process controller has to end.
STOP_TIMEOUT = 60


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 60, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    # An in-process controller shares this loop: where each of its tasks waits (a stall).
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last: {last!r}); "
        f"asyncio tasks: {tasks_line(asyncio.all_tasks())}"
    )


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as client:
        yield client


@pytest.fixture
async def control_ns(api: Kube, namespace: str, git_server: GitServer) -> str:
    """The test namespace as the controller's control namespace: creds and webhook secret."""
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "creds",
                "namespace": namespace,
                "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
            },
            "stringData": {
                "url": git_server.base_url,
                "username": GIT_USER[0],
                "password": GIT_USER[1],
            },
        }
    )
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": namespace},
            "stringData": {"webhook.github.secret": WEBHOOK_SECRET},
        }
    )
    return namespace


class RunningController:
    def __init__(self, controller: Controller, url: str, task: asyncio.Task[None]) -> None:
        self.controller = controller
        self.url = url
        self.task = task


@pytest.fixture
async def running(
    api: Kube, control_ns: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[RunningController]:
    controller = await start_controller(api, control_ns, tmp_path)
    yield controller
    await stop_controller(controller)


async def start_controller(
    api: Kube, namespace: str, tmp_path: Path, *, leader_elect: bool = False, identity: str = "c1"
) -> RunningController:
    from gitsail.source import GitSource, HelmRepoSource

    ctl = Controller(
        api,
        ControllerOptions(
            namespaces=(namespace,),
            leader_elect=leader_elect,
            resync=30,
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
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(ctl), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )

    task = asyncio.create_task(run_with_server(ctl, server))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=20, what="controller /healthz")
    return RunningController(ctl, url, task)


async def run_with_server(ctl: Controller, server: uvicorn.Server) -> None:
    """The controller and its HTTP server until either ends or this is cancelled; then
    both are stopped and awaited to the end (no watch of theirs outlives the test), and
    what ended the first is raised."""
    run = asyncio.create_task(ctl.run(), name=f"controller-run-{ctl.options.identity}")
    serve = asyncio.create_task(server.serve(), name=f"controller-http-{ctl.options.identity}")
    try:
        await asyncio.wait({run, serve}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        run.cancel()
        await asyncio.gather(run, serve, return_exceptions=True)
    for task in (run, serve):
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def stop_controller(running: RunningController) -> None:
    """Cancel the controller and its server and wait for both to end (bounded: a
    controller that does not stop fails the test with where its tasks wait)."""
    running.task.cancel()
    done, _ = await asyncio.wait({running.task}, timeout=STOP_TIMEOUT)
    if not done:
        raise AssertionError(
            f"the controller did not stop within {STOP_TIMEOUT}s; asyncio tasks: "
            f"{tasks_line(asyncio.all_tasks())}"
        )
    with contextlib.suppress(asyncio.CancelledError):
        await running.task


@pytest.fixture(scope="session")
async def crds_installed(cluster: Cluster) -> None:
    from gitsail.app.install import install_crds

    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        await install_crds(kube)


async def create_app(
    api: Kube, namespace: str, name: str, repo: str, path: str = "app", **spec: Any
) -> Obj:
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, **spec.pop("metadata", {})},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            **spec,
        },
    }
    return await api.create(body)


AUTOMATED = {"automated": {"prune": True, "selfHeal": True}}
KUSTOMIZATION = "resources:\n  - all.yaml\n"


async def app_status(api: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = await api.get("argoproj.io/v1alpha1", "Application", name, namespace)
    return (obj or {}).get("status") or {}


def github_push(repo_url: str, sha: str, files: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
            "commits": [{"id": sha, "added": [], "modified": files, "removed": []}],
        }
    ).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    return body, headers
