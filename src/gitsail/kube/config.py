"""Where a cluster is and how to prove who we are: kubeconfig and in-cluster configuration.

``load_kubeconfig`` looks, in order, at an explicit path, the first existing file named by
``KUBECONFIG``, ``~/.kube/config``, and finally the in-cluster service account
(``/var/run/secrets/kubernetes.io/serviceaccount`` with ``KUBERNETES_SERVICE_HOST``/``PORT``).
It resolves one context to a flat, immutable ``KubeConfig``: the server, how to trust it, and
one way to authenticate (client certificate, bearer token or token file, basic auth, or an
exec credential plugin). Files named in a kubeconfig are resolved relative to it and read
here, so a ``KubeConfig`` is self-contained; only a ``token_file`` is re-read later, because
projected service-account tokens rotate.

Secrets (token, password, key) are kept out of ``repr`` and out of every error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitsail.kube.aws import AWSAuthConfig
from gitsail.kube.errors import ConfigError

__all__ = ["ExecConfig", "KubeConfig", "in_cluster_config", "load_kubeconfig"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = (
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
)


@dataclass(frozen=True)
class ExecConfig:
    """A credential plugin (``users[].user.exec``): a command printing an ExecCredential."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str = ""
    provide_cluster_info: bool = False
    interactive_mode: str = "IfAvailable"


@dataclass(frozen=True)
class KubeConfig:
    """One resolved context: server, trust, identity. Build with ``load_kubeconfig`` or
    ``KubeConfig.from_dict``."""

    server: str
    namespace: str = "default"
    context: str = ""
    ca_data: bytes | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    exec: ExecConfig | None = None
    aws: AWSAuthConfig | None = None  # Argo CD's awsAuthConfig: EKS tokens (gitsail.kube.aws)
    # Passed to exec plugins that ask for cluster info (provideClusterInfo).
    cluster_info: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def auth_kind(self) -> str:
        """Which credential this config uses, for messages: exec, token, basic, cert, none."""
        if self.exec is not None:
            return "exec"
        if self.aws is not None:
            return "aws"
        if self.token or self.token_file:
            return "token"
        if self.username is not None:
            return "basic"
        if self.client_cert_data or self.client_cert_file:
            return "cert"
        return "none"

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        context: str | None = None,
        *,
        base_dir: str | Path | None = None,
    ) -> KubeConfig:
        """Resolve ``context`` (default: current-context) of a parsed kubeconfig.

        Relative file paths are taken relative to ``base_dir`` (the kubeconfig's folder).
        """
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        name = context or data.get("current-context") or ""
        if not name:
            raise ConfigError("kubeconfig has no current-context; pass a context name")
        ctx = _named(data, "contexts", name, "context")
        cluster = _named(data, "clusters", str(ctx.get("cluster") or ""), "cluster")
        user_name = str(ctx.get("user") or "")
        user = _named(data, "users", user_name, "user") if user_name else {}

        server = str(cluster.get("server") or "")
        if not server:
            raise ConfigError(f"kubeconfig context {name!r}: its cluster has no server")
        where = f"kubeconfig context {name!r}"
        ca = _data_or_file(cluster, "certificate-authority", base, where)
        cert_data, cert_file = _data_or_path(user, "client-certificate", base, where)
        key_data, key_file = _data_or_path(user, "client-key", base, where)
        if (cert_data or cert_file) and not (key_data or key_file):
            raise ConfigError(f"{where}: client-certificate without client-key")
        token_file = user.get("tokenFile")
        return cls(
            server=server.rstrip("/"),
            namespace=str(ctx.get("namespace") or "default"),
            context=name,
            ca_data=ca,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
            tls_server_name=cluster.get("tls-server-name") or None,
            client_cert_data=cert_data,
            client_key_data=key_data,
            client_cert_file=cert_file,
            client_key_file=key_file,
            token=user.get("token") or None,
            token_file=_resolve(base, str(token_file)) if token_file else None,
            username=user.get("username") or None,
            password=user.get("password") or None,
            exec=_exec(user.get("exec"), base, where) if user.get("exec") else None,
            cluster_info=_cluster_info(cluster, server, ca),
        )


