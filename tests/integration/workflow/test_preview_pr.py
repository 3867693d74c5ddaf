"""`gitsail preview --pr`: two refs of a remote fetched by the source layer, real git server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir, git
from tests.integration.helpers import Kube as HelperKube
from tests.integration.workflow.conftest import gitsail_env
from tests.integration.workflow.test_promote_preview import install_crds_sync

pytestmark = pytest.mark.integration

PRODUCTION = "apps/overlays/production/kustomization.yaml"
PRODUCTION_APPS = [
    "Application/argocd/myapp-production",
    "Kustomization/flux-system/myapp-production",
]


def _pull_request(checkout: Workdir, ref: str) -> str:
    """A change of production's tag pushed as ``ref`` (main stays where it was)."""
    text = (checkout.path / PRODUCTION).read_text().replace("newTag: v1.0.0", "newTag: 1.2.0")
    checkout.write({PRODUCTION: text})
    sha = checkout.commit("bump production")
    git("push", "--quiet", "origin", f"HEAD:{ref}", cwd=checkout.path)
    git("reset", "--quiet", "--hard", "HEAD~1", cwd=checkout.path)
    return sha


def _plain(url: str) -> tuple[str, str, str]:
    """``url`` without its userinfo, and the user and password it carried."""
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    user, _, password = userinfo.partition(":")
    return f"{scheme}://{host}", user, password


def test_pr_fetches_both_refs_of_the_remote_outside_any_checkout(
    checkout: Workdir, tmp_path: Path
) -> None:
    """A pull request's ref (``refs/pull/7/head``, as GitHub serves it) against main, run
    from a directory that is no checkout; the token comes from the environment and appears
    nowhere in the output."""
    head = _pull_request(checkout, "refs/pull/7/head")
    url, user, password = _plain(checkout.remote)
    env = {"GITSAIL_GIT_USERNAME": user, "GITSAIL_GIT_PASSWORD": password}
    done = gitsail_env(
        ["preview", "--pr", "--repo", url, "main", "refs/pull/7/head", "--offline", "-o", "json"],
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1, done.stderr  # something changes
    report = json.loads(done.stdout)
    assert report["head"] == head
    affected = [f"{a['kind']}/{a['namespace']}/{a['name']}" for a in report["affected"]]
    assert affected == PRODUCTION_APPS
    assert report["renders"] == 4  # the two production apps, at both revisions; nothing else
    for app in report["affected"]:
        (obj,) = app["objects"]
        assert "+      - image: myregistry.io/myapp:1.2.0" in obj["diff"]
    assert password not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran

    markdown = gitsail_env(
        ["preview", "--pr", "--repo", url, "main..refs/pull/7/head", "--offline",
         "-o", "markdown"],
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert markdown.returncode == 1, markdown.stderr
    assert "2 of 6 apps affected." in markdown.stdout
    assert "| `Application/argocd/myapp-production` |" in markdown.stdout


def test_pr_defaults_to_the_checkouts_remote(checkout: Workdir) -> None:
    """Without --repo: the checkout's origin URL (credentials in it are used, not shown);
    the checkout itself is not read (its work tree has an unrelated, uncommitted change)."""
    _pull_request(checkout, "refs/heads/feature")
    (checkout.path / "apps/base/myapp/service.yaml").write_text("not: [yaml")
    done = gitsail_env(
        ["preview", "--pr", "main..feature", "--offline", "-o", "json"],
        cwd=checkout.path,
        env={},
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [a["name"] for a in report["affected"]] == ["myapp-production"] * 2
    _, _, password = _plain(checkout.remote)
    assert password not in done.stdout + done.stderr


def test_pr_of_an_unchanged_ref_exits_0(checkout: Workdir, tmp_path: Path) -> None:
    git("push", "--quiet", "origin", "HEAD:refs/heads/same", cwd=checkout.path)
    done = gitsail_env(
        ["preview", "--pr", "--repo", checkout.remote, "main", "same", "--offline", "-o", "json"],
        cwd=tmp_path,
        env={},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["affected"] == []


def test_pr_refuses_what_the_source_layer_refuses(checkout: Workdir, tmp_path: Path) -> None:
    """A ref that does not exist, a revision that would be an option, a file URL without the
    operator's permission, and a wrong token: each refused with a message, nothing leaked."""
    url, user, _ = _plain(checkout.remote)
    cases = [
        (["main", "no-such-branch"], {}, "no-such-branch"),
        (["main", "--upload-pack=touch /tmp/x"], {}, "upload-pack"),
    ]
    for revisions, env, needle in cases:
        done = gitsail_env(
            ["preview", "--pr", "--repo", checkout.remote, "--offline", "--", *revisions],
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode != 0
        assert needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr

    local = gitsail_env(
        ["preview", "--pr", "--repo", f"file://{checkout.path}", "main", "main", "--offline"],
        cwd=tmp_path,
        env={"GITSAIL_ALLOW_FILE_URLS": "false"},
    )
    assert local.returncode == 1
    assert "file" in local.stderr.lower()

    wrong = gitsail_env(
        ["preview", "--pr", "--repo", url, "main", "main", "--offline"],
        cwd=tmp_path,
        env={"GITSAIL_GIT_USERNAME": user, "GITSAIL_GIT_PASSWORD": "not-the-token"},
    )
    assert wrong.returncode == 1
    assert "not-the-token" not in wrong.stderr + wrong.stdout
    assert "Traceback" not in wrong.stderr


def test_pr_with_live_diffs_the_fetched_head_against_the_cluster(
    git_repo: Workdir, kube: HelperKube, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    """--pr --live: the head checkout fetched from the remote, rendered and compared with
    the cluster (a server-side dry run) while it still exists; apps from the cluster."""
    install_crds_sync(cluster)
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  color: {}\n"
    git_repo.commit_and_push({"apps/web/cm.yaml": config.format("blue")}, "web")
    kube.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "web-config"}, "data": {"color": "blue"}},
    )
    url, _, _ = _plain(git_repo.remote)
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "targetRevision": "main", "path": "apps/web"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        },
    }
    kube.create(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications", app)
    git_repo.write({"apps/web/cm.yaml": config.format("green")})
    git_repo.commit("green")
    git("push", "--quiet", "origin", "HEAD:refs/heads/green", cwd=git_repo.path)
    shown = gitsail_env(
        ["preview", "--pr", "--repo", git_repo.remote, "main", "green", "--live", "-o", "json"],
        cwd=tmp_path,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert shown.returncode == 1, shown.stderr
    report = json.loads(shown.stdout)
    assert [a["name"] for a in report["affected"] if a["namespace"] == namespace] == ["web"]
    (live,) = report["live"][f"Application/{namespace}/web"]
    assert (live["name"], live["change"]) == ("web-config", "changed")
    assert "+  color: green" in live["diff"]
