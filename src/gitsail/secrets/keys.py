"""Sealing keys kept the way Bitnami's sealed-secrets controller keeps them.

A key is a ``kubernetes.io/tls`` Secret in the controller's namespace, created with
``generateName: <prefix>`` (default ``sealed-secrets-key``) and the label
``sealedsecrets.bitnami.com/sealed-secrets-key=active``: ``tls.key`` is a PKCS#1
``RSA PRIVATE KEY`` PEM and ``tls.crt`` a self-signed certificate (CN from ``my_cn``, random
128-bit serial, ``KeyUsage`` EncipherOnly, a CA, valid for ``ttl``). Either controller can
therefore use the other's keys, and a user brings their own key by creating such a Secret.

Every active key is kept and tried when unsealing; only the newest (by certificate
``NotBefore``) seals and has its certificate served. A new key is due when the newest is older
than the renewal period (``0`` disables renewal) or than a cutoff time.
"""

from __future__ import annotations

import base64
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from gitsail.secrets.sealing import SealingError, fingerprint

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_KEY_SIZE",
    "DEFAULT_KEY_TTL",
    "DEFAULT_NAMESPACE",
    "DEFAULT_RENEW_PERIOD",
    "KEY_LABEL",
    "KEY_LABEL_SELECTOR",
    "KeyRing",
    "SealingKey",
    "generate_key",
    "key_from_pem",
    "key_secret",
    "keyring_from_secrets",
    "private_keys_from_bytes",
    "private_keys_from_document",
    "renewal_due",
]

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
KEY_LABEL_SELECTOR = f"{KEY_LABEL}=active"
DEFAULT_NAMESPACE = "kube-system"
DEFAULT_KEY_PREFIX = "sealed-secrets-key"
DEFAULT_KEY_SIZE = 4096
DEFAULT_RENEW_PERIOD = timedelta(days=30)
DEFAULT_KEY_TTL = timedelta(days=3650)

# KeyUsage = EncipherOnly alone, as the real controller marks it: a critical BIT STRING with
# bit 7 set. The `cryptography` builder only allows encipher_only with key_agreement, so the
# extension is written as its DER value.
_KEY_USAGE_ENCIPHER_ONLY = b"\x03\x02\x00\x01"


@dataclass(frozen=True)
class SealingKey:
    """One key pair; ``secret_name`` is empty for a key not stored in the cluster yet."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    secret_name: str = ""

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1 "RSA PRIVATE KEY"
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class KeyRing:
    """Every active key, oldest first; the newest seals, all of them unseal."""

    keys: tuple[SealingKey, ...]

    @property
    def newest(self) -> SealingKey | None:
        return self.keys[-1] if self.keys else None

    def private_keys(self) -> list[rsa.RSAPrivateKey]:
        """Newest first: most values were sealed with it, so it is tried first."""
        return [k.private_key for k in reversed(self.keys)]


def generate_key(
    *,
    now: datetime,
    key_size: int = DEFAULT_KEY_SIZE,
    ttl: timedelta = DEFAULT_KEY_TTL,
    common_name: str = "",
) -> SealingKey:
    """A new RSA key with the self-signed certificate the real controller makes."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(int.from_bytes(_random.token_bytes(16), "big") >> 1 or 1)
        .not_valid_before(now)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, _KEY_USAGE_ENCIPHER_ONLY),
            critical=True,
        )
        .sign(private_key, hashes.SHA256())
    )
    return SealingKey(private_key=private_key, certificate=cert)


