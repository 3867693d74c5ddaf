"""`gitsail promote` and `gitsail preview` on the article's layout, real git and kustomize."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir, git
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from gitsail.render import RenderOptions
from gitsail.workflow.gitops import Repo
from gitsail.workflow.preview import AppSource, preview
from tests.integration.helpers import Kube as HelperKube
from tests.integration.workflow.conftest import gitsail, gitsail_env, remote_file

pytestmark = pytest.mark.integration

STAGING = "apps/overlays/staging/kustomization.yaml"
PRODUCTION = "apps/overlays/production/kustomization.yaml"
PRODUCTION_APPS = [
    "Application/argocd/myapp-production",
    "Kustomization/flux-system/myapp-production",
]


def _staging_tested(checkout: Workdir) -> str:
    """CI bumped staging to 1.2.0 and it was tested there."""
    text = (checkout.path / STAGING).read_text().replace("newTag: 1.0.0", "newTag: 1.2.0")
    return checkout.commit_and_push({STAGING: text}, "chore(deploy): staging 1.2.0")


def test_promote_commits_the_one_line_image_change(checkout: Workdir) -> None:
    _staging_tested(checkout)
    before = (checkout.path / PRODUCTION).read_text()
    done = gitsail(
        "promote", "--from", "apps/overlays/staging", "--to", "apps/overlays/production",
        "--push", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = remote_file(checkout, "main", PRODUCTION)
    assert after == before.replace("newTag: v1.0.0", "newTag: 1.2.0")
    assert remote_file(checkout, "main", STAGING).count("1.2.0") == 1  # staging untouched
    subject = git("log", "-1", "--format=%s", "origin/main", cwd=checkout.path).strip()
    assert subject == (
        "chore(promote): myregistry.io/myapp 1.2.0 from apps/overlays/staging to "
        "apps/overlays/production"
    )
    # the description carries the rendered diff of production's Deployment
    assert "## Promote `apps/overlays/staging` → `apps/overlays/production`" in done.stdout
    assert "-      - image: myregistry.io/myapp:v1.0.0" in done.stdout
    assert "+      - image: myregistry.io/myapp:1.2.0" in done.stdout


def test_promote_as_a_branch_then_preview_lists_exactly_the_production_apps(
    checkout: Workdir,
) -> None:
    main = _staging_tested(checkout)
    done = gitsail(
        "promote", "--from", "apps/overlays/staging", "--to", "apps/overlays/production",
        "--branch", "promote/production-1.2.0", "--push", "-o", "json", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["branch"] == "promote/production-1.2.0"
    assert result["images"] == [{"name": "myregistry.io/myapp", "from": "v1.0.0", "to": "1.2.0"}]
    assert "```diff" in result["description"]
    assert "newTag: 1.2.0" in remote_file(checkout, "promote/production-1.2.0", PRODUCTION)
    heads = git("ls-remote", "--heads", "origin", cwd=checkout.path)
    assert f"{main}\trefs/heads/main" in heads  # main is where it was: the PR merges it

    shown = gitsail(
        "preview", "main..promote/production-1.2.0", "--offline", "-o", "json",
        cwd=checkout.path,
    )  # fmt: skip
    assert shown.returncode == 1, shown.stderr  # something changes
    report = json.loads(shown.stdout)
    affected = [f"{a['kind']}/{a['namespace']}/{a['name']}" for a in report["affected"]]
    assert affected == PRODUCTION_APPS
    assert report["appsConsidered"] == 6
    for app in report["affected"]:
        (obj,) = app["objects"]
        assert (obj["kind"], obj["name"], obj["change"]) == ("Deployment", "myapp", "changed")
        assert "+      - image: myregistry.io/myapp:1.2.0" in obj["diff"]

    markdown = gitsail(
        "preview", "main..promote/production-1.2.0", "--offline", "-o", "markdown",
        cwd=checkout.path,
    )  # fmt: skip
    assert "2 of 6 apps affected." in markdown.stdout
    assert "| `Application/argocd/myapp-production` |" in markdown.stdout


def test_preview_of_a_change_outside_every_app_changes_nothing(checkout: Workdir) -> None:
    checkout.commit_and_push({"README.md": "docs only\n"}, "docs")
    done = gitsail("preview", "HEAD~1..HEAD", "--offline", "-o", "json", cwd=checkout.path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["affected"] == []


def test_preview_of_a_shared_base_affects_every_environment(checkout: Workdir) -> None:
    path = "apps/base/myapp/service.yaml"
    text = (checkout.path / path).read_text().replace("port: 80", "port: 8080")
    checkout.commit_and_push({path: text}, "service port")
    done = gitsail("preview", "HEAD~1..HEAD", "--offline", "-o", "json", cwd=checkout.path)
    assert done.returncode == 1
    assert len(json.loads(done.stdout)["affected"]) == 6


def test_preview_refuses_a_revision_that_is_not_a_commit(checkout: Workdir) -> None:
    done = gitsail("preview", "main..--output=/tmp/x", "--offline", cwd=checkout.path)
    assert done.returncode == 1
    assert "not a revision" in done.stderr or "does not name a commit" in done.stderr


def test_monorepo_preview_renders_only_the_touched_app(tmp_path: Path) -> None:
    """200 apps, one touched: one app rendered (at both revisions), none of the others."""
    root = tmp_path / "mono"
    apps = []
    for i in range(200):
        app_dir = root / "apps" / f"app-{i:03d}"
        app_dir.mkdir(parents=True)
        (app_dir / "cm.yaml").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i:03d}\ndata:\n  v: '1'\n"
        )
        apps.append(AppSource("Application", "argocd", f"app-{i:03d}", f"apps/app-{i:03d}"))
    git("init", "-q", "-b", "main", str(root))
    git("add", "--all", cwd=root)
    git("commit", "-qm", "many apps", cwd=root)
    touched = root / "apps/app-137/cm.yaml"
    touched.write_text(touched.read_text().replace("'1'", "'2'"))
    git("commit", "-qam", "touch one", cwd=root)

    rendered: list[str] = []

    def render(app_dir: Path, repo_root: Path, options: RenderOptions) -> list[Obj]:
        import yaml

        rendered.append(app_dir.name)
        return [yaml.safe_load((app_dir / "cm.yaml").read_text())]

    result = preview(Repo.at(root), "HEAD~1", "HEAD", apps=lambda _b, _h: apps, render=render)
    assert [p.app.name for p in result.affected] == ["app-137"]
    assert rendered == ["app-137", "app-137"]
    assert result.renders == 2
    (diff,) = result.affected[0].diffs
    assert "-  v: '1'" in diff.diff
    assert "+  v: '2'" in diff.diff


def _application(name: str, namespace: str, url: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "targetRevision": "main", "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
        },
    }


def test_preview_finds_the_apps_of_this_repository_in_the_cluster(
    checkout: Workdir, kube: HelperKube, namespace: str, cluster: Cluster
) -> None:
    """Apps come from the cluster: this repository's production app (by URL, credentials
    and `.git` aside), not staging's unchanged app, nor an app of another repository."""
    install_crds_sync(cluster)
    scheme, _, rest = checkout.remote.partition("://")
    plain = f"{scheme}://{rest.split('@')[-1]}"
    apps = [
        _application("prod", namespace, plain.removesuffix(".git"), "apps/overlays/production"),
        _application("stage", namespace, plain, "apps/overlays/staging"),
        _application("elsewhere", namespace, "https://git.example.com/other.git",
                     "apps/overlays/production"),
    ]  # fmt: skip
    for app in apps:
        kube.create(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications", app)
    _staging_tested(checkout)
    done = gitsail(
        "promote", "--from", "apps/overlays/staging", "--to", "apps/overlays/production",
        "--branch", "promote/cluster", "--no-render", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = gitsail_env(
        ["preview", "main..promote/cluster", "-o", "json"],
        cwd=checkout.path,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert shown.returncode == 1, shown.stderr
    report = json.loads(shown.stdout)
    ours = [a["name"] for a in report["affected"] if a["namespace"] == namespace]
    assert ours == ["prod"]


def install_crds_sync(cluster: Cluster) -> None:
    async def run() -> None:
        async with Kube(await load_kubeconfig(cluster.kubeconfig)) as api:
            await install_crds(api)  # Flux and Argo CD CRDs (idempotent)

    asyncio.run(run())


def test_preview_live_diffs_the_head_render_against_the_cluster(
    git_repo: Workdir, kube: HelperKube, namespace: str, cluster: Cluster
) -> None:
    install_crds_sync(cluster)
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  color: {}\n"
    git_repo.commit_and_push({"apps/web/cm.yaml": config.format("blue")}, "web")
    kube.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "web-config"}, "data": {"color": "blue"}},
    )
    scheme, _, rest = git_repo.remote.partition("://")
    app = _application("web", namespace, f"{scheme}://{rest.split('@')[-1]}", "apps/web")
    app["spec"]["destination"]["namespace"] = namespace
    kube.create(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications", app)
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-extra\ndata:\n  a: b\n"
    git_repo.commit_and_push(
        {"apps/web/cm.yaml": config.format("green"), "apps/web/extra.yaml": extra}, "green"
    )
    shown = gitsail_env(
        ["preview", "HEAD~1..HEAD", "--live", "-o", "json"],
        cwd=git_repo.path,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout, shown.stderr
    report = json.loads(shown.stdout)
    live = report["live"][f"Application/{namespace}/web"]
    by_name = {d["name"]: d for d in live}
    assert by_name["web-config"]["change"] == "changed"
    assert "-  color: blue" in by_name["web-config"]["diff"]
    assert "+  color: green" in by_name["web-config"]["diff"]
    assert by_name["web-extra"]["change"] == "missing"
    assert all(d["namespace"] == namespace for d in live)
