"""Upgrades across a CRD change, in a private dev cluster (CRDs are cluster-wide, and the
shared cluster serves the current ones already).

The "previous release" is made from the current one with one CRD version fewer: GitRepository
(chart) and ExternalSecret (`gitsail install`) served and stored only at their older version,
as Flux and ESO were before their v1. Objects are made at that version, the current release
is installed over it, and the objects must stay readable with no stored version unserved.
A release that would stop serving a stored version is refused by the chart (a `lookup`
guard) and by `gitsail install` (before anything is applied)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.dev import cluster as devcluster
from tests.integration.chart.test_chart import CHART, helm
from tests.integration.helpers import Kube, eventually

pytestmark = pytest.mark.integration

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GITREPO_CRD = "gitrepositories.source.toolkit.fluxcd.io"
EXTSECRET_CRD = "externalsecrets.external-secrets.io"
STORE_CRD = "clustersecretstores.external-secrets.io"


def _remove_orphans() -> None:
    for c in devcluster.list_clusters():
        match = re.fullmatch(r"pytest-(\d+)-upgrade", c.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            devcluster.down(c.name)


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[devcluster.Cluster]:
    """A private dev cluster without gitsail's CRDs (GITSAIL_TEST_UPGRADE_CLUSTER: a named
    one to start or reuse, and keep)."""
    reuse = os.environ.get("GITSAIL_TEST_UPGRADE_CLUSTER")
    if reuse:
        yield devcluster.up(reuse, nodes=1)
        return
    _remove_orphans()
    name = f"pytest-{os.getpid()}-upgrade"
    try:
        yield devcluster.up(name, nodes=1)
    finally:
        devcluster.down(name)


@pytest.fixture(scope="module")
def fresh_kube(fresh_cluster: devcluster.Cluster) -> Iterator[Kube]:
    """The cluster's API, without gitsail's CRDs (a reused cluster's are deleted first)."""
    with fresh_cluster.http(timeout=30) as client:
        kube = Kube(client)
        groups = ("argoproj.io", "fluxcd.io", "external-secrets.io", "bitnami.com")

        def ours() -> list[str]:
            items = (kube.get(CRDS) or {}).get("items", [])
            return [c["metadata"]["name"] for c in items if c["spec"]["group"].endswith(groups)]

        for name in ours():
            kube.delete(f"{CRDS}/{name}")
        eventually(lambda: not ours(), timeout=60, what="gitsail's CRDs gone")
        yield kube


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def older(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """``crd`` as a release before its newest version: only ``version``, stored in it."""
    out = copy.deepcopy(crd)
    kept = [v for v in out["spec"]["versions"] if v["name"] == version]
    assert kept, f"{crd['metadata']['name']} has no version {version}"
    kept[0]["storage"] = True
    kept[0]["served"] = True
    out["spec"]["versions"] = kept
    return out


def chart_copy(tmp: Path, name: str, edit: Any) -> Path:
    """charts/gitsail with its CRD links resolved, GitRepository's CRD edited by ``edit``."""
    target = tmp / name
    shutil.copytree(CHART, target, symlinks=False)
    path = target / "files" / "crds" / "flux" / "gitrepository.yaml"
    path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text())), sort_keys=False))
    return target


def stored_versions(kube: Kube, crd: str) -> list[str]:
    live = kube.get(f"{CRDS}/{crd}")
    assert live is not None
    return list(live["status"]["storedVersions"])


def served(kube: Kube, crd: str) -> set[str]:
    live = kube.get(f"{CRDS}/{crd}")
    assert live is not None
    return {v["name"] for v in live["spec"]["versions"] if v["served"]}


def established(kube: Kube, crd: str, version: str) -> bool:
    live = kube.get(f"{CRDS}/{crd}")
    if live is None:
        return False
    conditions = {
        c["type"]: c["status"] for c in (live.get("status") or {}).get("conditions") or []
    }
    versions = {v["name"] for v in live["spec"]["versions"] if v["served"]}
    return conditions.get("Established") == "True" and version in versions


