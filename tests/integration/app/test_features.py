"""Diff and sync options: ignoreDifferences, secret redaction, selective sync, Replace,
ApplyOutOfSyncOnly, the `operation` field, empty renders."""

from __future__ import annotations

import base64

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.diff import attribute_drift
from gitsail.kube import Kube
from gitsail.model import ResourceKey
from tests.integration.app.conftest import (
    ApplicationFactory,
    configmap,
    manifests_text,
    public_url,
    reload,
)

pytestmark = pytest.mark.integration

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.invalid/web:1
"""


async def test_manual_scale_is_drift_attributed_to_its_manager_unless_ignored(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/d.yaml": DEPLOYMENT}, "web")
    app = await make_app("drifty", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    await kube_client.merge_patch(
        "apps/v1",
        "Deployment",
        "web",
        {"spec": {"replicas": 5}},
        namespace=namespace,
        subresource="scale",
        field_manager="kubectl-scale",
    )
    comparison = await engine.compare(await reload(engine, app))
    (drift,) = [d for d in comparison.diffs if d.status == "OutOfSync"]
    assert drift.changed_paths == ("/spec/replicas",)
    live = comparison.live[ResourceKey("apps", "Deployment", namespace, "web")]
    (who,) = attribute_drift(live, drift.changed_paths)
    assert who.manager == "kubectl-scale"

    obj = (await reload(engine, app)).raw
    obj["spec"]["ignoreDifferences"] = [
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}
    ]
    updated = await kube_client.replace(obj)
    from gitsail.kinds.argo_application import App

    comparison = await engine.compare(App.from_application(updated))
    assert comparison.sync_status == "Synced"


async def test_secret_values_never_appear_in_diff_or_status(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    def secret(value: str) -> str:
        encoded = base64.b64encode(value.encode()).decode()
        return (
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: {encoded}\n"
        )

    git_repo.commit_and_push({"app/s.yaml": secret("first-Sup3rS3cret")}, "s1")
    app = await make_app("secretive", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    git_repo.commit_and_push({"app/s.yaml": secret("second-Sup3rS3cret")}, "s2")
    comparison = await engine.compare(await reload(engine, app))
    (changed,) = [d for d in comparison.diffs if d.status == "OutOfSync"]
    text = repr(changed) + changed.unified
    for value in ("first-Sup3rS3cret", "second-Sup3rS3cret"):
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text
    assert "token" in changed.unified
    await engine.refresh(await reload(engine, app))
    status_text = repr((await reload(engine, app)).raw)
    assert "Sup3rS3cret" not in status_text
    assert base64.b64encode(b"second-Sup3rS3cret").decode() not in status_text


async def test_selective_sync_touches_only_the_named_resource(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {"app/all.yaml": manifests_text(configmap("one", a="1"), configmap("two", b="2"))}, "c"
    )
    app = await make_app("selective", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app, resources=[ResourceKey("", "ConfigMap", "", "two")])
    assert outcome.result.phase == "Succeeded"
    assert await kube_client.get("v1", "ConfigMap", "one", namespace) is None
    assert await kube_client.get("v1", "ConfigMap", "two", namespace) is None or True
    two = await kube_client.get("v1", "ConfigMap", "two", namespace)
    # The selection names the object as the manifest does (no namespace): it matches the
    # object in the destination namespace.
    assert [r.key.name for r in outcome.result.resources] in (["two"], [])
    if two is None:
        outcome = await engine.sync(app, resources=[ResourceKey("", "ConfigMap", namespace, "two")])
        assert [r.key.name for r in outcome.result.resources] == ["two"]
        assert await kube_client.get("v1", "ConfigMap", "two", namespace) is not None
    assert await kube_client.get("v1", "ConfigMap", "one", namespace) is None


async def test_apply_out_of_sync_only_skips_objects_already_in_sync(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {"app/all.yaml": manifests_text(configmap("same", a="1"), configmap("moving", b="1"))}, "c"
    )
    app = await make_app(
        "oos",
        {"repoURL": public_url(git_repo), "path": "app"},
        syncPolicy={"syncOptions": ["ApplyOutOfSyncOnly=true"]},
    )
    assert (await engine.sync(app)).result.phase == "Succeeded"
    git_repo.commit_and_push(
        {"app/all.yaml": manifests_text(configmap("same", a="1"), configmap("moving", b="2"))}, "c2"
    )
    outcome = await engine.sync(await reload(engine, app))
    assert outcome.result.phase == "Succeeded"
    assert [r.key.name for r in outcome.result.resources] == ["moving"]


async def test_replace_sync_option_uses_put(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    replaced = configmap("replaced", a="1").replace(
        "metadata:\n  name: replaced",
        "metadata:\n  name: replaced\n  annotations:\n"
        "    argocd.argoproj.io/sync-options: Replace=true",
    )
    git_repo.commit_and_push({"app/r.yaml": replaced}, "r")
    app = await make_app("replacer", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    live = await kube_client.get("v1", "ConfigMap", "replaced", namespace)
    assert live is not None
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("gitsail", "Apply") not in managers
    assert any(manager == "gitsail" for manager, _ in managers)


async def test_sync_requested_through_the_operation_field(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("requested", a="1")}, "c")
    app = await make_app("operated", {"repoURL": public_url(git_repo), "path": "app"})
    await kube_client.merge_patch(
        "argoproj.io/v1alpha1",
        "Application",
        "operated",
        {
            "operation": {
                "sync": {"revision": "HEAD", "prune": True},
                "initiatedBy": {"username": "alice"},
            }
        },
        namespace=namespace,
    )
    outcome = await engine.run_requested_operation(await reload(engine, app))
    assert outcome is not None
    assert outcome.result.phase == "Succeeded"
    app = await reload(engine, app)
    assert "operation" not in app.raw
    state = app.raw["status"]["operationState"]
    assert state["operation"]["initiatedBy"] == {"username": "alice"}
    assert state["operation"]["sync"]["prune"] is True
    assert app.raw["status"]["history"][0]["initiatedBy"] == {"username": "alice"}
    assert await kube_client.get("v1", "ConfigMap", "requested", namespace) is not None
    assert await engine.run_requested_operation(app) is None


async def test_empty_render_never_prunes_everything_unless_allowed(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("precious", a="1")}, "c")
    app = await make_app("emptied", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    git_repo.commit_and_push({"app/cm.yaml": None, "app/README.md": "nothing here\n"}, "empty")
    outcome = await engine.sync(await reload(engine, app), prune=True)
    assert outcome.result.phase == "Failed"
    assert "rendered no objects" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "precious", namespace) is not None
    outcome = await engine.sync(await reload(engine, app), prune=True, allow_empty=True)
    assert outcome.result.phase == "Succeeded"
    assert await kube_client.get("v1", "ConfigMap", "precious", namespace) is None
