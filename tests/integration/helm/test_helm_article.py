"""The article's Flux Helm example end to end, through the REAL in-process controller and the
real chart repository: ``HelmRepository`` (v1beta2) + ``HelmRelease`` (v2beta1, ``"17.x"``,
inline values) applied as written (only the repository URL points at the loopback chart
server and the namespaces are the test's). The controller's own HelmRepository and HelmChart
reconcilers fetch the index and the chart; the release is a real Helm release that the pinned
``helm`` binary lists, and publishing 17.5.0 upgrades it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.dev.chartrepo import ChartRepo
from gitsail.dev.cluster import Cluster
from gitsail.dev.registry import Registry
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.controller.conftest import (
    RunningController,
    api,
    control_ns,
    crds_installed,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.helm.releases import HR, helm_cli
from tests.integration.helm.test_oci_argo import publish

__all__ = ["api", "control_ns", "crds_installed"]  # fixtures

pytestmark = pytest.mark.integration

ARTICLE = """\
apiVersion: source.toolkit.fluxcd.io/v1beta2
kind: HelmRepository
metadata:
  name: bitnami
  namespace: flux-system
spec:
  interval: 1h
  url: https://charts.bitnami.com/bitnami
---
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata:
  name: redis
  namespace: redis
spec:
  interval: 1h
  chart:
    spec:
      chart: redis
      version: "17.x"
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: flux-system
  values:
    architecture: standalone
    auth:
      enabled: true
"""


@pytest.fixture
async def running(
    api: Kube, control_ns: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[RunningController]:
    controller = await start_controller(api, control_ns, tmp_path)
    yield controller
    await stop_controller(controller)


def ready(obj: Obj | None) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_the_articles_helmrepository_and_helmrelease_install_and_upgrade_redis(
    api: Kube,
    control_ns: str,
    running: RunningController,
    chart_repo: ChartRepo,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    ns = control_ns  # the controller watches this namespace: both objects live here
    repository, release = yaml.safe_load_all(ARTICLE)
    repository["metadata"]["namespace"] = ns
    repository["spec"]["url"] = chart_repo.url
    release["metadata"]["namespace"] = ns
    release["spec"]["chart"]["spec"]["sourceRef"]["namespace"] = ns
    await api.apply(repository, field_manager="kubectl")
    await api.apply(release, field_manager="kubectl")

    async def released(version: str) -> Obj | None:
        obj = await api.get(HR, "HelmRelease", "redis", ns)
        history = ((obj or {}).get("status") or {}).get("history") or []
        done = ready(obj).get("status") == "True" and history
        return obj if done and history[0]["chartVersion"] == version else None

    obj = await eventually(lambda: released("17.3.2"), timeout=120, what="redis 17.3.2 released")
    assert obj["status"]["history"][0]["version"] == 1
    chart = await api.get("source.toolkit.fluxcd.io/v1", "HelmChart", f"{ns}-redis", ns)
    assert chart is not None
    assert chart["status"]["artifact"]["revision"] == "17.3.2"  # not 17.4.0-rc.1, not 16.x

    # The real helm sees a real release: its revision, chart and values.
    home = tmp_path / "helm-home"
    listed = helm_cli(cluster.kubeconfig, "list", f"--namespace={ns}", "-o", "json", home=home)
    assert listed.returncode == 0, listed.stderr
    (entry,) = [r for r in json.loads(listed.stdout) if r["name"] == "redis"]
    assert (entry["revision"], entry["chart"], entry["status"]) == ("1", "redis-17.3.2", "deployed")
    values = helm_cli(
        cluster.kubeconfig, "get", "values", "redis", f"--namespace={ns}", "-o", "json", home=home
    )
    assert json.loads(values.stdout) == {"architecture": "standalone", "auth": {"enabled": True}}

    # A new 17.x release in the repository: the source is asked to reconcile, the chart and
    # the release follow through the dependency index (their intervals are an hour).
    chart_repo.publish("17.5.0")
    await api.merge_patch(
        "source.toolkit.fluxcd.io/v1",
        "HelmRepository",
        "bitnami",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now-1"}}},
        ns,
    )
    obj = await eventually(lambda: released("17.5.0"), timeout=120, what="redis 17.5.0 released")
    assert obj["status"]["history"][0]["version"] == 2
    history = helm_cli(
        cluster.kubeconfig, "history", "redis", f"--namespace={ns}", "-o", "json", home=home
    )
    revisions = [(h["revision"], h["chart"], h["status"]) for h in json.loads(history.stdout)]
    assert revisions == [(1, "redis-17.3.2", "superseded"), (2, "redis-17.5.0", "deployed")]


async def test_a_helmrelease_installs_a_chart_from_an_oci_helmrepository(
    api: Kube,
    control_ns: str,
    running: RunningController,
    oci_registry: Registry,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    """HelmRepository ``type: oci`` → the HelmChart the release makes pulls through the
    controller's OCI client → a real Helm release of the highest matching version."""
    ns = control_ns
    publish(oci_registry, f"{ns}/charts", tmp_path, "1.0.0", "1.1.0", "2.0.0")
    await api.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": "registry", "namespace": ns},
            "spec": {
                "type": "oci",
                "interval": "1h",
                "url": f"oci://{oci_registry.host}/{ns}/charts",
            },
        },
        field_manager="kubectl",
    )
    await api.apply(
        {
            "apiVersion": HR,
            "kind": "HelmRelease",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "interval": "1h",
                "chart": {
                    "spec": {
                        "chart": "web",
                        "version": "1.x",
                        "sourceRef": {"kind": "HelmRepository", "name": "registry"},
                    }
                },
                "values": {"color": "green"},
            },
        },
        field_manager="kubectl",
    )

    async def released() -> Obj | None:
        obj = await api.get(HR, "HelmRelease", "web", ns)
        history = ((obj or {}).get("status") or {}).get("history") or []
        return obj if ready(obj).get("status") == "True" and history else None

    obj = await eventually(released, timeout=120, what="web released from the OCI registry")
    assert obj["status"]["history"][0]["chartVersion"] == "1.1.0"
    settings = await api.get("v1", "ConfigMap", "web-settings", ns)
    assert settings is not None
    assert settings["data"] == {"color": "green", "chart": "1.1.0"}
    listed = helm_cli(
        cluster.kubeconfig, "list", f"--namespace={ns}", "-o", "json", home=tmp_path / "h"
    )
    (entry,) = [r for r in json.loads(listed.stdout) if r["name"] == "web"]
    assert entry["chart"] == "web-1.1.0"
