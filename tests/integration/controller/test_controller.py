"""The controller running against the real cluster: automated sync, webhooks, self-heal,
retries, prune, empty renders, deletion."""

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
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.app.conftest import configmap, public_url
from tests.integration.conftest import GIT_USER

pytestmark = pytest.mark.integration

T = TypeVar("T")
WEBHOOK_SECRET = "whsec-test-0123456789"


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
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


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
    return RunningController(ctl, url, task)


async def stop_controller(running: RunningController) -> None:
    running.task.cancel()
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


async def test_automated_sync_then_signed_webhook_makes_a_commit_live_in_seconds(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("live", v="1")}, "v1")
    await create_app(api, control_ns, "hooked", public_url(git_repo), syncPolicy=AUTOMATED)

    async def synced_v(value: str) -> bool:
        cm = await api.get("v1", "ConfigMap", "live", control_ns)
        return cm is not None and cm["data"]["v"] == value

    await eventually(lambda: synced_v("1"), what="initial automated sync")
    status = await app_status(api, control_ns, "hooked")
    assert status["operationState"]["operation"]["initiatedBy"] == {"automated": True}

    sha = git_repo.commit_and_push({"app/cm.yaml": configmap("live", v="2")}, "v2")
    body, headers = github_push(public_url(git_repo), sha, ["app/cm.yaml"])
    forged = dict(headers, **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    async with httpx.AsyncClient() as client:
        refused = await client.post(f"{running.url}/api/webhook", content=body, headers=forged)
        assert refused.status_code == 401
        started = time.monotonic()
        accepted = await client.post(f"{running.url}/api/webhook", content=body, headers=headers)
    assert accepted.status_code == 200
    assert accepted.json()["refreshed"] == [f"{control_ns}/hooked"]
    await eventually(lambda: synced_v("2"), timeout=20, what="webhook-triggered sync")
    assert time.monotonic() - started < 10
    # The webhook for another path of the repo refreshes nothing.
    body, headers = github_push(public_url(git_repo), sha, ["docs/README.md"])
    async with httpx.AsyncClient() as client:
        other = await client.post(f"{running.url}/api/webhook", content=body, headers=headers)
    assert other.json()["refreshed"] == []


async def test_manual_scale_and_deletion_are_healed_and_attributed(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    deployment = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.invalid/web:1}]}
"""
    git_repo.commit_and_push({"app/d.yaml": deployment, "app/cm.yaml": configmap("c", a="1")}, "d")
    await create_app(api, control_ns, "healer", public_url(git_repo), syncPolicy=AUTOMATED)

    async def replicas(n: int) -> bool:
        d = await api.get("apps/v1", "Deployment", "web", control_ns)
        return d is not None and d["spec"]["replicas"] == n

    await eventually(lambda: replicas(2), what="initial sync")
    await api.merge_patch(
        "apps/v1",
        "Deployment",
        "web",
        {"spec": {"replicas": 7}},
        namespace=control_ns,
        subresource="scale",
        field_manager="kubectl-scale",
    )
    started = time.monotonic()
    await eventually(lambda: replicas(2), timeout=30, what="self-heal of a manual scale")
    assert time.monotonic() - started < 15

    async def drift_event() -> list[Obj]:
        events = await api.list(
            "v1", "Event", control_ns, field_selector="involvedObject.name=healer"
        )
        return [e for e in events if e["reason"] == "DriftDetected"]

    drifts = await eventually(drift_event, timeout=10, what="DriftDetected event")
    assert "kubectl-scale" in drifts[0]["message"]
    assert "/spec/replicas" in drifts[0]["message"]
    status = await app_status(api, control_ns, "healer")
    assert any(d["manager"] == "kubectl-scale" for d in status.get("drift", []))

    await api.delete("v1", "ConfigMap", "c", control_ns)

    async def back() -> bool:
        return await api.get("v1", "ConfigMap", "c", control_ns) is not None

    await eventually(back, timeout=30, what="deleted ConfigMap recreated")


async def test_prune_on_and_off(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    two = configmap("a", x="1") + "\n---\n" + configmap("b", x="1")
    git_repo.commit_and_push({"app/all.yaml": two, "app/kustomization.yaml": KUSTOMIZATION}, "two")
    await create_app(
        api,
        control_ns,
        "pruning",
        public_url(git_repo),
        "app",
        syncPolicy={"automated": {"prune": True}},
    )
    await create_app(
        api,
        control_ns,
        "keeping",
        public_url(git_repo),
        "app",
        destination={"server": "https://kubernetes.default.svc", "namespace": control_ns},
        syncPolicy={"automated": {"prune": False}},
        source={
            "repoURL": public_url(git_repo),
            "path": "app",
            "targetRevision": "main",
            "kustomize": {"namePrefix": "k-"},
        },
    )
    for name in ("b", "k-b"):
        await eventually(
            lambda n=name: api.get("v1", "ConfigMap", n, control_ns), what=f"{name} synced"
        )
    sha = git_repo.commit_and_push({"app/all.yaml": configmap("a", x="1")}, "drop b")
    body, headers = github_push(public_url(git_repo), sha, ["app/all.yaml"])
    async with httpx.AsyncClient() as client:
        await client.post(f"{running.url}/api/webhook", content=body, headers=headers)

    async def b_gone() -> bool:
        return await api.get("v1", "ConfigMap", "b", control_ns) is None

    await eventually(b_gone, timeout=30, what="b pruned")

    async def keeping_out_of_sync() -> bool:
        status = await app_status(api, control_ns, "keeping")
        return any(r.get("requiresPruning") for r in status.get("resources", []))

    await eventually(keeping_out_of_sync, timeout=30, what="k-b shown as requiring pruning")
    assert await api.get("v1", "ConfigMap", "k-b", control_ns) is not None


async def test_empty_render_is_refused_with_a_condition(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("keepme", a="1")}, "c")
    await create_app(api, control_ns, "empty", public_url(git_repo), syncPolicy=AUTOMATED)
    await eventually(lambda: api.get("v1", "ConfigMap", "keepme", control_ns), what="sync")
    sha = git_repo.commit_and_push({"app/cm.yaml": None, "app/README.md": "empty\n"}, "empty")
    body, headers = github_push(public_url(git_repo), sha, ["app/cm.yaml"])
    async with httpx.AsyncClient() as client:
        await client.post(f"{running.url}/api/webhook", content=body, headers=headers)

    async def refused() -> bool:
        status = await app_status(api, control_ns, "empty")
        return any(
            c.get("message") == "auto-sync will wipe out all resources"
            for c in status.get("conditions") or []
        )

    await eventually(refused, timeout=30, what="wipe-out condition")
    assert await api.get("v1", "ConfigMap", "keepme", control_ns) is not None


async def test_transient_failure_is_retried_with_backoff(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    target = f"{control_ns}-later"
    git_repo.commit_and_push({"app/cm.yaml": configmap("eventually", a="1")}, "c")
    await create_app(
        api,
        control_ns,
        "retrying",
        public_url(git_repo),
        destination={"server": "https://kubernetes.default.svc", "namespace": target},
        syncPolicy={**AUTOMATED, "retry": {"limit": 5, "backoff": {"duration": "1s", "factor": 2}}},
    )

    async def retrying() -> bool:
        state = (await app_status(api, control_ns, "retrying")).get("operationState") or {}
        return int(state.get("retryCount", 0)) >= 1

    await eventually(retrying, timeout=30, what="a failed attempt scheduled for retry")
    # The failure is transient: the namespace appears, the next retry succeeds.
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
    try:
        await eventually(
            lambda: api.get("v1", "ConfigMap", "eventually", target),
            timeout=30,
            what="sync after retry",
        )

        async def succeeded() -> bool:
            state = (await app_status(api, control_ns, "retrying")).get("operationState") or {}
            return state.get("phase") == "Succeeded"

        await eventually(succeeded, timeout=30, what="operation Succeeded after the retry")
    finally:
        await api.delete("v1", "Namespace", target)


async def test_cascade_and_non_cascade_deletion(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push(
        {"app/all.yaml": configmap("owned", a="1"), "app/kustomization.yaml": KUSTOMIZATION}, "c"
    )
    await create_app(
        api,
        control_ns,
        "cascade",
        public_url(git_repo),
        syncPolicy=AUTOMATED,
        metadata={"finalizers": ["resources-finalizer.argocd.argoproj.io"]},
    )
    await create_app(
        api,
        control_ns,
        "orphaning",
        public_url(git_repo),
        syncPolicy=AUTOMATED,
        source={
            "repoURL": public_url(git_repo),
            "path": "app",
            "targetRevision": "main",
            "kustomize": {"nameSuffix": "-kept"},
        },
    )
    for name in ("owned", "owned-kept"):
        await eventually(
            lambda n=name: api.get("v1", "ConfigMap", n, control_ns), what=f"{name} synced"
        )
    await api.delete("argoproj.io/v1alpha1", "Application", "cascade", control_ns)
    await api.delete("argoproj.io/v1alpha1", "Application", "orphaning", control_ns)

    async def gone(kind: str, name: str, api_version: str = "v1") -> bool:
        return await api.get(api_version, kind, name, control_ns) is None

    await eventually(lambda: gone("ConfigMap", "owned"), timeout=30, what="cascade delete")
    await eventually(
        lambda: gone("Application", "cascade", "argoproj.io/v1alpha1"),
        timeout=30,
        what="app with finalizer gone",
    )
    await eventually(
        lambda: gone("Application", "orphaning", "argoproj.io/v1alpha1"),
        timeout=30,
        what="app without finalizer gone",
    )
    assert await api.get("v1", "ConfigMap", "owned-kept", control_ns) is not None
