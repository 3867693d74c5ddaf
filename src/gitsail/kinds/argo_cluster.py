"""Argo CD cluster Secrets and Flux kubeconfig Secrets, read into ``KubeConfig``s.

An Argo CD cluster Secret (label ``argocd.argoproj.io/secret-type: cluster``, in the
control namespace) has the keys ``name``, ``server``, ``namespaces`` (comma separated;
empty: every namespace), ``clusterResources`` (``"true"``: cluster-scoped kinds even with
``namespaces``), ``project`` and ``config``, a JSON object::

    {"bearerToken": "...", "username": "...", "password": "...",
     "tlsClientConfig": {"caData": "<b64 PEM>", "certData": "<b64 PEM>",
                         "keyData": "<b64 PEM>", "insecure": false, "serverName": "..."},
     "execProviderConfig": {"command": "...", "args": [...], "env": {...},
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "installHint": "..."}}

``read_cluster_secret`` turns one into a ``ClusterEntry`` (its ``KubeConfig`` carries the
credentials; ``repr`` never shows them). ``in_cluster_entry`` is the implicit
``in-cluster`` (``https://kubernetes.default.svc``): the control plane's own cluster, unless
a Secret names that server. ``cluster_secret`` builds the Secret ``gitsail cluster add``
creates.

A Flux ``spec.kubeConfig.secretRef`` names a Secret in the object's namespace (a tenant's)
whose ``value`` or ``value.yaml`` key (or the ``key`` given) holds a kubeconfig:
``read_flux_kubeconfig`` reads its current context, refusing what would let a tenant reach
the controller's own files or run a program: file references (``certificate-authority``,
``client-certificate``, ``client-key``, ``tokenFile``), ``exec`` plugins and auth
providers, and ``insecure-skip-tls-verify`` (Flux refuses the last two by default too).

Every server URL goes through ``check_server_url``: ``https`` or ``http``, a host, no user
info, no query or fragment. Errors name the Secret and the field, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from gitsail.kinds._fields import Fields
from gitsail.kinds.errors import UnsupportedField
from gitsail.kube import ConfigError, ExecConfig, Kube, KubeConfig, KubeError
from gitsail.kube.aws import AWSAuthConfig
from gitsail.model import Obj

__all__ = [
    "CLUSTER_SECRETS",
    "CLUSTER_SECRET_LABEL",
    "IN_CLUSTER",
    "IN_CLUSTER_NAME",
    "STATUS_PREFIX",
    "ClusterEntry",
    "RemoteCluster",
    "check_server_url",
    "cluster_secret",
    "in_cluster_entry",
    "kube_config_ref",
    "read_cluster_secret",
    "read_flux_kubeconfig",
    "read_kubeconfig_secret",
    "secret_field",
]

IN_CLUSTER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"
CLUSTER_SECRET_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 (a label)
CLUSTER_SECRETS = f"{CLUSTER_SECRET_LABEL}=cluster"
# Annotations gitsail writes on a cluster Secret: its connection status (see docs/fleet.md).
STATUS_PREFIX = "status.gitsail.io/"
MAX_URL = 2048
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class ClusterConfigError(ValueError):
    """A cluster Secret or kubeconfig Secret cannot be used; the message names the Secret
    and the field, never a value."""


@dataclass(frozen=True)
class ClusterEntry:
    """One registered cluster: where it is, what may be delivered to it, how to log in."""

    name: str
    server: str
    config: KubeConfig = field(repr=False)
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    cluster_resources: bool = True
    project: str = ""
    secret: str = ""  # the Secret's name ("" for the implicit in-cluster)
    fingerprint: str = field(default="", repr=False)  # changes when anything above does


def check_server_url(url: str, *, what: str) -> str:
    """``url`` without a trailing slash, or ``ClusterConfigError``: https/http, a host, no
    user info, query or fragment, at most 2 KiB."""
    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise ClusterConfigError(f"{what}: the server must be an http(s) URL")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        raise ClusterConfigError(f"{what}: the server is not a valid URL") from None
    if parts.scheme not in ("https", "http"):
        raise ClusterConfigError(f"{what}: the server must use https:// or http://")
    if not parts.hostname:
        raise ClusterConfigError(f"{what}: the server URL has no host")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise ClusterConfigError(f"{what}: the server URL must not carry user information")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ClusterConfigError(f"{what}: the server URL must not have a query or a fragment")
    del port
    return url.rstrip("/")


def secret_field(secret: Obj, key: str) -> str | None:
    """A Secret's value as text (``stringData`` first, then ``data``); None when absent.
    Raises ``ClusterConfigError`` (naming the key, not the value) when it is not base64 UTF-8."""
    string_data = secret.get("stringData") or {}
    if isinstance(string_data, Mapping) and key in string_data:
        return str(string_data[key])
    data = secret.get("data") or {}
    if not isinstance(data, Mapping) or key not in data:
        return None
    try:
        return base64.b64decode(str(data[key]), validate=True).decode()
    except (binascii.Error, ValueError):
        raise ClusterConfigError(f"key {key!r} is not base64-encoded UTF-8 text") from None


def read_cluster_secret(secret: Obj) -> ClusterEntry:
    """The cluster an Argo CD cluster Secret registers; ``ClusterConfigError`` naming what
    is wrong."""
    meta = secret.get("metadata") or {}
    where = f"cluster Secret {meta.get('namespace', '')}/{meta.get('name', '')}"
    try:
        server = check_server_url(secret_field(secret, "server") or "", what=where)
        name = secret_field(secret, "name") or server
        namespaces = tuple(
            n.strip() for n in (secret_field(secret, "namespaces") or "").split(",") if n.strip()
        )
        resources = (secret_field(secret, "clusterResources") or "").strip().lower() == "true"
        raw = secret_field(secret, "config") or "{}"
        project = secret_field(secret, "project") or ""
    except ClusterConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ClusterConfigError(f"{where}: {exc}") from None
    try:
        config = json.loads(raw)
    except ValueError:
        raise ClusterConfigError(f"{where}: config is not JSON") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{where}: config must be a JSON object")
    kube = _argo_config(config, server, name, where)
    fingerprint = json.dumps([name, server, namespaces, resources, project, raw], sort_keys=True)
    return ClusterEntry(
        name=name,
        server=server,
        config=kube,
        namespaces=namespaces,
        # Without namespaces a cluster Secret permits cluster-scoped kinds (Argo CD).
        cluster_resources=resources or not namespaces,
        project=project,
        secret=str(meta.get("name") or ""),
        fingerprint=fingerprint,
    )


def in_cluster_entry(config: KubeConfig) -> ClusterEntry:
    """The implicit ``in-cluster`` entry: the control plane's own client configuration."""
    return ClusterEntry(name=IN_CLUSTER_NAME, server=IN_CLUSTER, config=config)


