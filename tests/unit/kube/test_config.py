from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitsail.kube.config import KubeConfig, in_cluster_config, load_kubeconfig
from gitsail.kube.errors import ConfigError, KubeError
from tests.unit.kube.conftest import b64, exec_user, kubeconfig


def test_context_gives_server_namespace_and_embedded_ca() -> None:
    cfg = KubeConfig.from_dict(kubeconfig({}, {"certificate-authority-data": b64(b"CA PEM")}))
    assert cfg.server == "https://k.test:6443"
    assert cfg.namespace == "apps"
    assert cfg.context == "ctx"
    assert cfg.ca_data == b"CA PEM"
    assert cfg.auth_kind == "none"


def test_named_context_wins_over_current_context() -> None:
    data = kubeconfig({"token": "t"})
    data["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    cfg = KubeConfig.from_dict(data, "other")
    assert cfg.context == "other"
    assert cfg.namespace == "default"


def test_unknown_context_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no context named 'nope'"):
        KubeConfig.from_dict(kubeconfig({}), "nope")


def test_config_error_belongs_to_the_kube_error_tree() -> None:
    with pytest.raises(KubeError):
        KubeConfig.from_dict({"contexts": []})


def test_file_paths_resolve_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "tls.crt").write_bytes(b"CERT")
    (tmp_path / "tls.key").write_bytes(b"KEY")
    (tmp_path / "token").write_text("file-token\n")
    data = kubeconfig(
        {"client-certificate": "tls.crt", "client-key": "tls.key", "tokenFile": "token"},
        {"certificate-authority": "ca.crt"},
    )
    cfg = KubeConfig.from_dict(data, base_dir=tmp_path)
    assert cfg.ca_data == b"CA"
    assert cfg.client_cert_file == tmp_path / "tls.crt"
    assert cfg.client_key_file == tmp_path / "tls.key"
    assert cfg.token_file == tmp_path / "token"


def test_missing_certificate_file_is_named(tmp_path: Path) -> None:
    data = kubeconfig({}, {"certificate-authority": "missing.crt"})
    with pytest.raises(ConfigError, match=r"missing\.crt"):
        KubeConfig.from_dict(data, base_dir=tmp_path)


def test_certificate_data_wins_over_file_and_needs_a_key() -> None:
    data = kubeconfig({"client-certificate-data": b64(b"CERT"), "client-certificate": "/x"})
    with pytest.raises(ConfigError, match="without client-key"):
        KubeConfig.from_dict(data)
    data["users"][0]["user"]["client-key-data"] = b64(b"KEY")
    cfg = KubeConfig.from_dict(data)
    assert (cfg.client_cert_data, cfg.client_key_data, cfg.client_cert_file) == (
        b"CERT",
        b"KEY",
        None,
    )
    assert cfg.auth_kind == "cert"


def test_token_basic_and_insecure() -> None:
    cfg = KubeConfig.from_dict(
        kubeconfig({"token": "abc"}, {"insecure-skip-tls-verify": True, "tls-server-name": "kube"})
    )
    assert (cfg.token, cfg.insecure_skip_tls_verify, cfg.tls_server_name) == ("abc", True, "kube")
    basic = KubeConfig.from_dict(kubeconfig({"username": "admin", "password": "pw"}))
    assert (basic.username, basic.password, basic.auth_kind) == ("admin", "pw", "basic")


def test_repr_hides_secrets() -> None:
    cfg = KubeConfig.from_dict(
        kubeconfig(
            {
                "token": "sekrit-token",
                "password": "sekrit-pass",
                "username": "u",
                "client-certificate-data": b64(b"CERT"),
                "client-key-data": b64(b"sekrit-key"),
            }
        )
    )
    text = repr(cfg)
    assert "sekrit" not in text
    assert "k.test" in text


def test_exec_plugin_spec(tmp_path: Path) -> None:
    cfg = KubeConfig.from_dict(
        kubeconfig(exec_user(tmp_path, api_version="client.authentication.k8s.io/v1beta1"))
    )
    assert cfg.exec is not None
    assert cfg.exec.api_version.endswith("v1beta1")
    assert cfg.exec.args[-1] == "--flag"
    assert dict(cfg.exec.env)["PLUGIN_COUNTER"].endswith("count")
    assert cfg.exec.provide_cluster_info
    assert cfg.auth_kind == "exec"
    assert "PLUGIN_COUNTER" not in repr(cfg)


def test_exec_plugin_with_unknown_api_version_is_refused(tmp_path: Path) -> None:
    user = exec_user(tmp_path, api_version="client.authentication.k8s.io/v1alpha1")
    with pytest.raises(ConfigError, match="v1alpha1"):
        KubeConfig.from_dict(kubeconfig(user))


def test_relative_exec_command_resolves_against_the_kubeconfig(tmp_path: Path) -> None:
    data = kubeconfig(
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/login"}}
    )
    cfg = KubeConfig.from_dict(data, base_dir=tmp_path)
    assert cfg.exec is not None
    assert cfg.exec.command == str(tmp_path / "bin" / "login")


async def test_load_uses_first_existing_kubeconfig_env_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first.yaml"
    second = tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump(kubeconfig({"token": "one"})))
    second.write_text(yaml.safe_dump(kubeconfig({"token": "two"})))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{first}:{second}")
    cfg = await load_kubeconfig()
    assert cfg.token == "one"


async def test_load_explicit_path_and_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    data = kubeconfig({"token": "t"})
    data["contexts"].append(
        {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "b"}}
    )
    path.write_text(yaml.safe_dump(data))
    cfg = await load_kubeconfig(path, context="b")
    assert (cfg.context, cfg.namespace) == ("b", "b")


async def test_load_reports_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        await load_kubeconfig(path)


async def test_falls_back_to_in_cluster_when_there_is_no_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        await load_kubeconfig()


def test_in_cluster_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "namespace").write_text("gitsail-system\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = in_cluster_config(tmp_path, env)
    assert cfg.server == "https://[fd00::1]:443"
    assert cfg.namespace == "gitsail-system"
    assert cfg.token_file == tmp_path / "token"
    assert cfg.ca_data == b"CA"


def test_in_cluster_without_token_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no service account token"):
        in_cluster_config(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
