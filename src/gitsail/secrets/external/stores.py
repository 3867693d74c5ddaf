"""SecretStore / ClusterSecretStore specs read into provider configurations (pure).

``store_config(store, reader_namespace)`` reads ``spec.provider`` (exactly one of ``vault``,
``openbao``, ``aws``, ``kubernetes``, ``fake``) into a frozen record. Secret references
(``{name, key, namespace}``) resolve their namespace as ESO does: a SecretStore's are in the
store's namespace (a ``namespace`` there is refused); a ClusterSecretStore's default to the
namespace of the ExternalSecret that reads through it. ``config_digest`` names a config for
the fetch cache: two ExternalSecrets share cached values exactly when they read through the
same store with the same resolved configuration.

``admits(store, namespace, labels)``: a ClusterSecretStore's ``conditions`` (any condition
whose ``namespaces``, ``namespaceRegexes`` or ``namespaceSelector`` matches admits).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gitsail.secrets.external.aws import AWSAuth, AWSConfig
from gitsail.secrets.external.provider import ProviderError
from gitsail.secrets.external.values import ValueProblem, go_regexp
from gitsail.secrets.external.vault import SecretRef, VaultAuth, VaultConfig

__all__ = [
    "FakeConfig",
    "KubernetesConfig",
    "StoreConfig",
    "admits",
    "config_digest",
    "store_config",
]

PROVIDERS = ("vault", "openbao", "aws", "kubernetes", "fake")
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?")


@dataclass(frozen=True)
class KubernetesConfig:
    remote_namespace: str
    service_account: tuple[str, str] | None  # impersonated (namespace, name)


@dataclass(frozen=True)
class FakeConfig:
    entries: tuple[tuple[str, str, str], ...]


StoreConfig = VaultConfig | AWSConfig | KubernetesConfig | FakeConfig


def _bad(path: str, message: str) -> ProviderError:
    return ProviderError(f"{path}: {message}", reason="InvalidProviderConfig")


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(path, "expected an object")
    return value


def _str(doc: Mapping[str, Any], name: str, path: str, *, required: bool = False) -> str:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise _bad(f"{path}.{name}", "required")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{path}.{name}", "expected a string")
    return value


class _Refs:
    def __init__(self, cluster: bool, store_namespace: str, reader_namespace: str) -> None:
        self.cluster = cluster
        self.default = reader_namespace if cluster else store_namespace

    def namespace(self, doc: Mapping[str, Any], path: str) -> str:
        ns = _str(doc, "namespace", path)
        if ns and not self.cluster:
            raise _bad(f"{path}.namespace", "only a ClusterSecretStore may name a namespace")
        return ns or self.default

    def secret(self, value: Any, path: str, *, required: bool = True) -> SecretRef | None:
        if value is None and not required:
            return None
        doc = _obj(value, path)
        return SecretRef(
            self.namespace(doc, path),
            _str(doc, "name", path, required=True),
            _str(doc, "key", path, required=True),
        )

    def service_account(self, value: Any, path: str) -> tuple[tuple[str, str], tuple[str, ...]]:
        doc = _obj(value, path)
        audiences = doc.get("audiences") or []
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise _bad(f"{path}.audiences", "expected a list of strings")
        return (self.namespace(doc, path), _str(doc, "name", path, required=True)), tuple(audiences)


def store_config(store: Mapping[str, Any], reader_namespace: str) -> StoreConfig:
    """The provider configuration of ``store`` as read by an object of ``reader_namespace``."""
    meta = _obj(store.get("metadata"), "metadata")
    cluster = store.get("kind") == "ClusterSecretStore"
    refs = _Refs(cluster, str(meta.get("namespace") or ""), reader_namespace)
    spec = _obj(store.get("spec"), "spec")
    provider = _obj(spec.get("provider"), "spec.provider")
    chosen = [k for k, v in provider.items() if v is not None]
    if len(chosen) != 1:
        raise _bad("spec.provider", "exactly one provider is required")
    name = chosen[0]
    path = f"spec.provider.{name}"
    doc = _obj(provider[name], path)
    if name.lower() in ("vault", "openbao"):
        return _vault(doc, path, refs)
    if name == "aws":
        return _aws(doc, path, refs)
    if name == "kubernetes":
        server = _obj(doc.get("server"), f"{path}.server")
        if _str(server, "url", f"{path}.server") not in (
            "",
            "kubernetes.default",
            "https://kubernetes.default.svc",
        ):
            raise _bad(f"{path}.server.url", "gitsail reads Secrets of its own cluster only")
        auth = _obj(doc.get("auth"), f"{path}.auth")
        sa = auth.get("serviceAccount")
        if sa is None:
            raise _bad(
                f"{path}.auth", "serviceAccount is required (the identity Secrets are read as)"
            )
        (account, _) = refs.service_account(sa, f"{path}.auth.serviceAccount")
        return KubernetesConfig(_str(doc, "remoteNamespace", path) or "default", account)
    if name == "fake":
        entries = []
        for i, item in enumerate(doc.get("data") or []):
            item = _obj(item, f"{path}.data[{i}]")
            entries.append(
                (
                    _str(item, "key", f"{path}.data[{i}]", required=True),
                    _str(item, "value", f"{path}.data[{i}]"),
                    _str(item, "version", f"{path}.data[{i}]"),
                )
            )
        return FakeConfig(tuple(entries))
    raise _bad(
        path, f"provider {name!r} is not implemented by gitsail (use one of {', '.join(PROVIDERS)})"
    )


def _vault(doc: Mapping[str, Any], path: str, refs: _Refs) -> VaultConfig:
    server = _str(doc, "server", path, required=True)
    if not _URL.fullmatch(server):
        raise _bad(f"{path}.server", "expected an http(s) URL without query or credentials")
    version = _str(doc, "version", path) or "v2"
    if version not in ("v1", "v2"):
        raise _bad(f"{path}.version", "expected v1 or v2")
    auth_doc = _obj(doc.get("auth"), f"{path}.auth")
    apath = f"{path}.auth"
    methods = [k for k, v in auth_doc.items() if v is not None and k != "namespace"]
    if len(methods) != 1:
        raise _bad(apath, "exactly one of tokenSecretRef, appRole, kubernetes is required")
    method = methods[0]
    auth_ns = _str(auth_doc, "namespace", apath)
    if method == "tokenSecretRef":
        auth = VaultAuth(
            "token",
            token=refs.secret(auth_doc[method], f"{apath}.tokenSecretRef"),
            namespace=auth_ns,
        )
    elif method == "appRole":
        d = _obj(auth_doc[method], f"{apath}.appRole")
        role_id = _str(d, "roleId", f"{apath}.appRole")
        role_ref = refs.secret(d.get("roleRef"), f"{apath}.appRole.roleRef", required=False)
        if not role_id and role_ref is None:
            raise _bad(f"{apath}.appRole", "roleId or roleRef is required")
        auth = VaultAuth(
            "appRole",
            path=_str(d, "path", f"{apath}.appRole") or "approle",
            role_id=role_id,
            role_ref=role_ref,
            secret_ref=refs.secret(d.get("secretRef"), f"{apath}.appRole.secretRef"),
            namespace=auth_ns,
        )
    elif method == "kubernetes":
        d = _obj(auth_doc[method], f"{apath}.kubernetes")
        account = None
        audiences: tuple[str, ...] = ()
        if d.get("serviceAccountRef") is not None:
            account, audiences = refs.service_account(
                d["serviceAccountRef"], f"{apath}.kubernetes.serviceAccountRef"
            )
        auth = VaultAuth(
            "kubernetes",
            path=_str(d, "mountPath", f"{apath}.kubernetes") or "kubernetes",
            role=_str(d, "role", f"{apath}.kubernetes", required=True),
            service_account=account,
            audiences=audiences,
            secret_ref=refs.secret(
                d.get("secretRef"), f"{apath}.kubernetes.secretRef", required=False
            ),
            namespace=auth_ns,
        )
    else:
        raise _bad(
            f"{apath}.{method}",
            "this auth method is not implemented by gitsail "
            "(use tokenSecretRef, appRole or kubernetes)",
        )
    headers = _obj(doc.get("headers"), f"{path}.headers")
    for k, v in headers.items():
        if (
            not isinstance(v, str)
            or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", str(k))
            or any(c in v for c in "\r\n")
        ):
            raise _bad(f"{path}.headers", "header names are tokens and values single lines")
    return VaultConfig(
        server=server,
        path=_str(doc, "path", path),
        version=version,
        namespace=_str(doc, "namespace", path),
        auth=auth,
        headers=tuple(sorted((str(k), str(v)) for k, v in headers.items())),
    )


def _aws(doc: Mapping[str, Any], path: str, refs: _Refs) -> AWSConfig:
    service = _str(doc, "service", path, required=True)
    if service not in ("SecretsManager", "ParameterStore"):
        raise _bad(f"{path}.service", "expected SecretsManager or ParameterStore")
    auth_doc = _obj(doc.get("auth"), f"{path}.auth")
    if auth_doc.get("secretRef") is not None:
        d = _obj(auth_doc["secretRef"], f"{path}.auth.secretRef")
        auth = AWSAuth(
            "secretRef",
            access_key=refs.secret(
                d.get("accessKeyIDSecretRef"), f"{path}.auth.secretRef.accessKeyIDSecretRef"
            ),
            secret_key=refs.secret(
                d.get("secretAccessKeySecretRef"), f"{path}.auth.secretRef.secretAccessKeySecretRef"
            ),
            session_token=refs.secret(
                d.get("sessionTokenSecretRef"),
                f"{path}.auth.secretRef.sessionTokenSecretRef",
                required=False,
            ),
        )
    elif auth_doc.get("jwt") is not None:
        d = _obj(auth_doc["jwt"], f"{path}.auth.jwt")
        account, _ = refs.service_account(
            d.get("serviceAccountRef"), f"{path}.auth.jwt.serviceAccountRef"
        )
        auth = AWSAuth("jwt", service_account=account)
    else:
        auth = AWSAuth("default")
    return AWSConfig(
        service=service,
        region=_str(doc, "region", path, required=True),
        auth=auth,
        role=_str(doc, "role", path),
        prefix=_str(doc, "prefix", path),
    )


def config_digest(config: StoreConfig) -> str:
    text = json.dumps([type(config).__name__, asdict(config)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def admits(store: Mapping[str, Any], namespace: str, labels: Mapping[str, str]) -> bool:
    """Whether a ClusterSecretStore's ``conditions`` let ``namespace`` read through it."""
    conditions = _obj(store.get("spec"), "spec").get("conditions")
    if not conditions:
        return True
    if not isinstance(conditions, list):
        raise _bad("spec.conditions", "expected a list")
    for i, condition in enumerate(conditions):
        c = _obj(condition, f"spec.conditions[{i}]")
        if namespace in (c.get("namespaces") or []):
            return True
        for pattern in c.get("namespaceRegexes") or []:
            try:
                if go_regexp(str(pattern), where=f"spec.conditions[{i}]").search(namespace):
                    return True
            except ValueProblem as exc:
                raise _bad(f"spec.conditions[{i}].namespaceRegexes", str(exc)) from None
        selector = c.get("namespaceSelector")
        if selector is not None and selector_matches(_obj(selector, "namespaceSelector"), labels):
            return True
    return False


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (``matchLabels``, ``matchExpressions``) against labels."""
    for k, v in _obj(selector.get("matchLabels"), "matchLabels").items():
        if labels.get(str(k)) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        e = _obj(expr, "matchExpressions")
        key, op, values = str(e.get("key")), e.get("operator"), list(e.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise _bad("matchExpressions", f"unknown operator {op!r}")
    return True
