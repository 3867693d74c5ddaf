"""Repository credentials from Argo CD style Secrets.

Argo CD keeps repository credentials in Secrets labelled
``argocd.argoproj.io/secret-type``: ``repository`` Secrets hold the credentials of one URL,
``repo-creds`` Secrets are templates for every URL that starts with theirs. For a repo URL,
a ``repository`` Secret with the same (normalized) URL wins; otherwise the ``repo-creds``
Secret with the longest matching URL prefix applies.

gitsail departs in one place, on purpose: a prefix only matches within the same host and
port, so ``https://git.example.com`` never hands its credentials to
``https://git.example.com.attacker.net/repo``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gitsail.model import Obj
from gitsail.source._urls import normalize_repo_url, parse_repo_url, redact_url
from gitsail.source.errors import InvalidSource

__all__ = [
    "SECRET_TYPE_LABEL",
    "RepoCredentials",
    "credential_identity",
    "known_hosts_from",
    "match_credentials",
]

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 (a label key)
KNOWN_HOSTS_KEY = "ssh_known_hosts"


@dataclass(frozen=True)
class RepoCredentials:
    """Credentials for one repository; ``repr``/``str`` never show a secret.

    ``insecure`` skips TLS verification for HTTPS git and Helm repositories. Unlike Argo CD
    it does not turn off SSH host key checking: gitsail always requires a known host key.
    """

    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    ssh_private_key: str = field(default="", repr=False)
    insecure: bool = False
    type: str = "git"  # "git" | "helm"
    enable_oci: bool = False
    name: str = ""
    project: str = ""
    bearer_token: str = field(default="", repr=False)
    # SSH host keys trusted for this repository only (a Flux Secret's ``known_hosts``);
    # "" uses the process-wide known hosts.
    known_hosts: str = ""

    def __repr__(self) -> str:
        secrets = [
            name
            for name, value in (
                ("password", self.password),
                ("ssh_private_key", self.ssh_private_key),
                ("bearer_token", self.bearer_token),
            )
            if value
        ]
        shown = ", ".join(f"{name}=<redacted>" for name in secrets)
        return (
            f"RepoCredentials(url={redact_url(self.url)!r}, username={self.username!r}, "
            f"type={self.type!r}, insecure={self.insecure}, enable_oci={self.enable_oci}, "
            f"name={self.name!r}, project={self.project!r}" + (f", {shown}" if shown else "") + ")"
        )

    __str__ = __repr__

    @property
    def has_secret(self) -> bool:
        return bool(self.password or self.ssh_private_key or self.bearer_token)

    @classmethod
    def from_secret(cls, secret: Obj, *, url: str | None = None) -> RepoCredentials:
        """Read an Argo CD repository / repo-creds Secret (``data`` and ``stringData``)."""
        values = secret_values(secret)
        return cls(
            url=url if url is not None else values.get("url", ""),
            username=values.get("username", ""),
            password=values.get("password", ""),
            ssh_private_key=values.get("sshPrivateKey", ""),
            insecure=_truthy(values.get("insecure", "")),
            type=values.get("type", "") or "git",
            enable_oci=_truthy(values.get("enableOCI", "")),
            name=values.get("name", ""),
            project=values.get("project", ""),
            bearer_token=values.get("bearerToken", ""),
        )


def credential_identity(creds: RepoCredentials | None) -> str:
    """Who is asking, for caches of access checks: a digest of the secret material.

    Two apps have the same identity only if they would present the same username,
    password, token and key; no credentials at all is the identity ``"anonymous"``. The
    digest is kept in memory only, never logged.
    """
    if creds is None or not (creds.username or creds.has_secret):
        return "anonymous"
    digest = hashlib.sha256(b"gitsail-credential-identity-v1")
    for part in (creds.username, creds.password, creds.bearer_token, creds.ssh_private_key):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
    digest.update(b"insecure" if creds.insecure else b"verify")
    if creds.known_hosts:  # trusting other host keys is another identity
        digest.update(b"known_hosts" + creds.known_hosts.encode())
    return digest.hexdigest()


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def secret_values(secret: Obj) -> dict[str, str]:
    """A Secret's keys as text: base64 ``data`` overlaid by ``stringData`` (as the API does)."""
    values: dict[str, str] = {}
    data: Mapping[str, Any] = secret.get("data") or {}
    for key, encoded in data.items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            meta = secret.get("metadata") or {}
            raise InvalidSource(
                f"Secret {meta.get('namespace', '')}/{meta.get('name', '')}: key {key!r} is "
                "not valid base64 text; fix the Secret"
            ) from exc
    string_data: Mapping[str, Any] = secret.get("stringData") or {}
    for key, text in string_data.items():
        values[key] = str(text)
    return values


def _secret_type(secret: Obj) -> str:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return str(labels.get(SECRET_TYPE_LABEL, ""))


def _host_port(normalized: str) -> str:
    scheme, _, rest = normalized.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority.rsplit('@', 1)[-1]}"


def match_credentials(repo_url: str, secrets: Sequence[Obj]) -> RepoCredentials | None:
    """The credentials Argo CD would use for ``repo_url``, or None.

    Only Secrets labelled ``argocd.argoproj.io/secret-type: repository|repo-creds`` count;
    others are ignored. A ``repository`` Secret whose url equals ``repo_url`` (normalized)
    wins; otherwise the ``repo-creds`` Secret with the longest matching prefix, whose
    credentials are returned for ``repo_url`` itself.
    """
    target = normalize_repo_url(repo_url)
    best: tuple[int, Obj] | None = None
    exact: RepoCredentials | None = None
    for secret in secrets:
        kind = _secret_type(secret)
        if kind not in ("repository", "repo-creds"):
            continue
        url = secret_values(secret).get("url", "")
        if not url:
            continue
        candidate = normalize_repo_url(url)
        if kind == "repository":
            if exact is None and candidate == target:
                exact = RepoCredentials.from_secret(secret)
            continue
        if not target.startswith(candidate) or _host_port(target) != _host_port(candidate):
            continue
        if best is None or len(candidate) > best[0]:
            best = (len(candidate), secret)
    template = RepoCredentials.from_secret(best[1], url=repo_url) if best else None
    if exact is None:
        return template
    if exact.has_secret or exact.username or template is None:
        return exact
    # A repository Secret without credentials (e.g. only url/project) takes them from the
    # matching template, as Argo CD does.
    return replace(
        exact,
        username=template.username,
        password=template.password,
        ssh_private_key=template.ssh_private_key,
        bearer_token=template.bearer_token,
    )


def known_hosts_from(configmap: Obj | None) -> str:
    """``ssh_known_hosts`` of an ``argocd-ssh-known-hosts-cm`` ConfigMap ("" if absent)."""
    if not configmap:
        return ""
    data = configmap.get("data") or {}
    return str(data.get(KNOWN_HOSTS_KEY) or "")


def credentials_from_url(repo_url: str) -> tuple[str, RepoCredentials | None]:
    """Split userinfo embedded in a URL off into credentials, so it never reaches argv or disk."""
    parsed = parse_repo_url(repo_url)
    if not parsed.is_http or not (parsed.username or parsed.password):
        return parsed.without_password(keep_username=True), None
    clean = parsed.without_password(keep_username=False)
    return clean, RepoCredentials(url=clean, username=parsed.username, password=parsed.password)
