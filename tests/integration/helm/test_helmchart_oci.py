"""A Flux HelmChart from a ``type: oci`` HelmRepository: the chart is pulled from a real
``distribution`` registry (pushed there by the real ``helm push``) through the engine's OCI
client, exactly as the controller wires it (``HelmChartReconciler(oci=engine.oci_charts)``)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from gitsail.dev.registry import Registry
from gitsail.kinds.flux_helmchart_reconciler import HelmChartReconciler
from gitsail.kinds.flux_helmrepository_reconciler import HelmRepositoryReconciler
from gitsail.kube import Kube
from gitsail.policy import DEFAULT_POLICY
from gitsail.source import HelmRepoSource
from gitsail.source.artifacts import ArtifactStore
from tests.integration.flux.test_gitrepository import condition, store
from tests.integration.helm.test_helm_sources import SOURCE, Harness, helm_chart, make_harness
from tests.integration.helm.test_oci_argo import publish

__all__ = ["store"]  # fixtures used here

pytestmark = pytest.mark.integration


def _oci_harness(kube: Kube, namespace: str, store: ArtifactStore, tmp_path: Path) -> Harness:
    harness = make_harness(kube, namespace, store, tmp_path, DEFAULT_POLICY)
    helm: HelmRepoSource = harness.helm
    harness.repos = HelmRepositoryReconciler(kube, helm, store)
    harness.charts = HelmChartReconciler(kube, helm, store, oci=helm.oci)
    return harness


async def test_a_helmchart_of_an_oci_helmrepository_pulls_the_highest_matching_version(
    flux_kube: Kube, store: ArtifactStore, namespace: str, tmp_path: Path, oci_registry: Registry
) -> None:
    harness = _oci_harness(flux_kube, namespace, store, tmp_path)
    publish(oci_registry, f"{namespace}/charts", tmp_path, "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0")
    await harness.apply(
        {
            "apiVersion": SOURCE,
            "kind": "HelmRepository",
            "metadata": {"name": "bitnami"},
            "spec": {
                "type": "oci",
                "interval": "5m",
                "url": f"oci://{oci_registry.host}/{namespace}/charts",
            },
        }
    )
    _, repo = await harness.reconcile("HelmRepository", "bitnami")
    assert condition(repo, "Ready")["status"] == "True", repo["status"]
    assert "artifact" not in repo["status"]  # an OCI repository holds no index

    chart = helm_chart("1.x")
    chart["spec"]["chart"] = "web"
    await harness.apply(chart)
    _, got = await harness.reconcile("HelmChart", "redis")
    assert condition(got, "Ready")["status"] == "True", got["status"]
    artifact = got["status"]["artifact"]
    assert artifact["revision"] == "1.1.0"  # not the pre-release, not 2.0.0
    local = store.local_path(artifact["path"])
    assert local is not None
    data = local.read_bytes()
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("web/Chart.yaml")
        assert member is not None
        assert yaml.safe_load(member.read())["version"] == "1.1.0"

    # A version that is not in the registry: Ready=False, the last artifact kept.
    await harness.kube.merge_patch(
        SOURCE, "HelmChart", "redis", {"spec": {"version": "9.x"}}, namespace
    )
    _, missing = await harness.reconcile("HelmChart", "redis")
    assert condition(missing, "Ready")["status"] == "False"
    assert "9.x" in condition(missing, "Ready")["message"]
    assert missing["status"]["artifact"] == artifact
