"""An Argo CD Application delivered from Git to the real cluster, step by step."""

from __future__ import annotations

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.model import ResourceKey
from gitsail.sync import TRACKING_ANNOTATION
from tests.integration.app.conftest import (
    ApplicationFactory,
    configmap,
    manifests_text,
    public_url,
    reload,
)

pytestmark = pytest.mark.integration


async def test_article_production_overlay_syncs_and_becomes_healthy(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    article_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    app = await make_app(
        "myapp-production",
        # The overlay says `namespace: production`; the Application's kustomize option
        # moves it into this test's namespace, as Argo CD's `kustomize.namespace` does.
        {
            "repoURL": public_url(article_repo),
            "targetRevision": "main",
            "path": "apps/overlays/production",
            "kustomize": {"namespace": namespace},
        },
        destination={"server": "https://kubernetes.default.svc", "namespace": namespace},
    )
    before = await engine.compare(app)
    assert before.sync_status == "OutOfSync"
    assert before.rendered.tool == "kustomize"

    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message

    deployment = await kube_client.get("apps/v1", "Deployment", "myapp", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 5
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "myregistry.io/myapp:v1.0.0"
    assert container["resources"]["requests"]["memory"] == "1Gi"
    assert deployment["metadata"]["annotations"][TRACKING_ANNOTATION] == (
        f"{namespace}_myapp-production:apps/Deployment:{namespace}/myapp"
    )

    app = await reload(engine, app)
    status = app.raw["status"]
    assert status["sync"]["status"] == "Synced"
    assert status["sync"]["revision"] == outcome.revision
    assert status["operationState"]["phase"] == "Succeeded"
    assert status["sourceType"] == "Kustomize"
    assert status["summary"]["images"] == ["myregistry.io/myapp:v1.0.0"]
    assert [h["id"] for h in status["history"]] == [0]
    kinds = {(r["kind"], r["name"]) for r in status["resources"]}
    assert kinds == {("Deployment", "myapp"), ("Service", "myapp")}

    waited = await engine.compare(app)
    assert waited.sync_status == "Synced"


async def test_diff_shows_a_git_change_and_sync_applies_it(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("settings", level="1")}, "v1")
    app = await make_app("settings", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"

    git_repo.commit_and_push({"app/cm.yaml": configmap("settings", level="2")}, "v2")
    comparison = await engine.compare(await reload(engine, app))
    assert comparison.sync_status == "OutOfSync"
    (changed,) = [d for d in comparison.diffs if d.status == "OutOfSync"]
    assert changed.key == ResourceKey("", "ConfigMap", namespace, "settings")
    assert "/data/level" in changed.changed_paths
    assert "level: '2'" in changed.unified or 'level: "2"' in changed.unified

    assert (await engine.sync(await reload(engine, app))).result.phase == "Succeeded"
    live = await kube_client.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["data"]["level"] == "2"


async def test_prune_only_when_asked_and_only_what_the_app_owns(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {"app/all.yaml": manifests_text(configmap("keep", a="1"), configmap("gone", b="2"))}, "two"
    )
    app = await make_app("pruner", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    # Someone else's object that happens to look like ours must never be pruned.
    await kube_client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bystander", "namespace": namespace},
            "data": {"x": "1"},
        }
    )

    git_repo.commit_and_push({"app/all.yaml": configmap("keep", a="1")}, "drop gone")
    app = await reload(engine, app)
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded"
    skipped = [r for r in outcome.result.resources if r.key.name == "gone"]
    assert [r.status for r in skipped] == ["PruneSkipped"]
    assert await kube_client.get("v1", "ConfigMap", "gone", namespace) is not None
    app = await reload(engine, app)
    pending = [r for r in app.raw["status"]["resources"] if r.get("requiresPruning")]
    assert [r["name"] for r in pending] == ["gone"]
    assert app.raw["status"]["sync"]["status"] == "OutOfSync"

    outcome = await engine.sync(app, prune=True)
    assert outcome.result.phase == "Succeeded"
    assert [r.status for r in outcome.result.resources if r.key.name == "gone"] == ["Pruned"]
    assert await kube_client.get("v1", "ConfigMap", "gone", namespace) is None
    assert await kube_client.get("v1", "ConfigMap", "bystander", namespace) is not None
    assert await kube_client.get("v1", "ConfigMap", "keep", namespace) is not None


async def test_object_with_prune_false_is_kept(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    keeper = configmap("keeper", a="1").replace(
        "metadata:\n  name: keeper",
        "metadata:\n  name: keeper\n  annotations:\n"
        "    argocd.argoproj.io/sync-options: Prune=false",
    )
    git_repo.commit_and_push({"app/k.yaml": keeper, "app/c.yaml": configmap("c", a="1")}, "one")
    app = await make_app("keeper", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    git_repo.commit_and_push({"app/k.yaml": None}, "remove keeper")
    outcome = await engine.sync(await reload(engine, app), prune=True)
    assert [r.message for r in outcome.result.resources if r.key.name == "keeper"] == [
        "ignored (Prune=false)"
    ]
    assert await kube_client.get("v1", "ConfigMap", "keeper", namespace) is not None


async def test_history_and_rollback_redeploy_an_earlier_revision(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    first = git_repo.commit_and_push({"app/cm.yaml": configmap("cfg", v="first")}, "first")
    app = await make_app(
        "history",
        {"repoURL": public_url(git_repo), "path": "app", "targetRevision": "main"},
        revisionHistoryLimit=2,
    )
    assert (await engine.sync(app)).revision == first
    second = git_repo.commit_and_push({"app/cm.yaml": configmap("cfg", v="second")}, "second")
    assert (await engine.sync(await reload(engine, app))).revision == second
    third = git_repo.commit_and_push({"app/cm.yaml": configmap("cfg", v="third")}, "third")
    assert (await engine.sync(await reload(engine, app))).revision == third

    app = await reload(engine, app)
    history = app.raw["status"]["history"]
    assert [(h["id"], h["revision"]) for h in history] == [(1, second), (2, third)]

    entry = history[0]
    outcome = await engine.sync(
        app, revision=entry["revision"], source={**entry["source"], "targetRevision": second}
    )
    assert outcome.result.phase == "Succeeded"
    assert outcome.revision == second
    live = await kube_client.get("v1", "ConfigMap", "cfg", namespace)
    assert live is not None
    assert live["data"]["v"] == "second"


async def test_create_namespace_with_managed_metadata(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    target = f"{namespace}-created"
    git_repo.commit_and_push({"app/cm.yaml": configmap("hello", a="1")}, "c")
    app = await make_app(
        "creator",
        {"repoURL": public_url(git_repo), "path": "app"},
        destination={"server": "https://kubernetes.default.svc", "namespace": target},
        syncPolicy={
            "syncOptions": ["CreateNamespace=true"],
            "managedNamespaceMetadata": {
                "labels": {"team": "blue"},
                "annotations": {"owner": "platform"},
            },
        },
    )
    try:
        outcome = await engine.sync(app)
        assert outcome.result.phase == "Succeeded", outcome.result.message
        ns = await kube_client.get("v1", "Namespace", target)
        assert ns is not None
        assert ns["metadata"]["labels"]["team"] == "blue"
        assert ns["metadata"]["annotations"]["owner"] == "platform"
        assert TRACKING_ANNOTATION not in (ns["metadata"].get("annotations") or {})
        assert await kube_client.get("v1", "ConfigMap", "hello", target) is not None
    finally:
        await kube_client.delete("v1", "Namespace", target)


async def test_missing_namespace_without_create_namespace_fails_before_applying(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("x", a="1")}, "c")
    app = await make_app(
        "nons",
        {"repoURL": public_url(git_repo), "path": "app"},
        destination={
            "server": "https://kubernetes.default.svc",
            "namespace": f"{namespace}-absent",
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Failed"
    assert "not found" in outcome.result.message
    assert await kube_client.get("v1", "Namespace", f"{namespace}-absent") is None
