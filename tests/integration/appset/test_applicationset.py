"""ApplicationSets on the real control plane, with real git against the test git server.

The article's ApplicationSet goes through the REAL controller (in-process, its only
namespace the test's, standing for ``argocd``): the set makes ``myapp-development``,
``-staging`` and ``-production`` and the Argo CD path delivers each overlay. The other tests
drive the reconciler directly (the controller's registry calls it the same way) for each
generator and each safety rule: the reconciler's pass is then one call, not a wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app as cli
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.argo_applicationset_reconciler import (
    ApplicationSetReconciler,
    ClusterSources,
)
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.source import GitSource
from tests.integration.controller.conftest import (
    eventually,
    start_controller,
    stop_controller,
)

pytestmark = pytest.mark.integration

V1A1 = "argoproj.io/v1alpha1"
ENVS = ("development", "staging", "production")

# The article's ApplicationSet; its element URLs point at this cluster (other clusters come
# with cluster Secrets later), its repository at the test server, its destination namespace
# at the test's.
ARTICLE = """\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: myapp
  namespace: argocd
spec:
  generators:
  - list:
      elements:
      - cluster: development
        url: https://kubernetes.default.svc
      - cluster: staging
        url: https://kubernetes.default.svc
      - cluster: production
        url: https://kubernetes.default.svc
  template:
    metadata:
      name: 'myapp-{{cluster}}'
    spec:
      project: default
      source:
        repoURL: REPO
        targetRevision: HEAD
        path: 'overlays/{{cluster}}'
      destination:
        server: '{{url}}'
        namespace: myapp
