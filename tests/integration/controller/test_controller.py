"""The controller running against the real cluster: automated sync, webhooks, self-heal,
retries, prune, empty renders, deletion."""

from __future__ import annotations

import time

import httpx
import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    KUSTOMIZATION,
    RunningController,
    app_status,
    create_app,
    eventually,
    github_push,
)

pytestmark = pytest.mark.integration


async def test_automated_sync_then_signed_webhook_makes_a_commit_live_in_seconds(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("live", v="1")}, "v1")
    await create_app(
        api,
        control_ns,
        "hooked",
        public_url(git_repo),
        syncPolicy=AUTOMATED,
        metadata={"annotations": {"argocd.argoproj.io/manifest-generate-paths": "."}},
    )

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
    # With manifest-generate-paths, a webhook for another path of the repo refreshes nothing.
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