def _b64_field(value: Any, what: str) -> bytes | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ClusterConfigError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClusterConfigError(f"{what} is not valid base64") from None


def _text(config: Mapping[str, Any], key: str, where: str) -> str | None:
    value = config.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ClusterConfigError(f"{where}: config.{key} must be a string")
    return value


def _argo_config(config: dict[str, Any], server: str, name: str, where: str) -> KubeConfig:
    tls = config.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        raise ClusterConfigError(f"{where}: config.tlsClientConfig must be an object")
    ca = _b64_field(tls.get("caData"), f"{where}: config.tlsClientConfig.caData")
    cert = _b64_field(tls.get("certData"), f"{where}: config.tlsClientConfig.certData")
    key = _b64_field(tls.get("keyData"), f"{where}: config.tlsClientConfig.keyData")
    if bool(cert) != bool(key):
        raise ClusterConfigError(f"{where}: config.tlsClientConfig needs both certData and keyData")
    server_name = tls.get("serverName") or None
    if server_name is not None and not isinstance(server_name, str):
        raise ClusterConfigError(f"{where}: config.tlsClientConfig.serverName must be a string")
    exec_spec = config.get("execProviderConfig")
    exec_config = _argo_exec(exec_spec, where) if exec_spec else None
    token = _text(config, "bearerToken", where)
    username = _text(config, "username", where)
    password = _text(config, "password", where)
    aws = _aws_auth(config.get("awsAuthConfig"), where) if config.get("awsAuthConfig") else None
    return KubeConfig(
        server=server,
        context=name,
        ca_data=ca,
        insecure_skip_tls_verify=bool(tls.get("insecure", False)),
        tls_server_name=server_name,
        client_cert_data=cert,
        client_key_data=key,
        token=token,
        username=username,
        password=password if username is not None else None,
        exec=exec_config,
        aws=aws,
        cluster_info={"server": server},
    )


