from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gitsail.secrets.keys import SealingKey
from gitsail.secrets.sealedsecret import merge_sealed, seal_secret, seal_value, unseal
from gitsail.secrets.sealing import (
    NO_KEY_MESSAGE,
    DecryptError,
    Scope,
    SealingError,
    encryption_label,
    hybrid_encrypt,
)


def _secret(namespace: str | None = "team-a", **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "db",
        "labels": {"app": "db"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            **annotations,
        },
        "uid": "abc",
        "resourceVersion": "7",
        "ownerReferences": [{"kind": "X"}],
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "kubernetes.io/basic-auth",
        "data": {"password": base64.b64encode(b"hunter2").decode()},
        "stringData": {"username": "admin"},
    }


def test_seal_then_unseal_gives_the_secret_back(key: SealingKey) -> None:
    sealed = seal_secret(key.public_key, _secret())
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"] == {"name": "db", "namespace": "team-a"}
    template = sealed["spec"]["template"]
    assert template["type"] == "kubernetes.io/basic-auth"
    assert template["metadata"] == {"name": "db", "namespace": "team-a", "labels": {"app": "db"}}
    assert sorted(sealed["spec"]["encryptedData"]) == ["password", "username"]
    assert "hunter2" not in json.dumps(sealed)
    sealed["metadata"]["uid"] = "ss-uid"
    secret = unseal(sealed, [key.private_key])
    assert secret["data"] == {
        "password": base64.b64encode(b"hunter2").decode(),
        "username": base64.b64encode(b"admin").decode(),
    }
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["metadata"]["labels"] == {"app": "db"}
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "name": "db",
            "uid": "ss-uid",
            "controller": True,
        }
    ]


def test_strict_without_namespace_is_refused(key: SealingKey) -> None:
    with pytest.raises(SealingError, match="no namespace"):
        seal_secret(key.public_key, _secret(namespace=None))
    with pytest.raises(SealingError, match="namespace"):
        seal_value(key.public_key, b"v", scope=Scope.STRICT, namespace="", name="db")
    sealed = seal_secret(key.public_key, _secret(namespace=None), scope=Scope.CLUSTER_WIDE)
    assert "namespace" not in sealed["metadata"]


def test_scope_flag_overrides_and_is_written_on_both_metadatas(key: SealingKey) -> None:
    sealed = seal_secret(
        key.public_key,
        _secret(**{"sealedsecrets.bitnami.com/cluster-wide": "true"}),
        scope=Scope.NAMESPACE_WIDE,
    )
    expected = {"sealedsecrets.bitnami.com/namespace-wide": "true"}
    assert sealed["metadata"]["annotations"] == expected
    assert sealed["spec"]["template"]["metadata"]["annotations"] == expected


def test_empty_data_is_refused_unless_allowed(key: SealingKey) -> None:
    empty = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e", "namespace": "n"}}
    with pytest.raises(SealingError, match="allow-empty-data"):
        seal_secret(key.public_key, empty)
    assert seal_secret(key.public_key, empty, allow_empty_data=True)["spec"]["encryptedData"] == {}


@pytest.mark.parametrize(
    ("scope", "moved_ok"),
    [(Scope.STRICT, False), (Scope.NAMESPACE_WIDE, False), (Scope.CLUSTER_WIDE, True)],
)
def test_moving_to_another_namespace_unseals_only_cluster_wide(
    key: SealingKey, scope: Scope, moved_ok: bool
) -> None:
    sealed = seal_secret(key.public_key, _secret(), scope=scope)
    sealed["metadata"]["namespace"] = "elsewhere"
    if moved_ok:
        assert unseal(sealed, [key.private_key])["metadata"]["namespace"] == "elsewhere"
    else:
        with pytest.raises(DecryptError, match=NO_KEY_MESSAGE):
            unseal(sealed, [key.private_key])


def test_template_data_renders_with_decrypted_values(key: SealingKey) -> None:
    sealed = seal_secret(key.public_key, _secret())
    sealed["spec"]["template"]["data"] = {
        "config.json": '{"user": {{ toJson .username }}, "pw": {{ .password | quote }}}',
        "username": "{{ .username | upper }}",
    }
    data = unseal(sealed, [key.private_key])["data"]
    assert json.loads(base64.b64decode(data["config.json"])) == {"user": "admin", "pw": "hunter2"}
    assert base64.b64decode(data["username"]) == b"ADMIN"  # template keys win


def test_unsupported_template_errors_name_the_action_not_values(key: SealingKey) -> None:
    sealed = seal_secret(key.public_key, _secret())
    sealed["spec"]["template"]["data"] = {"x": "{{ .password | sha256sum }}"}
    with pytest.raises(SealingError) as info:
        unseal(sealed, [key.private_key])
    assert "sha256sum" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_legacy_v1_data_blob_unseals(key: SealingKey) -> None:
    inner = {"apiVersion": "v1", "kind": "Secret", "data": {"k": base64.b64encode(b"v").decode()}}
    blob = hybrid_encrypt(key.public_key, json.dumps(inner).encode(), b"ns/old")
    sealed = {"metadata": {"name": "old", "namespace": "ns"}, "spec": {"data": blob}}
    assert unseal(sealed, [key.private_key])["data"] == {"k": base64.b64encode(b"v").decode()}
    with pytest.raises(SealingError, match="deprecated"):
        unseal(sealed, [key.private_key], accept_v1_data=False)


def test_merge_keeps_ciphertext_of_unchanged_plaintext(key: SealingKey) -> None:
    target = seal_secret(key.public_key, _secret())
    old = dict(target["spec"]["encryptedData"])
    changed = _secret()
    changed["stringData"] = {"username": "root", "extra": "new"}
    resealed = seal_secret(key.public_key, changed)
    plaintexts = {"password": b"hunter2", "username": b"root", "extra": b"new"}
    merged = merge_sealed(target, resealed, plaintexts=plaintexts, private_keys=[key.private_key])
    enc = merged["spec"]["encryptedData"]
    assert enc["password"] == old["password"]  # unchanged plaintext: same bytes
    assert enc["username"] != old["username"]
    assert "extra" in enc
    values = unseal(merged, [key.private_key])["data"]
    assert base64.b64decode(values["username"]) == b"root"
    # Without the private key nothing can be compared: every input key is replaced.
    blind = merge_sealed(target, resealed, plaintexts=plaintexts)
    assert blind["spec"]["encryptedData"]["password"] != old["password"]


def test_raw_value_uses_the_scope_label(key: SealingKey) -> None:
    from gitsail.secrets.sealing import hybrid_decrypt

    raw = seal_value(key.public_key, b"v", scope=Scope.NAMESPACE_WIDE, namespace="n", name="")
    assert hybrid_decrypt([key.private_key], raw, encryption_label(Scope.NAMESPACE_WIDE, "n", ""))