def ensure_namespace(kube: Kube, ns: str) -> None:
    if kube.get(f"/api/v1/namespaces/{ns}") is None:
        kube.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )


def gitrepo(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"source.toolkit.fluxcd.io/{version}",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "url": "https://git.example.com/app.git",
            "interval": "5m",
            "ref": {"branch": "main"},
        },
    }


def test_helm_upgrade_across_a_crd_version_keeps_stored_objects_served(
    fresh_cluster: devcluster.Cluster, fresh_kube: Kube, helm_home: Path, tmp_path: Path
) -> None:
    kube = fresh_kube
    kc = fresh_cluster.kubeconfig
    previous = chart_copy(tmp_path, "previous", lambda crd: older(crd, "v1beta2"))
    ns = ["-n", "gitsail", "--create-namespace"]
    ns += ["--set", "server.enabled=false", "--set", "crds.externalSecrets=false"]
    helm(helm_home, "install", "gitsail", str(previous), *ns, "--wait=false", kubeconfig=kc)
    try:
        eventually(lambda: established(kube, GITREPO_CRD, "v1beta2"), timeout=60, what="CRD")
        assert served(kube, GITREPO_CRD) == {"v1beta2"}
        ensure_namespace(kube, "apps")
        base = "/apis/source.toolkit.fluxcd.io/{}/namespaces/apps/gitrepositories"
        kube.create(base.format("v1beta2"), gitrepo("before", "v1beta2"))
        assert stored_versions(kube, GITREPO_CRD) == ["v1beta2"]

        helm(helm_home, "upgrade", "gitsail", str(CHART), *ns, kubeconfig=kc)
        eventually(lambda: established(kube, GITREPO_CRD, "v1"), timeout=60, what="v1 served")
        # No served version dropped while stored: v1beta2 is stored and still served.
        assert set(stored_versions(kube, GITREPO_CRD)) <= served(kube, GITREPO_CRD)
        assert "v1beta2" in stored_versions(kube, GITREPO_CRD)
        for version in ("v1", "v1beta2"):
            obj = kube.get(f"{base.format(version)}/before")
            assert obj is not None, version
            assert obj["spec"]["url"] == "https://git.example.com/app.git"
        kube.create(base.format("v1"), gitrepo("after", "v1"))
        assert kube.get(f"{base.format('v1beta2')}/after") is not None
        # Every CRD of the release is readable the same way (nothing else lost a version).
        for crd in (kube.get(CRDS) or {})["items"]:
            versions = {v["name"] for v in crd["spec"]["versions"] if v["served"]}
            assert set(crd["status"]["storedVersions"]) <= versions, crd["metadata"]["name"]

        # A next release that stops serving the stored v1beta2 is refused by the chart.
        def unserve(crd: dict[str, Any]) -> dict[str, Any]:
            for v in crd["spec"]["versions"]:
                if v["name"] == "v1beta2":
                    v["served"] = False
            return crd

        bad = chart_copy(tmp_path, "next", unserve)
        proc = helm(helm_home, "upgrade", "gitsail", str(bad), *ns, kubeconfig=kc, check=False)
        assert proc.returncode != 0
        assert f"CRD {GITREPO_CRD}: version v1beta2 is in status.storedVersions" in proc.stderr
        assert "v1beta2" in served(kube, GITREPO_CRD)
        assert kube.get(f"{base.format('v1beta2')}/before") is not None
    finally:
        helm(helm_home, "uninstall", "gitsail", "-n", "gitsail", "--wait", kubeconfig=kc)
    # crds.keep: the CRDs and the objects stay after an uninstall.
    assert kube.get("/apis/source.toolkit.fluxcd.io/v1/namespaces/apps/gitrepositories/before")


