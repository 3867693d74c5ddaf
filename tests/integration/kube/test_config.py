"""Kubeconfig and every kind of credential, against the real apiserver."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.dev import cluster as devcluster
from gitsail.kube import Forbidden, Kube, KubeConfig, Unauthorized, load_kubeconfig

pytestmark = pytest.mark.integration


async def test_admin_kubeconfig_reaches_a_v1_36_server(cluster: devcluster.Cluster) -> None:
    config = await load_kubeconfig(cluster.kubeconfig)
    assert config.server == cluster.server
    assert config.auth_kind == "cert"
    async with Kube(config) as kube:
        version = await kube.server_version()
    assert version["gitVersion"].startswith("v1.36.")


async def test_kubeconfig_env_is_used(
    cluster: devcluster.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    config = await load_kubeconfig()
    assert config.context == f"gitsail-{cluster.name}"


def ca_b64(cluster: devcluster.Cluster) -> str:
    return base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode()


def config_with_user(cluster: devcluster.Cluster, user: dict[str, Any]) -> KubeConfig:
    return KubeConfig.from_dict(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": cluster.server,
                        "certificate-authority-data": ca_b64(cluster),
                    },
                }
            ],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


PLUGIN = textwrap.dedent(
    """
    import json, os, sys
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    status = json.loads(os.environ["CREDENTIAL"])
    out = {"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}
    print(json.dumps(out))
    """
)


def exec_user(tmp_path: Path, status: dict[str, str], api_version: str) -> dict[str, Any]:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    return {
        "exec": {
            "apiVersion": api_version,
            "command": sys.executable,
            "args": [str(script)],
            "env": [{"name": "CREDENTIAL", "value": json.dumps(status)}],
        }
    }


async def test_exec_plugin_client_certificate(cluster: devcluster.Cluster, tmp_path: Path) -> None:
    status = {
        "clientCertificateData": cluster.pki.admin_cert.read_text(),
        "clientKeyData": cluster.pki.admin_key.read_text(),
    }
    user = exec_user(tmp_path, status, "client.authentication.k8s.io/v1")
    async with Kube(config_with_user(cluster, user)) as kube:
        # Listing nodes needs an identity: anonymous requests would be refused.
        nodes = await kube.list("v1", "Node")
    assert len(nodes) >= 1


@pytest.fixture
async def reader_token(api: Kube, namespace: str) -> str:
    """A bound token of a ServiceAccount that may view ``namespace`` and nothing else."""
    await api.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "reader", "namespace": namespace},
        }
    )
    await api.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader-view", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
    )
    await api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "visible", "namespace": namespace},
        }
    )
    answer = await api.create_subresource(
        "v1",
        "ServiceAccount",
        "reader",
        "token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
        namespace,
    )
    return str(answer["status"]["token"])


@pytest.mark.parametrize("how", ["token", "tokenFile", "exec-v1", "exec-v1beta1"])
async def test_bearer_token_credentials(
    cluster: devcluster.Cluster, namespace: str, reader_token: str, tmp_path: Path, how: str
) -> None:
    if how == "token":
        user: dict[str, Any] = {"token": reader_token}
    elif how == "tokenFile":
        (tmp_path / "token").write_text(reader_token)
        user = {"tokenFile": str(tmp_path / "token")}
    else:
        version = "v1beta1" if how.endswith("v1beta1") else "v1"
        user = exec_user(
            tmp_path, {"token": reader_token}, f"client.authentication.k8s.io/{version}"
        )
    async with Kube(config_with_user(cluster, user)) as kube:
        configmaps = await kube.list("v1", "ConfigMap", namespace)
        assert "visible" in {c["metadata"]["name"] for c in configmaps}
        with pytest.raises(Forbidden) as info:
            await kube.list("v1", "Secret", "kube-system")
    assert reader_token not in str(info.value)
    assert f"system:serviceaccount:{namespace}:reader" in str(info.value)


async def test_refused_token_is_unauthorized(cluster: devcluster.Cluster) -> None:
    async with Kube(config_with_user(cluster, {"token": "not-a-real-token"})) as kube:
        with pytest.raises(Unauthorized) as info:
            await kube.list("v1", "Node")
    assert "not-a-real-token" not in str(info.value)


async def test_kubeconfig_file_with_relative_certificate_paths(
    cluster: devcluster.Cluster, tmp_path: Path
) -> None:
    for name, src in (
        ("ca.crt", cluster.pki.ca_cert),
        ("admin.crt", cluster.pki.admin_cert),
        ("admin.key", cluster.pki.admin_key),
    ):
        (tmp_path / name).write_bytes(src.read_bytes())
    (tmp_path / "config").write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": cluster.server, "certificate-authority": "ca.crt"},
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {"client-certificate": "admin.crt", "client-key": "admin.key"},
                    }
                ],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}
                ],
                "current-context": "x",
            }
        )
    )
    config = await load_kubeconfig(tmp_path / "config")
    async with Kube(config) as kube:
        assert await kube.get("v1", "Namespace", "default") is not None
