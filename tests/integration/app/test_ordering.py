"""Sync waves, hooks and their delete policies, on the real cluster (kwok runs the Jobs)."""

from __future__ import annotations

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import ApplicationFactory, configmap, public_url, reload

pytestmark = pytest.mark.integration


def job(name: str, **annotations: str) -> str:
    ann = "".join(f"\n    {k}: {v!r}" for k, v in annotations.items())
    return f"""apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  annotations:{ann}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: registry.invalid/task:1
"""


def deployment(name: str, wave: int) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations:
    argocd.argoproj.io/sync-wave: "{wave}"
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: registry.invalid/{name}:1
"""


async def test_hooks_and_waves_run_in_argo_cd_order(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {
            "app/pre.yaml": job("migrate", **{"argocd.argoproj.io/hook": "PreSync"}),
            "app/db.yaml": deployment("db", -1),
            "app/web.yaml": deployment("web", 1),
            "app/cm.yaml": configmap("config", a="1"),
            "app/post.yaml": job(
                "smoke",
                **{
                    "argocd.argoproj.io/hook": "PostSync",
                    "argocd.argoproj.io/hook-delete-policy": "HookSucceeded",
                },
            ),
        },
        "hooks and waves",
    )
    app = await make_app("ordered", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    finished = [
        (r.sync_phase, r.key.name)
        for r in outcome.result.resources
        if r.status == "Synced" and (not r.hook_type or r.hook_phase == "Succeeded")
    ]
    assert finished == [
        ("PreSync", "migrate"),
        ("Sync", "db"),
        ("Sync", "config"),
        ("Sync", "web"),
        ("PostSync", "smoke"),
    ]
    # Wave -1 was healthy before wave 1 started: both Deployments are Available now.
    for name in ("db", "web"):
        live = await kube_client.get("apps/v1", "Deployment", name, namespace)
        assert live is not None
        assert live["status"].get("availableReplicas") == 1
    # BeforeHookCreation (default) keeps the PreSync Job; HookSucceeded removed the PostSync one.
    migrate = await kube_client.get("batch/v1", "Job", "migrate", namespace)
    assert migrate is not None
    smoke = await kube_client.get("batch/v1", "Job", "smoke", namespace)
    assert smoke is None or smoke["metadata"].get("deletionTimestamp")
    # Hooks are not part of the app's resources or its sync status.
    app = await reload(engine, app)
    assert {r["name"] for r in app.raw["status"]["resources"]} == {"db", "web", "config"}

    # A second sync recreates the named PreSync hook (BeforeHookCreation).
    uid = migrate["metadata"]["uid"]
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    again = await kube_client.get("batch/v1", "Job", "migrate", namespace)
    assert again is not None
    assert again["metadata"]["uid"] != uid


async def test_helm_hook_annotations_are_honoured(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {
            "app/pre.yaml": job(
                "helm-pre",
                **{
                    "helm.sh/hook": "pre-install,pre-upgrade",
                    "helm.sh/hook-delete-policy": "hook-succeeded",
                },
            ),
            "app/test.yaml": job("helm-test", **{"helm.sh/hook": "test"}),
            "app/cm.yaml": configmap("c", a="1"),
        },
        "helm hooks",
    )
    app = await make_app("helmhooks", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    hooks = [
        (r.sync_phase, r.key.name, r.hook_phase) for r in outcome.result.resources if r.hook_type
    ]
    assert ("PreSync", "helm-pre", "Succeeded") in hooks
    assert all(name != "helm-test" for _, name, _ in hooks)
    assert await kube_client.get("batch/v1", "Job", "helm-test", namespace) is None


async def test_failed_presync_hook_stops_the_sync_and_runs_syncfail(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    # A hook that passes the dry run but fails when run: it lives in a namespace that this
    # sync creates only in its Sync phase, after PreSync. (An invalid hook is refused by the
    # dry run before anything runs, SyncFail hooks included.)
    bad_hook = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: pre
  namespace: {namespace}-later
  annotations:
    argocd.argoproj.io/hook: PreSync
data: {{a: "1"}}
---
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}-later
"""
    on_fail = configmap("sync-failed", reason="hook").replace(
        "metadata:\n  name: sync-failed",
        "metadata:\n  name: sync-failed\n  annotations:\n    argocd.argoproj.io/hook: SyncFail",
    )
    git_repo.commit_and_push(
        {
            "app/pre.yaml": bad_hook,
            "app/fail.yaml": on_fail,
            "app/cm.yaml": configmap("main", a="1"),
        },
        "bad hook",
    )
    app = await make_app("failing", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Failed"
    assert "PreSync hook" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "main", namespace) is None
    assert await kube_client.get("v1", "ConfigMap", "sync-failed", namespace) is not None
    app = await reload(engine, app)
    assert app.raw["status"]["operationState"]["phase"] == "Failed"
    assert "history" not in app.raw["status"] or not app.raw["status"]["history"]