async def load_kubeconfig(path: str | Path | None = None, context: str | None = None) -> KubeConfig:
    """The ``KubeConfig`` for ``context`` of the kubeconfig at ``path`` (see module doc)."""
    return await asyncio.to_thread(_load, path, context)


def _load(path: str | Path | None, context: str | None) -> KubeConfig:
    if path is not None:
        return _from_file(Path(path), context)
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return _from_file(Path(entry).expanduser(), context)
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return _from_file(default, context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_config()
    raise ConfigError("no kubeconfig found: set KUBECONFIG, create ~/.kube/config, or run in a pod")


def _from_file(path: Path, context: str | None) -> KubeConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return KubeConfig.from_dict(data, context, base_dir=path.parent)


def in_cluster_config(
    root: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
) -> KubeConfig:
    """The pod's service-account identity; the token file is re-read as it rotates."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    token = root / "token"
    if not token.is_file():
        raise ConfigError(f"in-cluster: no service account token at {token}")
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    ca_file = root / "ca.crt"
    ns_file = root / "namespace"
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=ns_file.read_text().strip() if ns_file.is_file() else "default",
        context="in-cluster",
        ca_data=ca_file.read_bytes() if ca_file.is_file() else None,
        token_file=token,
    )


def _named(data: Mapping[str, Any], section: str, name: str, key: str) -> dict[str, Any]:
    for entry in data.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"kubeconfig {section} entry {name!r} is not a mapping")
            return value
    raise ConfigError(f"kubeconfig has no {key} named {name!r} (in {section})")


def _resolve(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def _data_or_file(section: dict[str, Any], key: str, base: Path, where: str) -> bytes | None:
    data, path = _data_or_path(section, key, base, where)
    return data if path is None else _read(path, f"{where} {key}")


def _data_or_path(
    section: dict[str, Any], key: str, base: Path, where: str
) -> tuple[bytes | None, Path | None]:
    """``<key>-data`` (base64) wins over the file ``<key>``, as in client-go."""
    if section.get(f"{key}-data"):
        return _b64(str(section[f"{key}-data"]), f"{where} {key}-data"), None
    if section.get(key):
        path = _resolve(base, str(section[key]))
        if not path.is_file():
            raise ConfigError(f"{where} {key}: no such file {path}")
        return None, path
    return None, None


def _exec(spec: Any, base: Path, where: str) -> ExecConfig:
    if not isinstance(spec, dict) or not spec.get("command"):
        raise ConfigError(f"{where}: exec needs a command")
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f"{where}: exec apiVersion {api_version!r} is not supported "
            f"(use one of {', '.join(EXEC_API_VERSIONS)})"
        )
    command = str(spec["command"])
    # client-go resolves a command with a path separator relative to the kubeconfig.
    if os.sep in command and not Path(command).is_absolute():
        command = str(base / command)
    env = tuple(
        (str(e["name"]), str(e.get("value", "")))
        for e in spec.get("env") or []
        if isinstance(e, dict) and e.get("name")
    )
    return ExecConfig(
        command=command,
        args=tuple(str(a) for a in spec.get("args") or []),
        env=env,
        api_version=api_version,
        install_hint=str(spec.get("installHint") or ""),
        provide_cluster_info=bool(spec.get("provideClusterInfo", False)),
        interactive_mode=str(spec.get("interactiveMode") or "IfAvailable"),
    )


def _cluster_info(cluster: dict[str, Any], server: str, ca: bytes | None) -> dict[str, Any]:
    info: dict[str, Any] = {"server": server}
    if ca:
        info["certificate-authority-data"] = base64.b64encode(ca).decode()
    if cluster.get("insecure-skip-tls-verify"):
        info["insecure-skip-tls-verify"] = True
    if cluster.get("tls-server-name"):
        info["tls-server-name"] = cluster["tls-server-name"]
    extensions = cluster.get("extensions") or []
    for ext in extensions:
        if isinstance(ext, dict) and ext.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = ext.get("extension")
    return info