_EKS_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]{0,20}:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
_PROFILE = re.compile(r"[A-Za-z0-9_.+@-]{1,128}")


def _aws_auth(spec: Any, where: str) -> AWSAuthConfig:
    """Argo CD's ``awsAuthConfig``: an EKS cluster name, an optional role to assume and an
    optional profile of the controller's AWS credentials file (``gitsail.kube.aws``)."""
    what = f"{where}: config.awsAuthConfig"
    if not isinstance(spec, dict):
        raise ClusterConfigError(f"{what} must be an object")
    values = {}
    for key, pattern in (
        ("clusterName", _EKS_CLUSTER),
        ("roleARN", _ROLE_ARN),
        ("profile", _PROFILE),
    ):
        value = spec.get(key)
        if value in (None, ""):
            values[key] = ""
            continue
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ClusterConfigError(f"{what}.{key} is not a valid {key}")
        values[key] = value
    if not values["clusterName"]:
        raise ClusterConfigError(f"{what}.clusterName is required")
    return AWSAuthConfig(values["clusterName"], values["roleARN"], values["profile"])


def _argo_exec(spec: Any, where: str) -> ExecConfig:
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), str):
        raise ClusterConfigError(f"{where}: config.execProviderConfig needs a command")
    args = spec.get("args") or []
    env = spec.get("env") or {}
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ClusterConfigError(f"{where}: config.execProviderConfig.args must be strings")
    if not isinstance(env, dict):
        raise ClusterConfigError(f"{where}: config.execProviderConfig.env must be a map")
    api_version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1beta1")
    if api_version not in (
        "client.authentication.k8s.io/v1",
        "client.authentication.k8s.io/v1beta1",
    ):
        raise ClusterConfigError(f"{where}: config.execProviderConfig.apiVersion is not supported")
    return ExecConfig(
        command=spec["command"],
        args=tuple(args),
        env=tuple((str(k), str(v)) for k, v in env.items()),
        api_version=api_version,
        install_hint=str(spec.get("installHint") or ""),
    )


def cluster_secret(
    name: str,
    server: str,
    config: Mapping[str, Any],
    *,
    secret_name: str,
    namespace: str,
    namespaces: tuple[str, ...] = (),
    cluster_resources: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """The Argo CD cluster Secret registering ``server`` as ``name`` (values as stringData)."""
    check_server_url(server, what=f"cluster {name!r}")
    string_data = {"name": name, "server": server, "config": json.dumps(dict(config))}
    if namespaces:
        string_data["namespaces"] = ",".join(namespaces)
        if cluster_resources:
            string_data["clusterResources"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": {**(labels or {}), CLUSTER_SECRET_LABEL: "cluster"},
        },
        "stringData": string_data,
    }


# -- Flux kubeConfig --------------------------------------------------------------------------

_FILE_KEYS = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}


