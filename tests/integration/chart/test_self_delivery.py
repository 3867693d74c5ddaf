"""gitsail delivers itself: an Application whose source is charts/gitsail in Git (Argo CD's
"manages itself" pattern), synced by gitsail into the namespace the chart's controller
runs in. kwok runs no containers: the test checks the objects the sync made and that the
Deployment became Available on the fake nodes."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import (  # noqa: F401 (fixtures)
    ApplicationFactory,
    crds,
    engine,
    kube_client,
    make_app,
    public_url,
    reload,
    repo_secret,
)

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[3] / "charts" / "gitsail"


async def test_an_application_delivers_the_gitsail_chart_from_git(
    engine: AppEngine,  # noqa: F811
    kube_client: Kube,  # noqa: F811
    make_app: ApplicationFactory,  # noqa: F811
    git_repo: Workdir,
    repo_secret: object,  # noqa: F811
    namespace: str,
) -> None:
    # What a release repository holds: the chart with its CRD links resolved to files.
    shutil.copytree(CHART, git_repo.path / "charts" / "gitsail", symlinks=False)
    git_repo.commit("gitsail chart")
    git_repo.push()
    role = f"gitsail-self-{namespace}"
    app = await make_app(
        "gitsail",
        {
            "repoURL": public_url(git_repo),
            "path": "charts/gitsail",
            "targetRevision": "HEAD",
            "helm": {
                "releaseName": "gitsail",
                "parameters": [
                    # The shared cluster's CRDs are served already (and not this app's).
                    {"name": "crds.install", "value": "false"},
                    {"name": "rbac.clusterRoleName", "value": role},
                    {"name": "server.clusterRoleName", "value": f"{role}-server"},
                    {"name": "image.repository", "value": "127.0.0.1:5000/gitsail"},
                    # it delivers itself: ClusterRoles and CRDs (docs/install.md)
                    {"name": "rbac.clusterAdmin", "value": "true"},
                ],
            },
        },
    )
    try:
        outcome = await engine.sync(app)
        assert outcome.result.phase == "Succeeded", outcome.result.message
        deployment = await kube_client.get("apps/v1", "Deployment", "gitsail-controller", namespace)
        assert deployment is not None
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "127.0.0.1:5000/gitsail:0.1.0"
        assert container["args"][:3] == ["controller", "--namespace", namespace]
        cluster_role = await kube_client.get("rbac.authorization.k8s.io/v1", "ClusterRole", role)
        assert cluster_role is not None
        assert cluster_role["rules"][0] == {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}

        deadline = time.monotonic() + 90
        while True:
            live = await kube_client.get("apps/v1", "Deployment", "gitsail-controller", namespace)
            conditions = {
                c["type"]: c["status"] for c in (live or {}).get("status", {}).get("conditions", [])
            }
            if conditions.get("Available") == "True":
                break
            assert time.monotonic() < deadline, f"not Available: {conditions}"
            await asyncio.sleep(0.5)

        again = await engine.sync(await reload(engine, app))
        assert again.result.phase == "Succeeded", again.result.message
        status = (await reload(engine, app)).raw["status"]
        assert status["sync"]["status"] == "Synced"
        assert status["sourceType"] == "Helm"
    finally:
        for kind in ("ClusterRoleBinding", "ClusterRole"):
            for name in (role, f"{role}-server"):
                await kube_client.delete("rbac.authorization.k8s.io/v1", kind, name)
