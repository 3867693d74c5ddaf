"""Hardening of the sync stage (issue 7: items 1, 10, 12, 18b), on the real cluster.

Each test reproduces an attack or accident that once deleted or took over what the app did
not own, inside the test's own namespace only. These tests use only names that exist before
the fixes as well, so they can be run against the old code to see them fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_application import API_VERSION
from gitsail.kube import Kube
from gitsail.model import Obj, ResourceKey
from gitsail.sync import SyncRequest, run_sync
from gitsail.sync.tracking import TRACKING_ANNOTATION, mark
from tests.integration.app.conftest import ApplicationFactory, configmap, public_url, reload
from tests.integration.app.test_hardening_spec import _gitsail
from tests.integration.controller.conftest import eventually

pytestmark = pytest.mark.integration


def hook_configmap(name: str, phase: str = "PreSync", **data: str) -> str:
    lines = [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        f"  name: {name!r}",
        "  annotations:",
        f"    argocd.argoproj.io/hook: {phase}",
        "data:",
    ]
    lines += [f"  {k}: {v!r}" for k, v in data.items()] or ["  x: 'y'"]
    return "\n".join(lines) + "\n"


async def unmanaged_configmap(kube: Kube, namespace: str, name: str, **data: str) -> Obj:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
    return await kube.create(body)


# -- item 1: "." and ".." never reach a URL ------------------------------------------------


@pytest.mark.parametrize("bad", [".", ".."])
async def test_hook_named_dot_or_dotdot_deletes_nothing_and_compare_reports_it(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    bad: str,
) -> None:
    keep = await unmanaged_configmap(kube_client, namespace, "keep-me", secret="data")
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("plain", a="1"), "app/hook.yaml": hook_configmap(bad)},
        "a hook named like a path segment",
    )
    app = await make_app("dots", {"repoURL": public_url(git_repo), "path": "app"})

    with pytest.raises(ComparisonError, match=r"metadata\.name"):
        await engine.compare(app)  # `app diff` fails, it never says "in sync"
    outcome = await engine.sync(app)

    assert outcome.result.phase in ("Error", "Failed")
    assert "metadata.name" in outcome.result.message
    # Neither the namespace's ConfigMaps (".") nor the namespace ("..") were deleted.
    assert await kube_client.get("v1", "Namespace", namespace) is not None
    still = await kube_client.get("v1", "ConfigMap", "keep-me", namespace)
    assert still is not None
    assert still["metadata"]["uid"] == keep["metadata"]["uid"]
    assert await kube_client.get("v1", "ConfigMap", "plain", namespace) is None


async def test_hooks_are_dry_run_before_anything_is_applied(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    # A Job with restartPolicy Always is refused by the apiserver (422).
    bad_job = """apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  annotations:
    argocd.argoproj.io/hook: PostSync
spec:
  template:
    spec:
      restartPolicy: Always
      containers:
        - name: run
          image: registry.invalid/task:1
