"""Re-encrypting SealedSecret manifests with the newest key, changing only what must change.

``rotate_text`` reads one manifest file (YAML documents or JSON) and re-seals each value of
each SealedSecret that the newest key cannot open (under the object's own scope label) with
the newest key. Values already sealed for the newest key keep their bytes, so a rotation
run twice changes nothing. The new value replaces the old one *in the text* (each ciphertext
is a unique base64 string), so comments, order and layout of the file are kept.

With ``to`` every value is re-sealed for another cluster's public key instead (moving a
repository to another cluster's controller).

``keys_in_use`` says which key (by certificate fingerprint) each SealedSecret depends on,
for the report of objects still tied to an old key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from gitsail.secrets.keys import KeyRing, SealingKey
from gitsail.secrets.sealedsecret import API_VERSION, KIND, sealed_identity
from gitsail.secrets.sealing import DecryptError, SealingError, hybrid_decrypt, hybrid_encrypt

__all__ = ["Rotated", "keys_in_use", "rotate_text"]


@dataclass(frozen=True)
class Rotated:
    """One SealedSecret of a file whose values were re-sealed."""

    namespace: str
    name: str
    keys: tuple[str, ...]  # the encryptedData keys re-sealed ("" for a legacy data blob)


def _sealed_secrets(text: str) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []
    return [
        d
        for d in docs
        if isinstance(d, dict)
        and d.get("kind") == KIND
        and str(d.get("apiVersion", "")).startswith(API_VERSION.split("/")[0] + "/")
    ]


def _opens(key: SealingKey, value: str, label: bytes) -> bool:
    try:
        hybrid_decrypt([key.private_key], value, label)
    except SealingError:
        return False
    return True


def rotate_text(
    text: str, ring: KeyRing, *, to: rsa.RSAPublicKey | None = None
) -> tuple[str, list[Rotated]]:
    """``text`` with every value not sealed for the newest key re-sealed for it.

    With ``to`` (another cluster's key, ``--to-cert``) every value is re-sealed for ``to``:
    whether a value is already sealed for it cannot be checked without its private key.
    """
    newest = ring.newest
    if newest is None:
        raise SealingError("there is no sealing key to rotate to")
    target = to or newest.public_key
    keys = ring.private_keys()
    rotated: list[Rotated] = []
    for sealed in _sealed_secrets(text):
        name, namespace, label = sealed_identity(sealed)
        spec = sealed.get("spec") or {}
        values: list[tuple[str, str]] = [
            (str(k), str(v)) for k, v in (spec.get("encryptedData") or {}).items()
        ]
        if spec.get("data"):
            values.append(("", str(spec["data"])))
        changed: list[str] = []
        for key, value in values:
            if to is None and _opens(newest, value, label):
                continue
            try:
                plain = hybrid_decrypt(keys, value, label)
            except DecryptError:
                raise SealingError(
                    f"SealedSecret {namespace}/{name} key {key!r}: no key could decrypt it"
                ) from None
            fresh = hybrid_encrypt(target, plain, label)
            if text.count(value) != 1:
                raise SealingError(
                    f"SealedSecret {namespace}/{name} key {key!r}: its value is not written "
                    "on one line exactly once; rewrite the file with `gitsail seal`"
                )
            text = text.replace(value, fresh)
            changed.append(key)
        if changed:
            rotated.append(Rotated(namespace, name, tuple(changed)))
    return text, rotated


def keys_in_use(
    sealed_secrets: Iterable[Mapping[str, Any]], keys: Sequence[SealingKey]
) -> list[tuple[str, str, str]]:
    """(namespace, name, fingerprint of the key its values open with, or "none")."""
    out: list[tuple[str, str, str]] = []
    for sealed in sealed_secrets:
        name, namespace, label = sealed_identity(sealed)
        spec = sealed.get("spec") or {}
        values = [str(v) for v in (spec.get("encryptedData") or {}).values()]
        if spec.get("data"):
            values.append(str(spec["data"]))
        used = "none"
        for key in keys:
            if values and all(_opens(key, v, label) for v in values):
                used = key.fingerprint
                break
        out.append((namespace, name, used))
    return out
