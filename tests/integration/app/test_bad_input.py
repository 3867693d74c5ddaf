"""Bad input gets a clear error naming what failed, and nothing in the cluster changes."""

from __future__ import annotations

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.dev.cluster import free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import ApplicationFactory, configmap, public_url, reload

pytestmark = pytest.mark.integration


async def _synced_app(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, name: str
) -> object:
    git_repo.commit_and_push({"app/cm.yaml": configmap("survivor", a="1")}, "good")
    app = await make_app(name, {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app, prune=True)
    assert outcome.result.phase == "Succeeded"
    return await reload(engine, app)


async def _assert_survivor(kube: Kube, namespace: str) -> None:
    live = await kube.get("v1", "ConfigMap", "survivor", namespace)
    assert live is not None, "a failed sync must not prune"
    assert live["data"] == {"a": "1"}


async def test_unreachable_repository_is_a_clear_error(
    engine: AppEngine, make_app: ApplicationFactory, repo_secret: object
) -> None:
    (port,) = free_ports(1)
    app = await make_app(
        "unreachable", {"repoURL": f"http://127.0.0.1:{port}/nothing.git", "path": "."}
    )
    with pytest.raises(ComparisonError, match=f"127.0.0.1:{port}"):
        await engine.compare(app)
    outcome = await engine.sync(app, prune=True)
    assert outcome.result.phase == "Error"
    app = await reload(engine, app)
    assert app.raw["status"]["operationState"]["phase"] == "Error"
    await engine.refresh(app)
    app = await reload(engine, app)
    conditions = {c["type"]: c["message"] for c in app.raw["status"]["conditions"]}
    assert str(port) in conditions["ComparisonError"]
    assert str(port) in conditions["SyncError"]  # the failed sync, as Argo CD records it


async def test_wrong_credentials_fail_without_leaking_the_password(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("x", a="1")}, "c")
    await kube_client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "bad-creds",
                "namespace": namespace,
                "labels": {"argocd.argoproj.io/secret-type": "repository"},
            },
            "stringData": {
                "url": public_url(git_repo),
                "username": "gitsail-test",
                "password": "definitely-wrong-pw",
            },
        }
    )
    app = await make_app("wrongcreds", {"repoURL": public_url(git_repo), "path": "app"})
    with pytest.raises(ComparisonError) as caught:
        await engine.compare(app)
    message = str(caught.value)
    assert "authentication" in message.lower() or "credentials" in message.lower()
    assert "definitely-wrong-pw" not in message
    assert await kube_client.get("v1", "ConfigMap", "x", namespace) is None


async def test_malformed_yaml_names_the_file_and_prunes_nothing(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    app = await _synced_app(engine, make_app, git_repo, "malformed")
    git_repo.commit_and_push(
        {"app/cm.yaml": None, "app/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n"},
        "broken",
    )
    outcome = await engine.sync(app, prune=True)  # type: ignore[arg-type]
    assert outcome.result.phase == "Error"
    assert "broken.yaml" in outcome.result.message
    await _assert_survivor(kube_client, namespace)


async def test_duplicate_keys_are_rejected_with_the_line(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, repo_secret: object
) -> None:
    git_repo.commit_and_push(
        {
            "app/dup.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n"
            "data:\n  a: '1'\n  a: '2'\n"
        },
        "dup",
    )
    app = await make_app("dupkeys", {"repoURL": public_url(git_repo), "path": "app"})
    with pytest.raises(ComparisonError, match=r"dup\.yaml.*line"):
        await engine.compare(app)


async def test_kustomize_error_is_reported_and_prunes_nothing(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    app = await _synced_app(engine, make_app, git_repo, "kerr")
    git_repo.commit_and_push(
        {"app/kustomization.yaml": "resources:\n  - does-not-exist.yaml\n"}, "bad kustomization"
    )
    outcome = await engine.sync(app, prune=True)  # type: ignore[arg-type]
    assert outcome.result.phase == "Error"
    assert "does-not-exist.yaml" in outcome.result.message
    await _assert_survivor(kube_client, namespace)


async def test_helm_error_is_reported_and_prunes_nothing(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    app = await _synced_app(engine, make_app, git_repo, "herr")
    git_repo.commit_and_push(
        {
            "app/Chart.yaml": "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
            "app/templates/cm.yaml": "{{ .Values.missing.field }}\n",
        },
        "bad chart",
    )
    outcome = await engine.sync(app, prune=True)  # type: ignore[arg-type]
    assert outcome.result.phase == "Error"
    assert "nil pointer" in outcome.result.message or "missing" in outcome.result.message
    await _assert_survivor(kube_client, namespace)


async def test_object_rejected_by_the_apiserver_applies_nothing(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    app = await _synced_app(engine, make_app, git_repo, "rejected")
    bad = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  replicas: "three"
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: c, image: x}]}
"""
    git_repo.commit_and_push(
        {"app/cm.yaml": None, "app/bad.yaml": bad, "app/new.yaml": configmap("newcomer", b="2")},
        "invalid deployment",
    )
    outcome = await engine.sync(app, prune=True)  # type: ignore[arg-type]
    assert outcome.result.phase == "Failed"
    assert "dry run failed, nothing was applied" in outcome.result.message
    assert "Deployment" in outcome.result.message
    assert "bad" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "newcomer", namespace) is None
    assert await kube_client.get("apps/v1", "Deployment", "bad", namespace) is None
    await _assert_survivor(kube_client, namespace)


async def test_unknown_kind_is_an_error_before_anything_is_applied(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {
            "app/cm.yaml": configmap("first", a="1"),
            "app/w.yaml": "apiVersion: nothing.example.com/v1\nkind: Gizmo\nmetadata:\n  name: g\n",
        },
        "unknown kind",
    )
    app = await make_app("unknownkind", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Error"
    assert "Gizmo" in outcome.result.message
    assert "CRD" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "first", namespace) is None


async def test_missing_path_in_repository_is_named(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, repo_secret: object
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("x", a="1")}, "c")
    app = await make_app("nopath", {"repoURL": public_url(git_repo), "path": "no/such/dir"})
    with pytest.raises(ComparisonError, match="no/such/dir"):
        await engine.compare(app)


async def test_unknown_revision_is_named(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, repo_secret: object
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("x", a="1")}, "c")
    app = await make_app(
        "norev",
        {"repoURL": public_url(git_repo), "path": "app", "targetRevision": "no-such-branch"},
    )
    with pytest.raises(ComparisonError, match="no-such-branch"):
        await engine.compare(app)