def gitsail_install(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsail", "install", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def apply_crd(kube: Kube, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    resp = kube.client.patch(
        f"{CRDS}/{name}",
        params={"fieldManager": "previous-release", "force": "true"},
        headers={"Content-Type": "application/apply-patch+yaml"},
        content=yaml.safe_dump(crd),
    )
    assert resp.status_code < 300, resp.text


def test_gitsail_install_twice_across_a_crd_version_and_its_refusal(
    fresh_cluster: devcluster.Cluster, fresh_kube: Kube
) -> None:
    from gitsail.app.install import crd_manifests

    kube = fresh_kube
    kc = fresh_cluster.kubeconfig
    current = {c["metadata"]["name"]: c for c in crd_manifests(["external-secrets"])}
    # Version N: what a release before ExternalSecret v1 installed.
    apply_crd(kube, older(current[EXTSECRET_CRD], "v1beta1"))
    eventually(lambda: established(kube, EXTSECRET_CRD, "v1beta1"), timeout=60, what="CRD")
    ensure_namespace(kube, "apps")
    base = "/apis/external-secrets.io/{}/namespaces/apps/externalsecrets"
    kube.create(
        base.format("v1beta1"),
        {
            "apiVersion": "external-secrets.io/v1beta1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": "apps"},
            "spec": {
                "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                "target": {"name": "db"},
                "data": [{"secretKey": "pw", "remoteRef": {"key": "db", "property": "pw"}}],
            },
        },
    )
    assert stored_versions(kube, EXTSECRET_CRD) == ["v1beta1"]

    for _ in range(2):  # N+1, then the same again: both succeed
        proc = gitsail_install(kc, "--crds-only", "--external-secrets")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"customresourcedefinition {EXTSECRET_CRD} established" in proc.stdout
    assert set(stored_versions(kube, EXTSECRET_CRD)) == {"v1beta1", "v1"}
    assert set(stored_versions(kube, EXTSECRET_CRD)) <= served(kube, EXTSECRET_CRD)
    for version in ("v1", "v1beta1"):
        obj = kube.get(f"{base.format(version)}/db")
        assert obj is not None, version
        assert obj["spec"]["target"]["name"] == "db"

    # Objects stored at a version the package does not serve (an older install with a
    # v1alpha1 ClusterSecretStore): install refuses, before applying anything.
    store = copy.deepcopy(current[STORE_CRD])
    alpha = copy.deepcopy(store["spec"]["versions"][0])
    alpha["name"] = "v1alpha1"
    for v in store["spec"]["versions"]:
        v["storage"] = False
    alpha["storage"] = True
    store["spec"]["versions"].append(alpha)
    apply_crd(kube, store)
    eventually(lambda: established(kube, STORE_CRD, "v1alpha1"), timeout=60, what="v1alpha1")
    kube.create(
        "/apis/external-secrets.io/v1alpha1/clustersecretstores",
        {
            "apiVersion": "external-secrets.io/v1alpha1",
            "kind": "ClusterSecretStore",
            "metadata": {"name": "fake"},
            "spec": {"provider": {"fake": {"data": [{"key": "k", "value": "v"}]}}},
        },
    )
    assert "v1alpha1" in stored_versions(kube, STORE_CRD)
    before = kube.get(f"{CRDS}/{EXTSECRET_CRD}")
    assert before is not None
    proc = gitsail_install(kc, "--crds-only", "--external-secrets")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = " ".join((proc.stdout + proc.stderr).split())
    assert f"CRD {STORE_CRD}: version(s) v1alpha1 are in status.storedVersions" in message
    assert "migrate them to a served version" in message
    assert "v1alpha1" in served(kube, STORE_CRD)
    after = kube.get(f"{CRDS}/{EXTSECRET_CRD}")
    assert after is not None
    # nothing applied: not even the CRDs listed before the refused one
    assert after["metadata"]["managedFields"] == before["metadata"]["managedFields"]
    assert kube.get("/apis/external-secrets.io/v1alpha1/clustersecretstores/fake") is not None
