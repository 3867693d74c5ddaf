"""`gitsail app …`, `gitsail install` and `gitsail render` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import (
    EXAMPLES,
    ApplicationFactory,
    configmap,
    public_url,
)

pytestmark = pytest.mark.integration


def gitsail(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(Path.home()),
        },
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"gitsail {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


async def test_install_crds_only_is_idempotent(cluster: Cluster, crds: None) -> None:
    out = gitsail(cluster, "install", "--crds-only").stdout
    assert "applications.argoproj.io established" in out
    printed = list(yaml.safe_load_all(gitsail(cluster, "install", "--crds-only", "--print").stdout))
    assert {d["spec"]["names"]["kind"] for d in printed} == {
        "Application",
        "AppProject",
        "ApplicationSet",
        "GitRepository",
        "HelmChart",
        "HelmRelease",
        "HelmRepository",
        "Kustomization",
        "OCIRepository",
        "Receiver",
        "Provider",
        "Alert",
        "ImageRepository",
        "ImagePolicy",
        "ImageUpdateAutomation",
        "SealedSecret",
        "SecretStore",
        "ClusterSecretStore",
        "ExternalSecret",
        "ClusterExternalSecret",
    }


async def test_install_applies_the_controller_with_rbac(
    cluster: Cluster, kube_client: Kube, namespace: str
) -> None:
    target = f"{namespace}-gitsail"
    out = gitsail(cluster, "install", "-n", target, "--replicas", "2").stdout
    try:
        assert f"deployment apps/Deployment {target}/gitsail-controller" in out
        binding = await kube_client.get(
            "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "gitsail-controller"
        )
        assert binding is not None
        assert binding["subjects"][0]["namespace"] == target
        deployment = await kube_client.get("apps/v1", "Deployment", "gitsail-controller", target)
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "gitsail-controller"
        again = gitsail(cluster, "install", "-n", target, "--replicas", "2")
        assert again.returncode == 0
    finally:
        await kube_client.delete("v1", "Namespace", target)


async def test_diff_sync_history_and_json_output(
    cluster: Cluster,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("cli", v="1")}, "v1")
    await make_app("cli", {"repoURL": public_url(git_repo), "path": "app"})
    ns = ["-N", namespace]

    diff = gitsail(cluster, "app", "diff", "cli", *ns, check=False)
    assert diff.returncode == 1, diff.stderr
    assert "ConfigMap" in diff.stdout
    assert "cli" in diff.stdout

    dry = gitsail(cluster, "app", "sync", "cli", "--in-process", "--dry-run", *ns, "-o", "json")
    assert json.loads(dry.stdout)["phase"] == "Succeeded"
    assert await kube_client.get("v1", "ConfigMap", "cli", namespace) is None

    synced = gitsail(cluster, "app", "sync", "cli", "--in-process", *ns)
    assert "Succeeded" in synced.stdout
    assert gitsail(cluster, "app", "diff", "cli", *ns).returncode == 0

    rows = json.loads(gitsail(cluster, "app", "list", *ns, "-o", "json").stdout)
    assert [r["metadata"]["name"] for r in rows] == ["cli"]
    got = yaml.safe_load(gitsail(cluster, "app", "get", "cli", *ns, "-o", "yaml").stdout)
    assert got["status"]["sync"]["status"] == "Synced"
    table = gitsail(cluster, "app", "get", "cli", *ns).stdout
    assert "Synced" in table
    assert "ConfigMap" in table

    history = json.loads(gitsail(cluster, "app", "history", "cli", *ns, "-o", "json").stdout)
    assert [h["id"] for h in history] == [0]

    git_repo.commit_and_push({"app/cm.yaml": configmap("cli", v="2")}, "v2")
    gitsail(cluster, "app", "sync", "cli", "--in-process", *ns)
    live = await kube_client.get("v1", "ConfigMap", "cli", namespace)
    assert live is not None
    assert live["data"]["v"] == "2"

    rolled = gitsail(cluster, "app", "rollback", "cli", "0", *ns)
    assert "Succeeded" in rolled.stdout
    live = await kube_client.get("v1", "ConfigMap", "cli", namespace)
    assert live is not None
    assert live["data"]["v"] == "1"
    waited = gitsail(cluster, "app", "wait", "cli", "--health", "--timeout", "60", *ns)
    assert "Healthy" in waited.stdout


async def test_rollback_is_refused_while_automated_sync_is_on(
    cluster: Cluster,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("auto", v="1")}, "v1")
    await make_app(
        "auto",
        {"repoURL": public_url(git_repo), "path": "app"},
        syncPolicy={"automated": {"prune": True}},
    )
    gitsail(cluster, "app", "sync", "auto", "--in-process", "-N", namespace)
    refused = gitsail(cluster, "app", "rollback", "auto", "0", "-N", namespace, check=False)
    assert refused.returncode == 1
    assert "auto-sync is enabled" in refused.stderr
    assert "syncPolicy/automated" in refused.stderr


async def test_sync_of_a_failing_app_exits_non_zero(
    cluster: Cluster,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/bad.yaml": "kind: [\n"}, "bad")
    await make_app("broken", {"repoURL": public_url(git_repo), "path": "app"})
    proc = gitsail(cluster, "app", "sync", "broken", "--in-process", "-N", namespace, check=False)
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stdout + proc.stderr


async def test_unknown_application_is_a_clear_error(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    proc = gitsail(cluster, "app", "get", "nope", "-N", namespace, check=False)
    assert proc.returncode == 1
    assert f"application nope not found in namespace {namespace}" in proc.stderr


def test_render_prints_the_article_overlay_without_a_cluster(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", "render", str(EXAMPLES / "apps/overlays/staging")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "KUBECONFIG": "/nonexistent"},
    )
    docs = list(yaml.safe_load_all(proc.stdout))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "staging"
    assert deployment["spec"]["replicas"] == 2


def test_render_with_an_application_manifest_uses_its_options(tmp_path: Path) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "x"},
                "spec": {
                    "source": {
                        "repoURL": "https://example.invalid/r.git",
                        "path": "apps/overlays/production",
                        "kustomize": {"namePrefix": "prod-"},
                    },
                    "destination": {"namespace": "production"},
                },
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", "render", str(EXAMPLES), "--app", str(app), "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    names = {d["metadata"]["name"] for d in json.loads(proc.stdout)}
    assert names == {"prod-myapp"}
