"""Argo CD cluster Secrets and Flux kubeconfig Secrets read into KubeConfigs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from gitsail.cli.cluster import argo_config
from gitsail.kinds.argo_cluster import (
    ClusterConfigError,
    check_server_url,
    cluster_secret,
    read_cluster_secret,
    read_flux_kubeconfig,
)
from gitsail.kube import KubeConfig

TOKEN = "tok-" + "0123456789abcdef"
PASSWORD = "pw-" + "fedcba9876543210"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(config: dict[str, Any] | str, **fields: str) -> dict[str, Any]:
    data = {"server": "https://east.example:6443", "name": "east", **fields}
    data["config"] = config if isinstance(config, str) else json.dumps(config)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cluster-east", "namespace": "argocd"},
        "data": {k: b64(v) for k, v in data.items()},
    }


def test_a_token_secret_reads_into_a_token_config_that_never_shows_the_token() -> None:
    entry = read_cluster_secret(
        secret({"bearerToken": TOKEN, "tlsClientConfig": {"caData": b64("PEM"), "serverName": "s"}})
    )
    assert (entry.name, entry.server, entry.secret) == (
        "east",
        "https://east.example:6443",
        "cluster-east",
    )
    assert entry.config.token == TOKEN
    assert entry.config.ca_data == b"PEM"
    assert entry.config.tls_server_name == "s"
    assert entry.config.auth_kind == "token"
    assert TOKEN not in repr(entry)
    assert entry.cluster_resources
    assert entry.namespaces == ()


def test_client_certificates_basic_auth_and_exec_are_read() -> None:
    certs = read_cluster_secret(
        secret({"tlsClientConfig": {"certData": b64("CERT"), "keyData": b64("KEY")}})
    )
    assert (certs.config.client_cert_data, certs.config.client_key_data) == (b"CERT", b"KEY")
    assert certs.config.auth_kind == "cert"
    basic = read_cluster_secret(secret({"username": "u", "password": PASSWORD}))
    assert (basic.config.username, basic.config.password) == ("u", PASSWORD)
    assert PASSWORD not in repr(basic)
    plugin = read_cluster_secret(
        secret({"execProviderConfig": {"command": "aws", "args": ["eks"], "env": {"A": "1"}}})
    )
    assert plugin.config.exec is not None
    assert (plugin.config.exec.command, plugin.config.exec.args) == ("aws", ("eks",))
    assert plugin.config.exec.env == (("A", "1"),)
    insecure = read_cluster_secret(secret({"tlsClientConfig": {"insecure": True}}))
    assert insecure.config.insecure_skip_tls_verify


def test_namespaces_and_cluster_resources_follow_argo() -> None:
    limited = read_cluster_secret(secret({}, namespaces="a, b,"))
    assert limited.namespaces == ("a", "b")
    assert not limited.cluster_resources
    both = read_cluster_secret(secret({}, namespaces="a", clusterResources="true"))
    assert both.cluster_resources


def test_the_name_defaults_to_the_server_and_the_fingerprint_follows_the_config() -> None:
    obj = secret({"bearerToken": TOKEN})
    del obj["data"]["name"]
    entry = read_cluster_secret(obj)
    assert entry.name == "https://east.example:6443"
    other = read_cluster_secret(secret({"bearerToken": TOKEN + "x"}))
    assert other.fingerprint != read_cluster_secret(secret({"bearerToken": TOKEN})).fingerprint


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "config is not JSON"),
        ("[]", "config must be a JSON object"),
        ({"tlsClientConfig": {"certData": b64("C")}}, "needs both certData and keyData"),
        ({"tlsClientConfig": {"caData": "%%%"}}, "caData is not valid base64"),
        ({"bearerToken": 5}, "bearerToken must be a string"),
        ({"execProviderConfig": {"args": []}}, "needs a command"),
        ({"awsAuthConfig": {"clusterName": "x y"}}, "awsAuthConfig.clusterName is not a valid"),
        ({"awsAuthConfig": {"profile": "p"}}, "awsAuthConfig.clusterName is required"),
    ],
)
def test_unusable_configs_are_refused_naming_the_field_not_the_value(
    config: Any, message: str
) -> None:
    with pytest.raises(ClusterConfigError, match=message) as caught:
        read_cluster_secret(secret(config))
    assert "cluster Secret argocd/cluster-east" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must be an http"),
        ("ftp://east.example", "must use https:// or http://"),
        ("file:///etc/passwd", "must use https:// or http://"),
        ("https://user:pw@east.example", "must not carry user information"),
        ("https://east.example?x=1", "must not have a query"),
        ("https://east.example#frag", "must not have a query or a fragment"),
        ("https://", "has no host"),
        ("https://east.example:99999", "not a valid URL"),
        ("https://east.example/\nx", "must be an http"),
    ],
)
def test_server_urls_are_checked(url: str, message: str) -> None:
    with pytest.raises(ClusterConfigError, match=message):
        check_server_url(url, what="cluster x")
    with pytest.raises(ClusterConfigError, match=message):
        read_cluster_secret(secret({}, server=url))


def test_a_server_url_loses_its_trailing_slash() -> None:
    assert check_server_url("https://a.example:6443/", what="x") == "https://a.example:6443"
    assert check_server_url("http://10.0.0.1/k8s", what="x") == "http://10.0.0.1/k8s"


def test_the_secret_cluster_add_writes_reads_back() -> None:
    config = {"bearerToken": TOKEN, "tlsClientConfig": {"caData": b64("CA")}}
    obj = cluster_secret(
        "east",
        "https://east.example",
        config,
        secret_name="cluster-east",
        namespace="argocd",
        namespaces=("a",),
        cluster_resources=True,
    )
    assert obj["metadata"]["labels"] == {"argocd.argoproj.io/secret-type": "cluster"}
    entry = read_cluster_secret(obj)
    assert (entry.name, entry.namespaces, entry.cluster_resources) == ("east", ("a",), True)
    assert entry.config.token == TOKEN


def test_argo_config_copies_one_credential_of_a_context() -> None:
    cert = KubeConfig(
        server="https://e", ca_data=b"CA", client_cert_data=b"C", client_key_data=b"K"
    )
    assert argo_config(cert) == {
        "tlsClientConfig": {"caData": b64("CA"), "certData": b64("C"), "keyData": b64("K")}
    }
    token = KubeConfig(server="https://e", token=TOKEN, insecure_skip_tls_verify=True)
    assert argo_config(token) == {"bearerToken": TOKEN, "tlsClientConfig": {"insecure": True}}
    # A ServiceAccount's token replaces the context's own credentials.
    assert argo_config(cert, token="sa")["bearerToken"] == "sa"
    assert "certData" not in argo_config(cert, token="sa")["tlsClientConfig"]


# -- Flux kubeConfig ---------------------------------------------------------------------------


def kubeconfig(user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster or {"server": "https://t.example:6443"}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def flux_secret(key: str, text: str) -> dict[str, Any]:
    return {"metadata": {"name": "k", "namespace": "team"}, "data": {key: b64(text)}}


@pytest.mark.parametrize("key", ["value", "value.yaml"])
def test_a_flux_kubeconfig_is_read_from_value_or_value_yaml(key: str) -> None:
    config = read_flux_kubeconfig(flux_secret(key, kubeconfig({"token": TOKEN})), what="s")
    assert (config.server, config.token) == ("https://t.example:6443", TOKEN)


def test_a_flux_kubeconfig_key_can_be_named() -> None:
    obj = flux_secret("cfg", kubeconfig({"token": TOKEN}))
    assert read_flux_kubeconfig(obj, "cfg", what="s").token == TOKEN
    with pytest.raises(ClusterConfigError, match=r"has no key 'value' or 'value\.yaml'"):
        read_flux_kubeconfig(obj, what="s")


@pytest.mark.parametrize(
    ("user", "cluster", "message"),
    [
        ({"tokenFile": "/var/run/secrets/token"}, None, "names a token file"),
        ({"client-certificate": "/etc/c.pem", "client-key-data": b64("k")}, None, "names a file"),
        ({"exec": {"command": "sh"}}, None, "runs a credential plugin"),
        ({"auth-provider": {"name": "gcp"}}, None, "runs a credential plugin"),
        (
            {"token": TOKEN},
            {"server": "https://t.example", "certificate-authority": "/etc/ca"},
            "names a file",
        ),
        (
            {"token": TOKEN},
            {"server": "https://t.example", "insecure-skip-tls-verify": True},
            "skips TLS verification",
        ),
        ({"token": TOKEN}, {"server": "https://u:p@t.example"}, "user information"),
        ({"token": TOKEN}, {"server": "unix:///run/sock"}, "https:// or http://"),
    ],
)
def test_a_tenants_kubeconfig_cannot_reach_local_files_or_run_programs(
    user: dict[str, Any], cluster: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ClusterConfigError, match=message) as caught:
        read_flux_kubeconfig(flux_secret("value", kubeconfig(user, cluster)), what="s")
    assert TOKEN not in str(caught.value)