"""


def overlays(envs: tuple[str, ...] = ENVS) -> dict[str, str]:
    files = {}
    for env in envs:
        files[f"overlays/{env}/cm.yaml"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: myapp-{env}\n"
            f"data:\n  env: {env}\n"
        )
    return files


def article(repo: str, namespace: str) -> Obj:
    obj: Obj = yaml.safe_load(ARTICLE.replace("REPO", repo))
    obj["metadata"]["namespace"] = namespace
    obj["spec"]["template"]["spec"]["destination"]["namespace"] = namespace
    return obj


async def app_names(api: Kube, namespace: str) -> list[str]:
    apps = await api.list(V1A1, "Application", namespace)
    return sorted(a["metadata"]["name"] for a in apps if not a["metadata"].get("deletionTimestamp"))


async def conditions(api: Kube, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    obj = await api.get(V1A1, "ApplicationSet", name, namespace)
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


async def test_the_article_set_makes_three_apps_the_controller_delivers(
    api: Kube,
    release_apps: str,
    git_server: GitServer,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    namespace = release_apps
    git_repo.commit_and_push(overlays(), "overlays")
    repo = _plain_url(git_repo.remote)
    running = await start_controller(api, namespace, tmp_path)
    try:
        created = await api.create(article(repo, namespace))

        async def made() -> list[str] | None:
            names = await app_names(api, namespace)
            return names if len(names) == 3 else None

        names = await eventually(made, what="three Applications")
        assert names == ["myapp-development", "myapp-production", "myapp-staging"]
        for app in await api.list(V1A1, "Application", namespace):
            (owner,) = app["metadata"]["ownerReferences"]
            assert owner["uid"] == created["metadata"]["uid"]
            assert owner["controller"] is True
            assert app["spec"]["source"]["path"] == f"overlays/{app['metadata']['name'][6:]}"
        # The Argo CD path delivers each overlay (a manual sync: the template has no
        # syncPolicy, so ask for one as `argocd app sync` would).
        for env in ENVS:
            await api.merge_patch(
                V1A1,
                "Application",
                f"myapp-{env}",
                {"operation": {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "t"}}},
                namespace,
            )
        for env in ENVS:

            async def delivered(env: str = env) -> Obj | None:
                return await api.get("v1", "ConfigMap", f"myapp-{env}", namespace)

            cm = await eventually(delivered, what=f"ConfigMap myapp-{env}")
            assert cm["data"] == {"env": env}

        async def up_to_date() -> bool:
            found = await conditions(api, namespace, "myapp")
            return found.get("ResourcesUpToDate", {}).get("status") == "True"

        await eventually(up_to_date, what="ResourcesUpToDate=True")
        obj = await api.get(V1A1, "ApplicationSet", "myapp", namespace)
        assert [r["name"] for r in obj["status"]["resources"]] == [
            "myapp-development",
            "myapp-production",
            "myapp-staging",
        ]
    finally:
        await stop_controller(running)


def _plain_url(remote: str) -> str:
    """The remote without its user:password (the control namespace has the credentials)."""
    scheme, _, rest = remote.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


# -- the reconciler driven directly ------------------------------------------------------------


def reconciler(
    api: Kube, namespace: str, tmp_path: Path, **policy: Any
) -> ApplicationSetReconciler:
    git = GitSource(tmp_path / "git")
    return ApplicationSetReconciler(
        api,
        ClusterSources(api, git, namespace),
        policy=dataclasses.replace(DEFAULT_POLICY, **policy),
    )


async def apply_set(api: Kube, obj: Obj) -> Obj:
    return await api.apply(obj, field_manager="test", force=True)


def list_set(namespace: str, envs: tuple[str, ...], **spec: Any) -> Obj:
    return {
        "apiVersion": V1A1,
        "kind": "ApplicationSet",
        "metadata": {"name": "envs", "namespace": namespace},
        "spec": {
            "generators": [{"list": {"elements": [{"env": e} for e in envs]}}],
            "template": {
                "metadata": {"name": "app-{{env}}"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": "https://git.example/r", "path": "{{env}}"},
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": namespace,
                    },
                },
            },
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("policy", "deletes"), [("sync", True), ("create-delete", True), ("create-update", False)]
)
async def test_removing_an_element_deletes_its_app_only_when_the_policy_deletes(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None, policy: str, deletes: bool
) -> None:
    namespace = release_apps
    r = reconciler(api, namespace, tmp_path)
    spec = {"syncPolicy": {"applicationsSync": policy, "preserveResourcesOnDeletion": True}}
    await r.reconcile(await apply_set(api, list_set(namespace, ("a", "b", "c"), **spec)))
    assert await app_names(api, namespace) == ["app-a", "app-b", "app-c"]
    await r.reconcile(await apply_set(api, list_set(namespace, ("b", "c"), **spec)))
    expected = ["app-b", "app-c"] if deletes else ["app-a", "app-b", "app-c"]
    assert await app_names(api, namespace) == expected
    assert (await conditions(api, namespace, "envs"))["ResourcesUpToDate"]["status"] == "True"


async def test_a_generator_error_deletes_nothing_and_says_so(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None, git_server: GitServer
) -> None:
    namespace = release_apps
    r = reconciler(api, namespace, tmp_path)
    await r.reconcile(await apply_set(api, list_set(namespace, ("a", "b"))))
    broken = list_set(namespace, ())
    broken["spec"]["generators"] = [
        {"git": {"repoURL": git_server.url("no-such-repo"), "directories": [{"path": "*"}]}}
    ]
    await r.reconcile(await apply_set(api, broken))
    assert await app_names(api, namespace) == ["app-a", "app-b"]
    found = await conditions(api, namespace, "envs")
    assert found["ErrorOccurred"]["status"] == "True"
    assert found["ErrorOccurred"]["reason"] == "ApplicationGenerationFromParamsError"
    assert "every existing Application is kept" in found["ErrorOccurred"]["message"]
    assert found["ParametersGenerated"]["status"] == "False"


async def test_go_template_missing_key_is_a_condition_not_an_app(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None
) -> None:
    namespace = release_apps
    obj = list_set(namespace, ("a",), goTemplate=True, goTemplateOptions=["missingkey=error"])
    obj["spec"]["template"]["metadata"]["name"] = "app-{{.environment}}"
    await reconciler(api, namespace, tmp_path).reconcile(await apply_set(api, obj))
    assert await app_names(api, namespace) == []
    found = await conditions(api, namespace, "envs")
    assert found["ErrorOccurred"]["status"] == "True"
    assert 'no entry for key "environment"' in found["ErrorOccurred"]["message"]


async def test_git_directories_and_files_generators_read_the_repository(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None, git_repo: Workdir
) -> None:
    namespace = release_apps
    git_repo.commit_and_push(
        {
            "apps/guestbook/cm.yaml": "kind: ConfigMap\n",
            "apps/helm-guestbook/cm.yaml": "kind: ConfigMap\n",
            "apps/excluded/cm.yaml": "kind: ConfigMap\n",
            "config/dev/config.json": '{"cluster": {"name": "dev", "owner": "team-a"}}',
            "config/prod/config.json": '{"cluster": {"name": "prod", "owner": "team-b"}}',
        },
        "layout",
    )
    repo = _plain_url(git_repo.remote)
    r = reconciler(api, namespace, tmp_path)
    dirs = list_set(namespace, ())
    dirs["spec"]["generators"] = [
        {
            "git": {
                "repoURL": repo,
                "revision": "main",
                "directories": [{"path": "apps/*"}, {"path": "apps/excluded", "exclude": True}],
            }
        }
    ]
    dirs["spec"]["template"]["metadata"]["name"] = "{{path.basename}}"
    dirs["spec"]["template"]["spec"]["source"] = {"repoURL": repo, "path": "{{path}}"}
    delay = await r.reconcile(await apply_set(api, dirs))
    assert delay == 180.0  # Argo's default requeueAfterSeconds: a new commit is seen
    assert await app_names(api, namespace) == ["guestbook", "helm-guestbook"]
    files = list_set(namespace, ())
    files["metadata"]["name"] = "files"
    files["spec"]["generators"] = [
        {"git": {"repoURL": repo, "files": [{"path": "config/**/config.json"}]}}
    ]
    files["spec"]["template"]["metadata"]["name"] = "cfg-{{cluster.name}}"
    files["spec"]["template"]["metadata"]["labels"] = {"owner": "{{cluster.owner}}"}
    await r.reconcile(await apply_set(api, files))
    dev = await api.get(V1A1, "Application", "cfg-dev", namespace)
    assert dev is not None
    assert dev["metadata"]["labels"] == {"owner": "team-a"}
    # A new commit is generated from at the next pass.
    git_repo.commit_and_push({"apps/new/cm.yaml": "kind: ConfigMap\n"}, "a new app")
    await r.reconcile(await api.get(V1A1, "ApplicationSet", "envs", namespace))
    assert "new" in await app_names(api, namespace)


async def test_clusters_generator_reads_cluster_secrets_and_matrix_combines_with_git(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None, git_repo: Workdir
) -> None:
    namespace = release_apps
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "staging-cluster",
                "namespace": namespace,
                "labels": {"argocd.argoproj.io/secret-type": "cluster", "env": "staging"},
            },
            "stringData": {
                "name": "staging",
                "server": "https://staging.example:6443",
                "config": "{}",
            },
        }
    )
    git_repo.commit_and_push({"apps/web/cm.yaml": "kind: ConfigMap\n"}, "apps")
    repo = _plain_url(git_repo.remote)
    r = reconciler(api, namespace, tmp_path)
    obj = list_set(namespace, ())
    obj["spec"]["generators"] = [
        {
            "matrix": {
                "generators": [
                    {"git": {"repoURL": repo, "directories": [{"path": "apps/*"}]}},
                    {"clusters": {"selector": {"matchLabels": {"env": "staging"}}}},
                ]
            }
        },
        {"clusters": {}},
    ]
    obj["spec"]["template"]["metadata"]["name"] = "{{name}}-{{path.basename}}"
    obj["spec"]["template"]["spec"]["destination"] = {
        "server": "{{server}}",
        "namespace": namespace,
    }
    await r.reconcile(await apply_set(api, obj))
    # The matrix makes staging-web; the bare clusters generator leaves {{path.basename}}
    # as written for the in-cluster and staging: not a name, so nothing is created.
    found = await conditions(api, namespace, "envs")
    assert found["ErrorOccurred"]["reason"] == "ApplicationValidationError"
    assert await app_names(api, namespace) == []
    obj["spec"]["generators"] = obj["spec"]["generators"][:1]
    await r.reconcile(await apply_set(api, obj))
    assert await app_names(api, namespace) == ["staging-web"]
    app = await api.get(V1A1, "Application", "staging-web", namespace)
    assert app["spec"]["destination"]["server"] == "https://staging.example:6443"


async def test_merge_generator_overrides_by_merge_key(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None
) -> None:
    namespace = release_apps
    obj = list_set(namespace, ())
    obj["spec"]["generators"] = [
        {
            "merge": {
                "mergeKeys": ["env"],
                "generators": [
                    {
                        "list": {
                            "elements": [{"env": "a", "path": "base"}, {"env": "b", "path": "base"}]
                        }
                    },
                    {"list": {"elements": [{"env": "b", "path": "special"}]}},
                ],
            }
        }
    ]
    obj["spec"]["template"]["spec"]["source"]["path"] = "{{path}}"
    await reconciler(api, namespace, tmp_path).reconcile(await apply_set(api, obj))
    a = await api.get(V1A1, "Application", "app-a", namespace)
    b = await api.get(V1A1, "Application", "app-b", namespace)
    assert (a["spec"]["source"]["path"], b["spec"]["source"]["path"]) == ("base", "special")


async def test_a_large_deletion_is_withheld_until_a_good_result_returns(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None
) -> None:
    namespace = release_apps
    r = reconciler(api, namespace, tmp_path)
    spec = {"syncPolicy": {"preserveResourcesOnDeletion": True}}
    await r.reconcile(await apply_set(api, list_set(namespace, ("a", "b", "c", "d"), **spec)))
    await r.reconcile(await apply_set(api, list_set(namespace, ("a",), **spec)))
    assert await app_names(api, namespace) == ["app-a", "app-b", "app-c", "app-d"]
    found = await conditions(api, namespace, "envs")
    assert found["ResourcesUpToDate"]["reason"] == "DeletionWithheld"
    await r.reconcile(await apply_set(api, list_set(namespace, ("a", "b", "c"), **spec)))
    assert await app_names(api, namespace) == ["app-a", "app-b", "app-c"]


async def test_a_new_cluster_secret_wakes_a_clusters_set_in_the_controller(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None
) -> None:
    namespace = release_apps
    obj = list_set(namespace, ())
    obj["spec"]["generators"] = [{"clusters": {"selector": {"matchLabels": {"tier": "edge"}}}}]
    obj["spec"]["template"]["metadata"]["name"] = "edge-{{name}}"
    running = await start_controller(api, namespace, tmp_path)
    try:
        await api.create(obj)

        async def generated_none() -> bool:
            found = await conditions(api, namespace, "envs")
            return found.get("ParametersGenerated", {}).get("status") == "True"

        await eventually(generated_none, what="a first pass")
        assert await app_names(api, namespace) == []
        await api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "edge-1",
                    "namespace": namespace,
                    "labels": {"argocd.argoproj.io/secret-type": "cluster", "tier": "edge"},
                },
                "stringData": {"name": "edge1", "server": "https://edge1.example:6443"},
            }
        )

        async def made() -> list[str] | None:
            names = await app_names(api, namespace)
            return names or None

        # Well before the controller's resync (30 s): the Secret watch woke the set.
        assert await eventually(made, timeout=15, what="edge-edge1") == ["edge-edge1"]
    finally:
        await stop_controller(running)


async def test_rolling_sync_delivers_step_by_step_through_the_controller(
    api: Kube, release_apps: str, git_repo: Workdir, tmp_path: Path, crds_installed: None
) -> None:
    namespace = release_apps
    git_repo.commit_and_push(overlays(("development", "production")), "overlays")
    obj = article(_plain_url(git_repo.remote), namespace)
    obj["spec"]["generators"][0]["list"]["elements"] = [
        {"cluster": "development", "url": "https://kubernetes.default.svc"},
        {"cluster": "production", "url": "https://kubernetes.default.svc"},
    ]
    obj["spec"]["template"]["metadata"]["labels"] = {"env": "{{cluster}}"}
    obj["spec"]["template"]["spec"]["syncPolicy"] = {"automated": {"prune": True}}
    obj["spec"]["strategy"] = {
        "type": "RollingSync",
        "rollingSync": {
            "steps": [
                {"matchExpressions": [{"key": "env", "operator": "In", "values": ["development"]}]},
                {"matchExpressions": [{"key": "env", "operator": "In", "values": ["production"]}]},
            ]
        },
    }
    running = await start_controller(api, namespace, tmp_path)
    try:
        await api.create(obj)

        async def complete() -> Obj | None:
            found = await conditions(api, namespace, "myapp")
            done = found.get("RolloutProgressing", {}).get("status") == "False"
            return await api.get(V1A1, "ApplicationSet", "myapp", namespace) if done else None

        final = await eventually(complete, timeout=90, what="the rollout to complete")
        assert [
            (s["application"], s["status"], s["step"]) for s in final["status"]["applicationStatus"]
        ] == [
            ("myapp-development", "Healthy", "1"),
            ("myapp-production", "Healthy", "2"),
        ]
        dev = await api.get(V1A1, "Application", "myapp-development", namespace)
        prod = await api.get(V1A1, "Application", "myapp-production", namespace)
        # Generated without automated sync; production synced only after development finished.
        assert "automated" not in (prod["spec"].get("syncPolicy") or {})
        assert (
            prod["status"]["operationState"]["startedAt"]
            >= dev["status"]["operationState"]["finishedAt"]
        )
        for env in ("development", "production"):
            assert await api.get("v1", "ConfigMap", f"myapp-{env}", namespace) is not None
    finally:
        await stop_controller(running)


async def test_appset_list_and_get_show_the_set_and_its_applications(
    api: Kube, release_apps: str, tmp_path: Path, crds_installed: None, cluster: Any
) -> None:
    namespace = release_apps
    await reconciler(api, namespace, tmp_path).reconcile(
        await apply_set(api, list_set(namespace, ("a", "b")))
    )
    where = ["--kubeconfig", str(cluster.kubeconfig), "-N", namespace]
    runner = CliRunner()
    # The CLI runs its own event loop: run it off this test's loop.
    got = await asyncio.to_thread(
        runner.invoke, cli, ["appset", "get", "envs", *where, "-o", "json"]
    )
    assert got.exit_code == 0, got.output
    assert [r["name"] for r in json.loads(got.stdout)["status"]["resources"]] == ["app-a", "app-b"]
    listed = await asyncio.to_thread(
        runner.invoke, cli, ["appset", "list", *where], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.output
    assert "envs" in listed.stdout
    assert "list" in listed.stdout
    missing = await asyncio.to_thread(runner.invoke, cli, ["appset", "get", "nope", *where])
    assert missing.exit_code == 1
    assert "not found" in missing.output