def key_secret(
    key: SealingKey,
    *,
    namespace: str,
    prefix: str = DEFAULT_KEY_PREFIX,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Secret that stores ``key``, named by the server from ``prefix``."""
    metadata: dict[str, Any] = {
        "generateName": prefix,
        "namespace": namespace,
        "labels": {**(labels or {}), KEY_LABEL: "active"},
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(key.cert_pem()).decode(),
            "tls.key": base64.b64encode(key.key_pem()).decode(),
        },
    }


def _load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SealingError("cannot parse private key PEM") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingError("the private key is not an RSA key")
    return key


def key_from_pem(key_pem: bytes, cert_pem: bytes, secret_name: str = "") -> SealingKey:
    """A key from its PEMs; the certificate must hold the same public key."""
    private_key = _load_private_key(key_pem)
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise SealingError(f"key Secret {secret_name or '?'}: cannot parse tls.crt") from None
    if cert.public_key() != private_key.public_key():
        raise SealingError(f"key Secret {secret_name or '?'}: tls.crt does not match tls.key")
    return SealingKey(private_key=private_key, certificate=cert, secret_name=secret_name)


def _secret_bytes(secret: Mapping[str, Any], field: str) -> bytes:
    data = secret.get("data") or {}
    raw = data.get(field)
    if not isinstance(raw, str):
        name = (secret.get("metadata") or {}).get("name", "?")
        raise SealingError(f"key Secret {name} has no {field}")
    return base64.b64decode(raw)


def keyring_from_secrets(
    secrets: Iterable[Mapping[str, Any]], *, order: str = "CertNotBefore"
) -> tuple[KeyRing, list[str]]:
    """The ring from key Secrets, and one message per Secret that could not be read.

    ``order`` is the controller's ``--key-order-priority``: ``CertNotBefore`` (default) or
    ``SecretCreationTimestamp``.
    """
    loaded: list[tuple[str, SealingKey]] = []
    problems: list[str] = []
    for secret in secrets:
        meta = secret.get("metadata") or {}
        name = str(meta.get("name") or "")
        try:
            key = key_from_pem(
                _secret_bytes(secret, "tls.key"), _secret_bytes(secret, "tls.crt"), name
            )
        except (SealingError, ValueError) as exc:
            problems.append(str(exc))
            continue
        if order == "SecretCreationTimestamp":
            sort_key = str(meta.get("creationTimestamp") or "")
        else:
            sort_key = key.not_before.isoformat()
        loaded.append((sort_key + "\0" + name, key))
    loaded.sort(key=lambda pair: pair[0])
    return KeyRing(tuple(k for _, k in loaded)), problems


def renewal_due(
    ring: KeyRing,
    *,
    now: datetime,
    period: timedelta = DEFAULT_RENEW_PERIOD,
    cutoff: datetime | None = None,
) -> bool:
    """True when a new key must be generated now."""
    newest = ring.newest
    if newest is None:
        return True
    if cutoff is not None and newest.not_before < cutoff <= now:
        return True
    if period <= timedelta(0):
        return False
    return newest.not_before + period <= now.astimezone(UTC)


def private_keys_from_document(doc: Any) -> list[rsa.RSAPrivateKey]:
    """Private keys from what ``--recovery-private-key`` accepts: a key Secret or a List of them."""
    if isinstance(doc, Mapping):
        if doc.get("kind") == "List" or "items" in doc:
            found: list[rsa.RSAPrivateKey] = []
            for item in doc.get("items") or []:
                found += private_keys_from_document(item)
            return found
        if doc.get("kind") == "Secret":
            return [_load_private_key(_secret_bytes(doc, "tls.key"))]
    raise SealingError("expected a PEM private key, a key Secret or a List of key Secrets")


def private_keys_from_bytes(raw: bytes) -> list[rsa.RSAPrivateKey]:
    """Private keys from a PEM file or a JSON/YAML Secret (or List of Secrets) file."""
    if b"PRIVATE KEY-----" in raw and not raw.lstrip().startswith((b"{", b"apiVersion", b"kind")):
        return [_load_private_key(raw)]
    import yaml  # a document, not PEM

    found: list[rsa.RSAPrivateKey] = []
    for doc in yaml.safe_load_all(raw):
        if doc is not None:
            found += private_keys_from_document(doc)
    return found
