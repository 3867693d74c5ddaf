"""`gitsail doctor --cluster` against the real control plane: each cluster rule finds its
planted problem in the test's namespace, and a clean app there has no finding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from tests.integration.helpers import Kube as HelperKube
from tests.integration.workflow.conftest import EXAMPLE, gitsail_env
from tests.integration.workflow.test_promote_preview import install_crds_sync

pytestmark = pytest.mark.integration


def _application(name: str, namespace: str, automated: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": "https://git.example.com/r.git", "path": "apps/x"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
    }
    if automated is not None:
        spec["syncPolicy"] = {"automated": automated}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _drift_event(namespace: str, app: str, count: int) -> dict[str, Any]:
    """What gitsail's reconciler records for attributed drift (aggregated with count)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{app}.drift", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "namespace": namespace,
            "name": app,
        },
        "reason": "DriftDetected",
        "type": "Warning",
        "message": "apps/Deployment/web /spec/replicas changed by kubectl-scale (Update)",
        "count": count,
        "firstTimestamp": "2026-12-01T10:00:00Z",
        "lastTimestamp": "2026-12-02T10:00:00Z",
        "source": {"component": "gitsail"},
    }


def _pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": image}],
        },
    }


def _ours(findings: list[dict[str, Any]], namespace: str) -> list[tuple[str, str]]:
    return sorted(
        (f["rule"], f["file"])
        for f in findings
        if f["file"].startswith("cluster:") and f"/{namespace}/" in f["file"]
    )


def test_cluster_rules_find_each_planted_problem(
    kube: HelperKube, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    install_crds_sync(cluster)
    apps = f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications"
    kube.create(apps, _application("manual", namespace, None))
    kube.create(apps, _application("no-heal", namespace, {"prune": True}))
    kube.create(apps, _application("clean", namespace, {"prune": True, "selfHeal": True}))
    kube.create(f"/api/v1/namespaces/{namespace}/events", _drift_event(namespace, "clean", 4))
    kube.create(f"/api/v1/namespaces/{namespace}/events", _drift_event(namespace, "manual", 1))
    kube.create(f"/api/v1/namespaces/{namespace}/pods", _pod("latest", "busybox:latest"))
    kube.create(f"/api/v1/namespaces/{namespace}/pods", _pod("pinned", "busybox:1.36.1"))

    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    done = gitsail_env(
        ["doctor", str(repo), "--no-render", "--cluster", "-o", "json"],
        cwd=tmp_path,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)
    assert _ours(findings, namespace) == [
        ("mutable-tag", f"cluster:Pod/{namespace}/latest"),
        ("no-automated-sync", f"cluster:Application/{namespace}/manual"),
        ("no-self-heal", f"cluster:Application/{namespace}/no-heal"),
        ("recurring-drift", f"cluster:Application/{namespace}/clean"),
    ]
    drift = next(f for f in findings if f["rule"] == "recurring-drift" and namespace in f["file"])
    assert "4 times" in drift["message"]
    assert "kubectl-scale" in drift["message"]
    # the example repository itself is clean without rendering: only cluster findings
    assert all(f["file"].startswith("cluster:") for f in findings)

    sarif = gitsail_env(
        ["doctor", str(repo), "--no-render", "--cluster", "-o", "sarif"],
        cwd=tmp_path,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    results = json.loads(sarif.stdout)["runs"][0]["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert f"cluster:Application/{namespace}/manual" in uris


def test_an_unreachable_cluster_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
        "    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n"
        "current-context: c\nusers:\n- name: u\n  user: {token: x}\n"
    )
    (tmp_path / "repo").mkdir()
    done = gitsail_env(
        ["doctor", str(tmp_path / "repo"), "--cluster"],
        cwd=tmp_path,
        env={"KUBECONFIG": str(config)},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot read the cluster" in done.stderr