def read_flux_kubeconfig(secret: Obj, key: str = "", *, what: str) -> KubeConfig:
    """The current context of the kubeconfig in ``secret`` (``key``, else ``value``, else
    ``value.yaml``), refusing files, exec plugins, auth providers and skipped TLS checks."""
    keys = (key,) if key else ("value", "value.yaml")
    text = None
    for candidate in keys:
        try:
            text = secret_field(secret, candidate)
        except ClusterConfigError as exc:
            raise ClusterConfigError(f"{what}: {exc}") from None
        if text is not None:
            break
    if text is None:
        wanted = " or ".join(repr(k) for k in keys)
        raise ClusterConfigError(f"{what}: the Secret has no key {wanted}")
    if len(text) > 1024 * 1024:
        raise ClusterConfigError(f"{what}: the kubeconfig is larger than 1 MiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ClusterConfigError(f"{what}: the kubeconfig is not YAML") from None
    if not isinstance(data, dict):
        raise ClusterConfigError(f"{what}: the kubeconfig is not a mapping")
    for section, file_keys in _FILE_KEYS.items():
        for entry in data.get(section) or []:
            body = (entry or {}).get(section[:-1]) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for file_key in file_keys:
                if body.get(file_key):
                    raise ClusterConfigError(
                        f"{what}: the kubeconfig names a file ({file_key}); put the data "
                        f"inline ({file_key}-data)"
                        if file_key != "tokenFile"
                        else f"{what}: the kubeconfig names a token file; put the token inline"
                    )
            if body.get("exec") or body.get("auth-provider"):
                raise ClusterConfigError(
                    f"{what}: the kubeconfig runs a credential plugin (exec or auth-provider), "
                    "which gitsail does not run for a tenant's kubeconfig"
                )
            if body.get("insecure-skip-tls-verify"):
                raise ClusterConfigError(
                    f"{what}: the kubeconfig skips TLS verification (insecure-skip-tls-verify), "
                    "which gitsail refuses"
                )
    try:
        config = KubeConfig.from_dict(data)
    except ConfigError as exc:
        raise ClusterConfigError(f"{what}: {exc}") from None
    check_server_url(config.server, what=what)
    return config


def kube_config_ref(spec: Fields) -> tuple[str, str] | None:
    """Flux's ``spec.kubeConfig.secretRef`` as (Secret name, key: "" for ``value`` /
    ``value.yaml``), or None; ``configMapRef`` (workload identity) is refused."""
    if not spec.present("kubeConfig"):
        return None
    config = spec.obj("kubeConfig")
    if config.present("configMapRef"):
        config.raw("configMapRef")
        raise UnsupportedField(
            config.at("configMapRef"), "workload identity (configMapRef) is not implemented"
        )
    ref = config.obj("secretRef")
    name = ref.need_string("name", pattern=r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
    key = ref.string("key", pattern=r"[-._a-zA-Z0-9]{1,253}") or ""
    ref.finish()
    config.finish()
    return name, key


# The client of a spec.kubeConfig cluster, shared by the controller (its ClusterPool):
# (namespace, name of the Flux object, the kubeconfig, a digest of its Secret) -> client.
RemoteCluster = Callable[[str, str, KubeConfig, str], Awaitable[Kube]]


async def read_kubeconfig_secret(
    kube: Kube, namespace: str, ref: tuple[str, str]
) -> tuple[KubeConfig, str]:
    """The kubeconfig of a Flux object's ``spec.kubeConfig.secretRef`` ``ref`` (name, key),
    read from the control plane, and a digest of the Secret (it changes when the Secret
    does). ``ClusterConfigError`` for a missing, unreadable or refused one."""
    name, key = ref
    where = f"kubeConfig Secret '{namespace}/{name}'"
    try:
        secret = await kube.get("v1", "Secret", name, namespace)
    except KubeError as exc:
        raise ClusterConfigError(f"cannot read the {where}: {exc}") from None
    if secret is None:
        raise ClusterConfigError(f"{where} not found")
    config = read_flux_kubeconfig(secret, key, what=where)
    body = [namespace, name, key, secret.get("data"), secret.get("stringData")]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return config, digest
