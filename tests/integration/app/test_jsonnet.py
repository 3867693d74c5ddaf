"""A directory of Jsonnet, end to end: rendered, synced, refused when it reaches outside,
and an app that renders nothing says so."""

from __future__ import annotations

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_application import NO_RESOURCES
from gitsail.kube import Kube
from tests.integration.app.conftest import ApplicationFactory, public_url, reload
from tests.integration.app.test_cli import gitsail

pytestmark = pytest.mark.integration

MAIN = """
local k = import 'k.libsonnet';
function(team) [
  k.configmap('settings', { env: std.extVar('env'), team: team, app: std.extVar('app') }),
  {
    apiVersion: 'v1',
    kind: 'List',
    items: [k.configmap('listed', { n: std.toString(std.extVar('n')) })],
  },
]
"""
LIB = """
{
  configmap(name, data):: {
    apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: data,
  },
}
"""


async def test_a_jsonnet_directory_syncs_with_ext_vars_tlas_and_libs(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push(
        {"app/main.jsonnet": MAIN, "jsonnet-lib/k.libsonnet": LIB}, "jsonnet app"
    )
    source = {
        "repoURL": public_url(git_repo),
        "path": "app",
        "directory": {
            "jsonnet": {
                "extVars": [
                    {"name": "env", "value": "prod"},
                    {"name": "app", "value": "$ARGOCD_APP_NAME"},
                    {"name": "n", "value": "1 + 1", "code": True},
                ],
                "tlas": [{"name": "team", "value": "platform"}],
                "libs": ["jsonnet-lib"],
            }
        },
    }
    app = await make_app("jsonnet", source)
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    settings = await kube_client.get("v1", "ConfigMap", "settings", namespace)
    assert settings is not None
    assert settings["data"] == {"env": "prod", "team": "platform", "app": "jsonnet"}
    listed = await kube_client.get("v1", "ConfigMap", "listed", namespace)
    assert listed is not None
    assert listed["data"] == {"n": "2"}

    app = await reload(engine, app)
    comparison = await engine.refresh(app)
    assert comparison is not None
    assert comparison.sync_status == "Synced"
    status = (await reload(engine, app)).raw["status"]
    assert status["sync"]["status"] == "Synced"
    assert not [c for c in status.get("conditions") or [] if c["type"] == NO_RESOURCES]


async def test_a_jsonnet_import_outside_the_repository_is_a_comparison_error(
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
) -> None:
    git_repo.commit_and_push(
        {
            "steal/x.jsonnet": "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, "
            "data: { passwd: importstr '/etc/passwd' } }"
        },
        "escape",
    )
    app = await make_app("steal", {"repoURL": public_url(git_repo), "path": "steal"})
    with pytest.raises(
        ComparisonError, match=r"importstr '/etc/passwd'.*(is refused|outside the repository)"
    ):
        await engine.compare(app)
    await engine.refresh(app)
    status = (await reload(engine, app)).raw["status"]
    (error,) = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
    assert "root:" not in error["message"]


async def test_an_app_that_renders_nothing_says_so(
    cluster: Cluster,
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    # Before Jsonnet was rendered, this is what a Jsonnet directory looked like: nothing.
    git_repo.commit_and_push({"empty/README.md": "no manifests here\n"}, "empty")
    app = await make_app("empty", {"repoURL": public_url(git_repo), "path": "empty"})
    await engine.refresh(app)
    status = (await reload(engine, app)).raw["status"]
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    (warning,) = [c for c in status["conditions"] if c["type"] == NO_RESOURCES]
    assert "rendered no resources" in warning["message"]
    table = gitsail(cluster, "app", "get", "empty", "-N", namespace).stdout
    assert "rendered no resources" in table
