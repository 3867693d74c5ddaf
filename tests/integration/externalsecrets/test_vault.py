"""ExternalSecrets through OpenBao (the Vault API) with ``gitsail controller --external-secrets``:
a ClusterSecretStore on KV v2 (key + property), rotation within the refresh interval, an
outage that keeps the Secret and says why, recovery; Kubernetes auth with a ServiceAccount
of the dev cluster verified by OpenBao through the cluster's TokenReview; a wrong role."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube as AsyncKube
from gitsail.kube import load_kubeconfig
from tests.integration.helpers import Kube, eventually

from .conftest import OpenBao
from .support import Controller, apply, assert_no_leak, path_of, ready, secret_data

pytestmark = pytest.mark.integration

PASSWORD = "bao-pw-41c7e2"
ROTATED = "bao-pw-rotated-9d01"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    async def main() -> None:
        async with AsyncKube(await load_kubeconfig(cluster.kubeconfig)) as api:
            await install_crds(api, families=["external-secrets"])

    asyncio.run(main())


@pytest.fixture
def controller(
    cluster: Cluster, namespace: str, crds: None, tmp_path: Path
) -> Iterator[Controller]:
    ctl = Controller(cluster, namespace, tmp_path / "controller.log", {})
    try:
        yield ctl
    finally:
        ctl.stop()


def _token_secret(kube: Kube, namespace: str, token: str) -> None:
    apply(
        kube,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bao-token"},
         "stringData": {"token": token}},
        namespace,
    )  # fmt: skip


def test_cluster_store_kv2_rotation_outage_and_recovery(
    kube: Kube, cluster: Cluster, namespace: str, openbao: OpenBao, controller: Controller
) -> None:
    openbao.kv2_put("myapp/config", {"password": PASSWORD, "user": "app"})
    _token_secret(kube, namespace, openbao.token)
    store = f"bao-{namespace}"
    apply(kube, {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": store},
        "spec": {
            "provider": {"vault": {
                "server": openbao.address, "path": "secret", "version": "v2",
                "auth": {"tokenSecretRef": {"name": "bao-token", "key": "token",
                                            "namespace": namespace}},
            }},
            "conditions": [{"namespaces": [namespace]}],
        },
    }, namespace)  # fmt: skip
    try:
        apply(kube, {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "myapp"},
            "spec": {
                "refreshInterval": "4s",
                "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                "target": {"name": "myapp-secret"},
                "data": [{"secretKey": "password",
                          "remoteRef": {"key": "myapp/config", "property": "password"}}],
            },
        }, namespace)  # fmt: skip
        eventually(
            lambda: secret_data(kube, namespace, "myapp-secret") == {"password": PASSWORD},
            timeout=60, what="the Secret with the password",
        )  # fmt: skip
        status = (kube.get(path_of("ExternalSecret", namespace, "myapp")) or {})["status"]
        assert status["binding"] == {"name": "myapp-secret"}
        assert status["conditions"][0]["reason"] == "SecretSynced"

        # Rotation reaches the Secret within the refresh interval (4 s, plus jitter/latency).
        openbao.kv2_put("myapp/config", {"password": ROTATED, "user": "app"})
        eventually(
            lambda: (secret_data(kube, namespace, "myapp-secret") or {}).get("password") == ROTATED,
            timeout=12, interval=0.2, what="the rotated password",
        )  # fmt: skip

        # Outage: the Secret keeps its data, the ExternalSecret says why.
        openbao.stop()
        failed = eventually(
            lambda: (c := ready(kube, namespace, "myapp")) and c["status"] == "False" and c,
            timeout=30, what="Ready=False during the outage",
        )  # fmt: skip
        assert failed["reason"] == "SecretSyncedError"
        assert "could not get secret data from provider" in failed["message"]
        assert "cannot reach" in failed["message"]
        assert secret_data(kube, namespace, "myapp-secret") == {"password": ROTATED}

        # Recovery, by itself (the dev server restarts empty: seed it as an operator would).
        openbao.start()
        openbao.kv2_put("myapp/config", {"password": ROTATED, "user": "app"})
        eventually(
            lambda: (c := ready(kube, namespace, "myapp")) and c["status"] == "True",
            timeout=60, what="Ready=True after the outage",
        )  # fmt: skip
        assert secret_data(kube, namespace, "myapp-secret") == {"password": ROTATED}

        # The CLI: a forced sync (ESO's force-sync annotation) and the listing.
        cli = [sys.executable, "-m", "gitsail"]
        kubeconfig = ["--kubeconfig", str(cluster.kubeconfig)]
        done = subprocess.run(
            [*cli, "reconcile", "externalsecret", "myapp", "-n", namespace, *kubeconfig],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "secret synced" in done.stdout
        listed = subprocess.run(
            [*cli, "get", "externalsecrets", "-n", namespace, "-o", "json", *kubeconfig],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(listed.stdout)[0]["status"]["conditions"][0]["reason"] == "SecretSynced"
        table = subprocess.run(
            [*cli, "get", "secretstores", "-A", *kubeconfig],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "no SecretStore objects found" in table.stderr or "NAME" in table.stdout
        assert_no_leak([PASSWORD, ROTATED, openbao.token], kube=kube, namespace=namespace,
                       controller=controller)  # fmt: skip
    finally:
        kube.delete(path_of("ClusterSecretStore", "", store))


def _kubernetes_auth(openbao: OpenBao, cluster: Cluster, kube: Kube, namespace: str) -> str:
    """OpenBao's Kubernetes auth against the dev cluster: a reviewer ServiceAccount bound
    to system:auth-delegator, role ``myapp`` bound to ServiceAccount ``myapp``."""
    reviewer_sa = {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bao-reviewer"}
    }  # fmt: skip
    apply(kube, reviewer_sa, namespace)
    binding = f"bao-reviewer-{namespace}"
    apply(kube, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "bao-reviewer", "namespace": namespace}],
    }, namespace)  # fmt: skip
    reviewer = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/bao-reviewer/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}},
    )["status"]["token"]  # fmt: skip
    openbao.request("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    openbao.request("POST", "auth/kubernetes/config", {
        "kubernetes_host": cluster.server,
        "kubernetes_ca_cert": cluster.pki.ca_cert.read_text(),
        "token_reviewer_jwt": reviewer,
        "disable_local_ca_jwt": True,
    })  # fmt: skip
    openbao.request("PUT", "sys/policies/acl/myapp", {
        "policy": 'path "secret/data/myapp/*" { capabilities = ["read"] }\n'
                  'path "secret/metadata/myapp/*" { capabilities = ["read"] }',
    })  # fmt: skip
    openbao.request("POST", "auth/kubernetes/role/myapp", {
        "bound_service_account_names": ["myapp"],
        "bound_service_account_namespaces": [namespace],
        "token_policies": ["myapp"], "token_ttl": "1h", "audience": "vault",
    })  # fmt: skip
    apply(kube, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "myapp"}},
          namespace)  # fmt: skip
    return binding


def _store(name: str, openbao: OpenBao, role: str) -> dict[str, object]:
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "SecretStore",
        "metadata": {"name": name},
        "spec": {"provider": {"vault": {
            "server": openbao.address, "path": "secret", "version": "v2",
            "auth": {"kubernetes": {"mountPath": "kubernetes", "role": role,
                                    "serviceAccountRef": {"name": "myapp",
                                                          "audiences": ["vault"]}}},
        }}},
    }  # fmt: skip


def _es(name: str, store: str) -> dict[str, object]:
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": name},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": store},
            "target": {"name": name},
            "data": [{"secretKey": "password",
                      "remoteRef": {"key": "myapp/db", "property": "password"}}],
            "dataFrom": [{"extract": {"key": "myapp/db"},
                          "rewrite": [{"regexp": {"source": "(.*)", "target": "db_$1"}}]}],
        },
    }  # fmt: skip


def test_kubernetes_auth_with_a_service_account_and_a_wrong_role(
    kube: Kube, cluster: Cluster, namespace: str, openbao: OpenBao, controller: Controller
) -> None:
    openbao.kv2_put("myapp/db", {"password": PASSWORD, "user": "app"})
    binding = _kubernetes_auth(openbao, cluster, kube, namespace)
    try:
        apply(kube, _store("bao-k8s", openbao, "myapp"), namespace)
        apply(kube, _store("bao-wrong", openbao, "not-a-role"), namespace)
        apply(kube, _es("good", "bao-k8s"), namespace)
        apply(kube, _es("wrong", "bao-wrong"), namespace)
        want = {"password": PASSWORD, "db_password": PASSWORD, "db_user": "app"}
        try:
            eventually(lambda: secret_data(kube, namespace, "good") == want, timeout=60,
                       what="the Secret read with Kubernetes auth")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; Ready: {ready(kube, namespace, 'good')}") from None
        failed = eventually(
            lambda: (c := ready(kube, namespace, "wrong")) and c["status"] == "False" and c,
            timeout=60, what="Ready=False for the wrong role",
        )  # fmt: skip
        assert "kubernetes login at auth/kubernetes refused" in failed["message"]
        assert "not-a-role" in failed["message"]
        assert secret_data(kube, namespace, "wrong") is None
        assert_no_leak([PASSWORD], kube=kube, namespace=namespace, controller=controller)
    finally:
        kube.delete(path_of("ClusterRoleBinding", "", binding))
