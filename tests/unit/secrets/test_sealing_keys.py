from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from gitsail.secrets.keys import (
    KEY_LABEL,
    KeyRing,
    SealingKey,
    generate_key,
    key_secret,
    keyring_from_secrets,
    private_keys_from_bytes,
    renewal_due,
)
from gitsail.secrets.sealing import SealingError, hybrid_decrypt, hybrid_encrypt

from .conftest import NOW


def _named(secret: dict[str, Any], name: str) -> dict[str, Any]:
    secret["metadata"]["name"] = name
    return secret


def test_key_secret_has_the_controllers_shape(key: SealingKey) -> None:
    secret = key_secret(key, namespace="kube-system", labels={"team": "a"})
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["generateName"] == "sealed-secrets-key"
    assert secret["metadata"]["namespace"] == "kube-system"
    assert secret["metadata"]["labels"] == {"team": "a", KEY_LABEL: "active"}
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    der = cert.tbs_certificate_bytes
    # keyUsage (2.5.29.15), critical, EncipherOnly only: what Go's x509 writes for the
    # controller (`cryptography` will not parse it back, so the DER is checked).
    assert bytes.fromhex("0603551d0f0101ff040403020001") in der
    # basicConstraints (2.5.29.19), critical, CA.
    assert bytes.fromhex("0603551d130101ff040530030101ff") in der
    assert cert.public_key() == key.public_key


def test_keys_round_trip_through_their_secrets_and_the_newest_seals(key: SealingKey) -> None:
    newer = generate_key(now=NOW + timedelta(days=31), key_size=2048)
    secrets = [
        _named(key_secret(newer, namespace="ns"), "sealed-secrets-keyb"),
        _named(key_secret(key, namespace="ns"), "sealed-secrets-keya"),
    ]
    ring, problems = keyring_from_secrets(secrets)
    assert problems == []
    assert [k.secret_name for k in ring.keys] == ["sealed-secrets-keya", "sealed-secrets-keyb"]
    assert ring.newest is not None
    assert ring.newest.public_key == newer.public_key
    # Old keys still unseal what they sealed.
    old_value = hybrid_encrypt(key.public_key, b"old", b"")
    assert hybrid_decrypt(ring.private_keys(), old_value, b"") == b"old"


def test_a_broken_key_secret_is_reported_by_name_and_skipped(key: SealingKey) -> None:
    good = _named(key_secret(key, namespace="ns"), "good")
    bad = _named(key_secret(key, namespace="ns"), "bad")
    bad["data"]["tls.key"] = base64.b64encode(b"garbage").decode()
    ring, problems = keyring_from_secrets([good, bad])
    assert len(ring.keys) == 1
    assert len(problems) == 1
    assert "private key" in problems[0]


def test_renewal_is_due_after_the_period_never_when_disabled(key: SealingKey) -> None:
    ring = KeyRing((key,))
    assert renewal_due(KeyRing(()), now=NOW)
    assert not renewal_due(ring, now=NOW + timedelta(days=29))
    assert renewal_due(ring, now=NOW + timedelta(days=30))
    assert renewal_due(ring, now=NOW + timedelta(hours=2), period=timedelta(hours=1))
    assert not renewal_due(ring, now=NOW + timedelta(days=999), period=timedelta(0))
    cutoff = NOW + timedelta(days=1)
    assert renewal_due(ring, now=NOW + timedelta(days=2), period=timedelta(0), cutoff=cutoff)


def test_recovery_keys_load_from_pem_secret_or_list(key: SealingKey) -> None:
    assert private_keys_from_bytes(key.key_pem())[0].private_numbers() == (
        key.private_key.private_numbers()
    )
    import json

    secret = _named(key_secret(key, namespace="ns"), "k")
    assert len(private_keys_from_bytes(json.dumps(secret).encode())) == 1
    listed = {"apiVersion": "v1", "kind": "List", "items": [secret, secret]}
    assert len(private_keys_from_bytes(json.dumps(listed).encode())) == 2
    with pytest.raises(SealingError):
        private_keys_from_bytes(b'{"kind": "ConfigMap"}')
