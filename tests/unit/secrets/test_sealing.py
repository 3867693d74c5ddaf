from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gitsail.secrets.keys import SealingKey, generate_key
from gitsail.secrets.sealing import (
    NO_KEY_MESSAGE,
    DecryptError,
    Scope,
    SealingError,
    encryption_label,
    fingerprint,
    hybrid_decrypt,
    hybrid_encrypt,
    public_key_from_pem,
    scope_from_annotations,
)

from .conftest import NOW


def test_labels_are_kubeseals_for_each_scope() -> None:
    assert encryption_label(Scope.STRICT, "ns", "name") == b"ns/name"
    assert encryption_label(Scope.NAMESPACE_WIDE, "ns", "name") == b"ns"
    assert encryption_label(Scope.CLUSTER_WIDE, "ns", "name") == b""


def test_cluster_wide_annotation_wins_over_namespace_wide() -> None:
    both = {
        "sealedsecrets.bitnami.com/namespace-wide": "true",
        "sealedsecrets.bitnami.com/cluster-wide": "true",
    }
    assert scope_from_annotations(both) is Scope.CLUSTER_WIDE
    assert scope_from_annotations({"sealedsecrets.bitnami.com/namespace-wide": "true"}) is (
        Scope.NAMESPACE_WIDE
    )
    assert scope_from_annotations({"sealedsecrets.bitnami.com/cluster-wide": "false"}) is (
        Scope.STRICT
    )
    assert scope_from_annotations(None) is Scope.STRICT


@pytest.mark.parametrize("scope", list(Scope))
def test_round_trip_in_each_scope(key: SealingKey, scope: Scope) -> None:
    label = encryption_label(scope, "team-a", "db")
    sealed = hybrid_encrypt(key.public_key, b"s3cret-value", label)
    assert hybrid_decrypt([key.private_key], sealed, label) == b"s3cret-value"


def test_wire_format_is_length_prefix_rsa_then_gcm(key: SealingKey) -> None:
    blob = base64.b64decode(hybrid_encrypt(key.public_key, b"abc", b"ns/n"))
    k = key.public_key.key_size // 8
    assert blob[:2] == k.to_bytes(2, "big")
    assert len(blob) == 2 + k + 3 + 16
    # The RSA part is OAEP(SHA-256, MGF1-SHA-256, label) of a 32-byte session key.
    session = key.private_key.decrypt(
        blob[2 : 2 + k],
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"ns/n"),
    )
    assert len(session) == 32


def test_a_4096_bit_key_gives_values_starting_with_Ag() -> None:
    big = generate_key(now=NOW)
    assert big.public_key.key_size == 4096
    assert hybrid_encrypt(big.public_key, b"x", b"").startswith("Ag")


def test_each_seal_uses_a_fresh_session_key(key: SealingKey) -> None:
    assert hybrid_encrypt(key.public_key, b"same", b"") != hybrid_encrypt(
        key.public_key, b"same", b""
    )


@pytest.mark.parametrize(
    ("sealed_for", "opened_as"),
    [
        (Scope.STRICT, ("ns", "other-name")),
        (Scope.STRICT, ("other-ns", "db")),
        (Scope.NAMESPACE_WIDE, ("other-ns", "db")),
    ],
)
def test_a_wrong_label_fails(
    key: SealingKey, sealed_for: Scope, opened_as: tuple[str, str]
) -> None:
    sealed = hybrid_encrypt(key.public_key, b"v", encryption_label(sealed_for, "ns", "db"))
    with pytest.raises(DecryptError, match=NO_KEY_MESSAGE):
        hybrid_decrypt([key.private_key], sealed, encryption_label(sealed_for, *opened_as))


def test_namespace_wide_opens_under_any_name_and_cluster_wide_anywhere(key: SealingKey) -> None:
    ns_wide = hybrid_encrypt(key.public_key, b"v", b"ns")
    assert hybrid_decrypt([key.private_key], ns_wide, b"ns") == b"v"
    cluster = hybrid_encrypt(key.public_key, b"v", b"")
    assert hybrid_decrypt([key.private_key], cluster, b"") == b"v"
    with pytest.raises(DecryptError):
        hybrid_decrypt([key.private_key], cluster, b"ns")


@pytest.mark.parametrize("where", ["rsa", "gcm", "tag"])
def test_tampering_fails(key: SealingKey, where: str) -> None:
    blob = bytearray(base64.b64decode(hybrid_encrypt(key.public_key, b"payload", b"l")))
    index = {"rsa": 10, "gcm": 2 + 256 + 1, "tag": len(blob) - 1}[where]
    blob[index] ^= 0x01
    with pytest.raises(DecryptError):
        hybrid_decrypt([key.private_key], base64.b64encode(bytes(blob)), b"l")


def test_the_wrong_key_fails_and_any_right_key_works(
    key: SealingKey, other_key: SealingKey
) -> None:
    sealed = hybrid_encrypt(key.public_key, b"v", b"")
    with pytest.raises(DecryptError):
        hybrid_decrypt([other_key.private_key], sealed, b"")
    assert hybrid_decrypt([other_key.private_key, key.private_key], sealed, b"") == b"v"


def test_short_or_garbled_input_is_refused_without_echoing_it(key: SealingKey) -> None:
    with pytest.raises(SealingError, match="too short"):
        hybrid_decrypt([key.private_key], base64.b64encode(b"\x01"), b"")
    with pytest.raises(SealingError, match="too short"):
        hybrid_decrypt([key.private_key], base64.b64encode(b"\x02\x00abc"), b"")
    with pytest.raises(SealingError) as info:
        hybrid_decrypt([key.private_key], "not base64 TOPSECRET!", b"")
    assert "TOPSECRET" not in str(info.value)


def test_expired_certificate_is_refused_like_kubeseal(key: SealingKey) -> None:
    later = NOW + timedelta(days=3651)
    with pytest.raises(SealingError, match="expired certificate"):
        public_key_from_pem(key.cert_pem(), now=later)
    assert public_key_from_pem(key.cert_pem(), now=NOW) == key.public_key


def test_fingerprint_is_ssh_sha256(key: SealingKey) -> None:
    fp = fingerprint(key.public_key)
    assert fp.startswith("SHA256:")
    assert not fp.endswith("=")
    assert len(fp) == len("SHA256:") + 43
