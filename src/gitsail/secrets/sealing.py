"""Sealed Secrets' hybrid encryption, byte for byte what Bitnami's kubeseal and controller do.

One sealed value is ``base64(len16be(rsa) || rsa || gcm)`` (standard alphabet, padded):

- ``rsa`` is a fresh 32-byte session key encrypted with RSA-OAEP, SHA-256 for both the
  digest and MGF1, and the *scope label* as the OAEP label;
- ``gcm`` is the plaintext sealed with AES-256-GCM under that session key, a nonce of
  twelve zero bytes (safe: every session key is used once) and no associated data; the
  16-byte tag is appended.

The label binds a value to where it may be unsealed: ``"<namespace>/<name>"`` (strict, the
default), ``"<namespace>"`` (namespace-wide) or empty (cluster-wide). Decryption tries every
private key it is given (the ciphertext names none) and fails with the controller's own
message, ``no key could decrypt secret``. Errors never carry plaintext or key material.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ANNOTATION_CLUSTER_WIDE",
    "ANNOTATION_NAMESPACE_WIDE",
    "NO_KEY_MESSAGE",
    "DecryptError",
    "Scope",
    "SealingError",
    "encryption_label",
    "fingerprint",
    "hybrid_decrypt",
    "hybrid_encrypt",
    "public_key_from_pem",
    "scope_from_annotations",
]

ANNOTATION_NAMESPACE_WIDE = "sealedsecrets.bitnami.com/namespace-wide"
ANNOTATION_CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"
NO_KEY_MESSAGE = "no key could decrypt secret"

_SESSION_KEY_BYTES = 32
_NONCE = b"\0" * 12
_TAG_BYTES = 16


class SealingError(ValueError):
    """Input that cannot be sealed or unsealed; the message never holds secret bytes."""


class DecryptError(SealingError):
    """No key could decrypt a value (wrong key, wrong scope label, or tampered data)."""


class Scope(enum.Enum):
    """Where a sealed value may be unsealed; the value is kubeseal's ``--scope`` spelling."""

    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise SealingError(f"unknown scope {text!r}; expected one of {choices}") from None

    def annotations(self) -> dict[str, str]:
        """The annotations that select this scope (none for strict)."""
        if self is Scope.CLUSTER_WIDE:
            return {ANNOTATION_CLUSTER_WIDE: "true"}
        if self is Scope.NAMESPACE_WIDE:
            return {ANNOTATION_NAMESPACE_WIDE: "true"}
        return {}


def scope_from_annotations(annotations: Mapping[str, str] | None) -> Scope:
    """The scope an object's annotations select; cluster-wide is checked first and wins."""
    annotations = annotations or {}
    if annotations.get(ANNOTATION_CLUSTER_WIDE) == "true":
        return Scope.CLUSTER_WIDE
    if annotations.get(ANNOTATION_NAMESPACE_WIDE) == "true":
        return Scope.NAMESPACE_WIDE
    return Scope.STRICT


def encryption_label(scope: Scope, namespace: str, name: str) -> bytes:
    """The OAEP label of a value sealed for ``namespace/name`` in ``scope``."""
    if scope is Scope.CLUSTER_WIDE:
        return b""
    if scope is Scope.NAMESPACE_WIDE:
        return namespace.encode()
    return f"{namespace}/{name}".encode()


def _oaep(label: bytes) -> padding.OAEP:
    # Go treats an empty label as no label; so does OpenSSL when given None.
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=label or None,
    )


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    """Seal ``plaintext`` for ``public_key`` under ``label``; returns the base64 text."""
    session_key = os.urandom(_SESSION_KEY_BYTES)
    rsa_part = public_key.encrypt(session_key, _oaep(label))
    sealed = AESGCM(session_key).encrypt(_NONCE, plaintext, None)
    blob = len(rsa_part).to_bytes(2, "big") + rsa_part + sealed
    return base64.b64encode(blob).decode("ascii")


def _decode(ciphertext: str | bytes) -> bytes:
    try:
        return base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise SealingError("sealed value is not valid base64") from None


def hybrid_decrypt(
    private_keys: Iterable[rsa.RSAPrivateKey], ciphertext: str | bytes, label: bytes
) -> bytes:
    """Unseal a base64 value with any of ``private_keys``; raises DecryptError if none fits."""
    blob = _decode(ciphertext)
    if len(blob) < 2:
        raise SealingError("SealedSecret data is too short")
    rsa_len = int.from_bytes(blob[:2], "big")
    if len(blob) < rsa_len + 2:
        raise SealingError("SealedSecret data is too short")
    rsa_part, sealed = blob[2 : 2 + rsa_len], blob[2 + rsa_len :]
    for key in private_keys:
        if (key.key_size + 7) // 8 != rsa_len:
            continue
        try:
            session_key = key.decrypt(rsa_part, _oaep(label))
            return AESGCM(session_key).decrypt(_NONCE, sealed, None)
        except (ValueError, InvalidTag):
            continue
    raise DecryptError(NO_KEY_MESSAGE)


def public_key_from_pem(pem: bytes, *, now: datetime | None = None) -> rsa.RSAPublicKey:
    """The RSA key of the first certificate in ``pem`` (or of a bare public key PEM).

    Like kubeseal, an expired certificate is refused.
    """
    if b"-----BEGIN CERTIFICATE-----" in pem:
        try:
            cert = x509.load_pem_x509_certificates(pem)[0]
        except ValueError as exc:
            raise SealingError(f"cannot parse certificate: {exc}") from None
        moment = now or datetime.now(UTC)
        if cert.not_valid_after_utc < moment:
            raise SealingError("failed to encrypt using an expired certificate")
        key: object = cert.public_key()
    else:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise SealingError("cannot parse certificate: no PEM certificate found") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SealingError("the certificate does not hold an RSA public key")
    return key


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """``SHA256:<base64-raw>`` of the SSH wire form of the key, as the controller keys its map."""
    openssh = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(openssh.split()[1])
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
