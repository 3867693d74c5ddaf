"""CRDs with their custom resources in one app, PruneLast, propagation, Validate=false,
and deleting an app with and without its resources."""

from __future__ import annotations

import uuid

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import (
    ApplicationFactory,
    configmap,
    manifests_text,
    public_url,
    reload,
)

pytestmark = pytest.mark.integration


def crd(group: str) -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
"""


async def test_crd_and_its_custom_resources_sync_in_one_go(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.gitsail.dev"
    gadget = f"apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  size: 3\n"
    # The custom resource comes first in Git; kind order puts the CRD before it.
    git_repo.commit_and_push({"app/a-gadget.yaml": gadget, "app/b-crd.yaml": crd(group)}, "crd")
    app = await make_app("crds", {"repoURL": public_url(git_repo), "path": "app"})
    try:
        outcome = await engine.sync(app)
        assert outcome.result.phase == "Succeeded", outcome.result.message
        assert [r.key.kind for r in outcome.result.resources] == [
            "CustomResourceDefinition",
            "Gadget",
        ]
        live = await kube_client.get(f"{group}/v1", "Gadget", "g1", namespace)
        assert live is not None
        assert live["spec"]["size"] == 3
        assert (await engine.compare(await reload(engine, app))).sync_status == "Synced"
    finally:
        await kube_client.delete(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", f"gadgets.{group}"
        )


async def test_prune_last_prunes_after_everything_is_applied_and_healthy(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/all.yaml": configmap("old", a="1")}, "old")
    app = await make_app(
        "prunelast",
        {"repoURL": public_url(git_repo), "path": "app"},
        syncPolicy={"syncOptions": ["PruneLast=true", "PrunePropagationPolicy=background"]},
    )
    assert (await engine.sync(app)).result.phase == "Succeeded"
    late = configmap("late", a="1").replace(
        "metadata:\n  name: late",
        'metadata:\n  name: late\n  annotations:\n    argocd.argoproj.io/sync-wave: "5"',
    )
    git_repo.commit_and_push({"app/all.yaml": manifests_text(configmap("new", b="1"), late)}, "new")
    outcome = await engine.sync(await reload(engine, app), prune=True)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    assert [(r.key.name, r.status) for r in outcome.result.resources] == [
        ("new", "Synced"),
        ("late", "Synced"),
        ("old", "Pruned"),
    ]
    assert await kube_client.get("v1", "ConfigMap", "old", namespace) is None


async def test_validate_false_skips_field_validation(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    sloppy = configmap("sloppy", a="1") + "\nunknownTopLevelField: true\n"
    git_repo.commit_and_push({"app/s.yaml": sloppy}, "unknown field")
    strict = await make_app("strict", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(strict)
    assert outcome.result.phase == "Failed"
    assert "unknownTopLevelField" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "sloppy", namespace) is None

    lenient = await make_app(
        "lenient",
        {"repoURL": public_url(git_repo), "path": "app"},
        syncPolicy={"syncOptions": ["Validate=false"]},
    )
    outcome = await engine.sync(lenient)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "sloppy", namespace) is not None


async def test_delete_resources_removes_only_what_the_app_owns(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {"app/all.yaml": manifests_text(configmap("mine", a="1"), configmap("also-mine", b="1"))},
        "two",
    )
    app = await make_app("deleter", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    # An object edited to drop the app's mark is no longer the app's to delete.
    await kube_client.merge_patch(
        "v1",
        "ConfigMap",
        "also-mine",
        {"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": None}}},
        namespace=namespace,
    )
    deleted = await engine.delete_resources(await reload(engine, app), propagation="Background")
    assert [k.name for k in deleted] == ["mine"]
    assert await kube_client.get("v1", "ConfigMap", "mine", namespace) is None
    assert await kube_client.get("v1", "ConfigMap", "also-mine", namespace) is not None