"""
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("plain", a="1"), "app/post.yaml": bad_job}, "invalid hook"
    )
    app = await make_app("dry-hooks", {"repoURL": public_url(git_repo), "path": "app"})

    outcome = await engine.sync(app)

    assert outcome.result.phase == "Failed"
    assert "dry run failed, nothing was applied" in outcome.result.message
    assert "restartPolicy" in outcome.result.message
    assert await kube_client.get("v1", "ConfigMap", "plain", namespace) is None


async def test_generated_name_hooks_are_dry_run_as_creates_and_then_run(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    hook = hook_configmap("unused").replace("  name: 'unused'", "  generateName: gen-")
    git_repo.commit_and_push({"app/hook.yaml": hook}, "a hook with a generated name")
    app = await make_app("generated", {"repoURL": public_url(git_repo), "path": "app"})

    outcome = await engine.sync(app)

    assert outcome.result.phase == "Succeeded", outcome.result.message
    names = [o["metadata"]["name"] for o in await kube_client.list("v1", "ConfigMap", namespace)]
    assert [n for n in names if n.startswith("gen-")]


# -- item 10: a hook replaces only a previous run of itself ---------------------------------


async def test_hook_never_replaces_an_object_the_app_does_not_own(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    precious = await unmanaged_configmap(kube_client, namespace, "precious", password="hunter2")
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("plain", a="1"), "app/hook.yaml": hook_configmap("precious")},
        "a hook named like a ConfigMap made by kubectl",
    )
    app = await make_app("collide", {"repoURL": public_url(git_repo), "path": "app"})

    outcome = await engine.sync(app)

    assert outcome.result.phase == "Failed"
    assert "is not a hook of this application" in outcome.result.message
    live = await kube_client.get("v1", "ConfigMap", "precious", namespace)
    assert live is not None
    assert live["metadata"]["uid"] == precious["metadata"]["uid"]
    assert live["data"] == {"password": "hunter2"}
    assert await kube_client.get("v1", "ConfigMap", "plain", namespace) is None


async def test_hook_of_another_app_is_not_replaced_either(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/hook.yaml": hook_configmap("migrate", v="1")}, "hook")
    first = await make_app("first", {"repoURL": public_url(git_repo), "path": "app"})
    second = await make_app("second", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(first)).result.phase == "Succeeded"
    theirs = await kube_client.get("v1", "ConfigMap", "migrate", namespace)
    assert theirs is not None

    outcome = await engine.sync(second)

    assert outcome.result.phase == "Failed"
    live = await kube_client.get("v1", "ConfigMap", "migrate", namespace)
    assert live is not None
    assert live["metadata"]["uid"] == theirs["metadata"]["uid"]
    # Its own previous run is still replaced (BeforeHookCreation).
    assert (await engine.sync(await reload(engine, first))).result.phase == "Succeeded"
    again = await kube_client.get("v1", "ConfigMap", "migrate", namespace)
    assert again is not None
    assert again["metadata"]["uid"] != theirs["metadata"]["uid"]


# -- item 12: deletes are conditional on what was seen -------------------------------------


async def test_prune_does_not_delete_an_object_replaced_since_the_comparison(
    kube_client: Kube, namespace: str
) -> None:
    app = "prune-race"
    body: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "old", "namespace": namespace},
        "data": {"v": "1"},
    }
    seen = await kube_client.apply(mark(body, app))
    # Replaced between comparison and prune: deleted and created again, same name and mark.
    await kube_client.delete("v1", "ConfigMap", "old", namespace, propagation="Background")
    replacement = await kube_client.create(mark(body, app))

    result = await run_sync(
        kube_client,
        SyncRequest(
            app=app, destination_namespace=namespace, desired=(), owned_live=(seen,), prune=True
        ),
    )

    live = await kube_client.get("v1", "ConfigMap", "old", namespace)
    assert live is not None
    assert live["metadata"]["uid"] == replacement["metadata"]["uid"]
    assert "deletionTimestamp" not in live["metadata"]  # not being deleted (Foreground) either
    (row,) = result.resources
    assert row.status == "PruneSkipped"
    assert "replaced" in row.message


async def test_hook_cleanup_deletes_only_the_object_the_hook_created(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = hook_configmap("cleanup", phase="PostSync").replace(
        "    argocd.argoproj.io/hook: PostSync\n",
        "    argocd.argoproj.io/hook: PostSync\n"
        "    argocd.argoproj.io/hook-delete-policy: HookSucceeded\n",
    )
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("plain", a="1"), "app/hook.yaml": hook}, "a hook cleaned up"
    )
    app = await make_app("cleanup", {"repoURL": public_url(git_repo), "path": "app"})
    cluster = engine.cluster
    real_delete = cluster.delete
    replacement: dict[str, Obj] = {}

    async def replaced_first(
        api_version: str, kind: str, name: str, namespace: str | None = None, *a: Any, **kw: Any
    ) -> bool:
        # Between the hook's success and its clean-up, someone replaces the object.
        if (kind, name) == ("ConfigMap", "cleanup") and not replacement:
            await real_delete(api_version, kind, name, namespace, propagation="Background")
            replacement["obj"] = await unmanaged_configmap(
                kube_client, str(namespace), "cleanup", owner="someone else"
            )
        return await real_delete(api_version, kind, name, namespace, *a, **kw)

    monkeypatch.setattr(cluster, "delete", replaced_first)
    outcome = await engine.sync(app)

    assert replacement, "the hook was never cleaned up"
    assert outcome.result.phase == "Succeeded", outcome.result.message
    live = await kube_client.get("v1", "ConfigMap", "cleanup", namespace)
    assert live is not None
    assert live["metadata"]["uid"] == replacement["obj"]["metadata"]["uid"]
    assert live["data"] == {"owner": "someone else"}
    [row] = [r for r in outcome.result.resources if r.key.name == "cleanup"]
    assert "not cleaned up" in row.message


async def test_app_deletion_skips_an_object_that_changed_after_it_was_read(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("owned", a="1")}, "one object")
    app = await make_app("deleting", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"
    app = await reload(engine, app)
    read = await engine.owned_objects(app)
    assert [ResourceKey.of(o).name for _, o in read] == ["owned"]
    # Someone takes the object over after it was read: the app's delete must not follow.
    await kube_client.merge_patch(
        "v1",
        "ConfigMap",
        "owned",
        {"metadata": {"annotations": {TRACKING_ANNOTATION: None}}, "data": {"a": "mine now"}},
        namespace,
    )

    async def stale(_app: object) -> list[tuple[str, Obj]]:
        return read

    monkeypatch.setattr(engine, "owned_objects", stale)
    deleted = await engine.delete_resources(app)

    assert deleted == []
    live = await kube_client.get("v1", "ConfigMap", "owned", namespace)
    assert live is not None
    assert live["data"] == {"a": "mine now"}
    assert "deletionTimestamp" not in live["metadata"]


# -- item 18b: two apps, one object ----------------------------------------------------------


async def test_shared_resource_is_reported_and_not_taken_over(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {
            "a/cm.yaml": configmap("shared", owner="a"),
            "b/cm.yaml": configmap("shared", owner="b"),
            "b/own.yaml": configmap("b-only", x="1"),
        },
        "two apps, one ConfigMap",
    )
    first = await make_app("app-a", {"repoURL": public_url(git_repo), "path": "a"})
    second = await make_app("app-b", {"repoURL": public_url(git_repo), "path": "b"})
    assert (await engine.sync(first)).result.phase == "Succeeded"

    await engine.refresh(second)
    status = (await reload(engine, second)).raw.get("status") or {}
    warnings = [
        c["message"]
        for c in status.get("conditions") or []
        if c.get("type") == "SharedResourceWarning"
    ]
    assert warnings == [
        f"ConfigMap/shared is part of applications {namespace}/app-b and {namespace}/app-a"
    ]

    outcome = await engine.sync(await reload(engine, second))

    assert outcome.result.phase == "Failed"
    assert "Shared resource found" in outcome.result.message
    live = await kube_client.get("v1", "ConfigMap", "shared", namespace)
    assert live is not None
    assert live["data"] == {"owner": "a"}
    assert live["metadata"]["annotations"][TRACKING_ANNOTATION].startswith(f"{namespace}_app-a:")
    assert await kube_client.get("v1", "ConfigMap", "b-only", namespace) is None


async def test_cli_app_delete_removes_the_application_it_read_and_its_objects(
    cluster: Cluster,
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("owned", a="1")}, "one object")
    app = await make_app("cli-delete", {"repoURL": public_url(git_repo), "path": "app"})
    assert (await engine.sync(app)).result.phase == "Succeeded"

    # Every DELETE it sends is conditional (the Application's uid, each object's uid and
    # resourceVersion): a request the client refused would fail the command.
    proc = _gitsail(cluster, "app", "delete", "cli-delete", "-N", namespace)

    assert proc.returncode == 0, proc.stderr
    assert "owned" in proc.stdout, proc.stdout

    async def gone() -> bool:
        application = await kube_client.get(API_VERSION, "Application", "cli-delete", namespace)
        return application is None and not await kube_client.get(
            "v1", "ConfigMap", "owned", namespace
        )

    await eventually(gone, timeout=30, what="the Application and its ConfigMap deleted")
