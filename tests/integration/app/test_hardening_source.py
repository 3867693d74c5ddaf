"""Source hardening end to end: private repositories stay private, URL passwords stay secret,
kustomize remote bases and local repositories are refused.

Each test owns its namespace, which is also the engine's (or controller's) control
namespace: no repository Secret exists there unless a test creates one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import (
    ApplicationFactory,
    configmap,
    public_url,
    reload,
)
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import eventually, start_controller, stop_controller

pytestmark = pytest.mark.integration

PASSWORD = GIT_USER[1]


async def test_a_private_commit_is_not_served_to_an_app_without_credentials(
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    kube_client: Kube,
    namespace: str,
) -> None:
    sha = git_repo.commit_and_push({"app/cm.yaml": configmap("private", token="classified")}, "p")
    owner = await make_app("owner", {"repoURL": git_repo.remote, "path": "app"})
    assert await engine.refresh(owner) is not None  # fetched into the shared mirror

    # Another app, no credentials, pinned to the SHA shown in the owner's status.
    thief = await make_app(
        "thief", {"repoURL": public_url(git_repo), "path": "app", "targetRevision": sha}
    )
    assert await engine.refresh(thief) is None
    status = (await reload(engine, thief)).raw.get("status") or {}
    [condition] = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
    assert "refused the credentials" in condition["message"]
    assert "classified" not in json.dumps(status)

    outcome = await engine.sync(await reload(engine, thief))
    assert outcome.result.phase == "Error"
    assert await kube_client.get("v1", "ConfigMap", "private", namespace) is None


async def test_a_password_in_the_repo_url_is_used_but_never_shown(
    kube_client: Kube,
    namespace: str,
    git_repo: Workdir,
    tmp_path: Path,
    crds: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    git_repo.commit_and_push({"app/cm.yaml": configmap("shown", a="1")}, "app")
    automated = {"automated": {"prune": True, "selfHeal": True}}
    destination = {"server": "https://kubernetes.default.svc", "namespace": namespace}
    for name, path in (("withpass", "app"), ("brokenpass", "no/such/dir")):
        await kube_client.create(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": git_repo.remote, "path": path},
                    "destination": destination,
                    "syncPolicy": automated,
                },
            }
        )
    running = await start_controller(kube_client, namespace, tmp_path)
    try:

        async def synced() -> dict[str, Any] | None:
            app = await kube_client.get(
                "argoproj.io/v1alpha1", "Application", "withpass", namespace
            )
            status = (app or {}).get("status") or {}
            done = (status.get("operationState") or {}).get("phase") == "Succeeded"
            return status if done and status.get("history") else None

        async def failed() -> dict[str, Any] | None:
            app = await kube_client.get(
                "argoproj.io/v1alpha1", "Application", "brokenpass", namespace
            )
            status = (app or {}).get("status") or {}
            return status if status.get("conditions") else None

        status = await eventually(synced, what="withpass synced, with history")
        broken = await eventually(failed, what="brokenpass reports its error")
    finally:
        await stop_controller(running)

    assert await kube_client.get("v1", "ConfigMap", "shown", namespace) is not None
    shown = public_url(git_repo)
    assert status["sync"]["comparedTo"]["source"]["repoURL"] == shown
    assert status["history"][-1]["source"]["repoURL"] == shown
    assert status["operationState"]["syncResult"]["source"]["repoURL"] == shown
    assert "does not exist" in json.dumps(broken["conditions"])
    events = await kube_client.list("v1", "Event", namespace)
    assert events, "the controller recorded events"
    for what, text in (
        ("status", json.dumps(status)),
        ("failed status", json.dumps(broken)),
        ("events", json.dumps(events)),
        ("logs", caplog.text),
    ):
        assert PASSWORD not in text, what


async def test_kustomize_remote_bases_and_local_repositories_are_refused(
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    kube_client: Kube,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {
            "remote/kustomization.yaml": (
                "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/"
                "helloWorld?ref=v3.3.1\n"
            ),
            "local/kustomization.yaml": "resources:\n- file:///var/lib/repos/other.git\n",
        },
        "remote bases",
    )
    for name in ("remote", "local"):
        app = await make_app(name, {"repoURL": public_url(git_repo), "path": name})
        assert await engine.refresh(app) is None
        status = (await reload(engine, app)).raw["status"]
        [condition] = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
        assert "remote reference" in condition["message"], condition

    mirror = next((engine.git.cache_dir / "repos").glob("*.git"))
    app = await make_app("mirror", {"repoURL": f"file://{mirror}", "path": "."})
    assert await engine.refresh(app) is None
    status = (await reload(engine, app)).raw["status"]
    [condition] = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
    assert "file:// URLs and local paths are refused" in condition["message"]
