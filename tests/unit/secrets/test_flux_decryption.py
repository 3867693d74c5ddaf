"""Flux SOPS decryption around a kustomize build (gitsail.kinds.flux_decryption), on a
workspace directory, without kustomize: what is decrypted in place, what is verified, what is
refused."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.kinds.flux_decryption import (
    DECRYPTION_FAILED,
    Decryptor,
    private_workspace,
    refuse_encrypted,
)
from gitsail.kinds.flux_kustomization import Decryption, parse_kustomization
from gitsail.kinds.status import Stalled, Transient
from gitsail.secrets import age
from gitsail.secrets.age import AgeIdentity
from gitsail.secrets.sops import Format
from gitsail.secrets.sops_encrypt import encrypt_file

SECRET = b"""apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: pw-plaintext-1
"""


@pytest.fixture(scope="module")
def ident() -> AgeIdentity:
    return age.generate()[1]


def decryptor(*identities: AgeIdentity) -> Decryptor:
    return Decryptor(
        where="Kustomization flux-system/app",
        identities=list(identities),
        digest="sha256:test",
        secret="Secret/flux-system/sops-age",
    )


def write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def workspace(tmp_path: Path, ident: AgeIdentity) -> Path:
    root = tmp_path / "src"
    enc = encrypt_file(
        SECRET, Format.YAML, [ident.recipient], encrypted_regex="^(data|stringData)$"
    )
    write(root, "app/secret.yaml", enc)
    write(
        root,
        "app/app.env",
        encrypt_file(b"API_KEY=env-plaintext-2\n", Format.DOTENV, [ident.recipient]),
    )
    write(
        root,
        "app/token.enc",
        encrypt_file(b"bin-plaintext-3", Format.BINARY, [ident.recipient]),
    )
    write(
        root,
        "app/kustomization.yaml",
        yaml.safe_dump(
            {
                "resources": ["secret.yaml"],
                "secretGenerator": [
                    {"name": "gen", "envs": ["app.env"], "files": ["token=token.enc"]}
                ],
            }
        ).encode(),
    )
    return root


def rendered_secret(root: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((root / "app/secret.yaml").read_text())
    doc["metadata"]["namespace"] = "target"  # a kustomize edit the MAC does not cover
    return doc


def test_generator_inputs_are_decrypted_in_place_0600(tmp_path: Path, ident: AgeIdentity) -> None:
    root = workspace(tmp_path, ident)
    dec = decryptor(ident)
    dec.prepare(root, "app")
    assert (root / "app/app.env").read_bytes() == b"API_KEY=env-plaintext-2\n"
    assert (root / "app/token.enc").read_bytes() == b"bin-plaintext-3"
    for name in ("app.env", "token.enc"):
        assert stat.S_IMODE((root / "app" / name).stat().st_mode) == 0o600
    # manifests stay encrypted on disk: they are decrypted in memory after the build
    assert b"pw-plaintext-1" not in (root / "app/secret.yaml").read_bytes()


def test_encrypted_manifests_are_decrypted_in_memory_after_the_build(
    tmp_path: Path, ident: AgeIdentity
) -> None:
    root = workspace(tmp_path, ident)
    dec = decryptor(ident)
    dec.prepare(root, "app")
    (out,) = dec.decrypt_objects([rendered_secret(root)])
    assert out["stringData"] == {"password": "pw-plaintext-1"}
    assert out["metadata"]["namespace"] == "target"
    assert "sops" not in out


def test_a_wrong_key_fails_generator_inputs_with_a_clear_reason(
    tmp_path: Path, ident: AgeIdentity
) -> None:
    root = workspace(tmp_path, ident)
    with pytest.raises(Transient) as err:
        decryptor(age.generate()[1]).prepare(root, "app")
    assert err.value.reason == DECRYPTION_FAILED
    assert ident.recipient in err.value.message
    assert "Secret/flux-system/sops-age" in err.value.message
    assert "plaintext" not in err.value.message
    # nothing was written in the clear
    assert b"env-plaintext-2" not in (root / "app/app.env").read_bytes()


def test_a_wrong_key_fails_an_encrypted_manifest(tmp_path: Path, ident: AgeIdentity) -> None:
    root = tmp_path / "src"
    write(
        root,
        "secret.yaml",
        encrypt_file(SECRET, Format.YAML, [ident.recipient], encrypted_regex="^stringData$"),
    )
    dec = decryptor(age.generate()[1])
    dec.prepare(root, "")
    doc = yaml.safe_load((root / "secret.yaml").read_text())
    with pytest.raises(Transient, match="none of the 1 age identities") as err:
        dec.decrypt_objects([doc])
    assert "pw-plaintext" not in str(err.value)


def test_a_tampered_manifest_is_refused_before_anything_is_applied(
    tmp_path: Path, ident: AgeIdentity
) -> None:
    root = tmp_path / "src"
    enc = encrypt_file(SECRET, Format.YAML, [ident.recipient], encrypted_regex="^stringData$")
    write(root, "secret.yaml", enc.replace(b"type: Opaque", b"type: kubernetes.io/tls"))
    dec = decryptor(ident)
    dec.prepare(root, "")
    doc = yaml.safe_load((root / "secret.yaml").read_text())
    with pytest.raises(Stalled, match="MAC mismatch") as err:
        dec.decrypt_objects([doc])
    assert err.value.reason == DECRYPTION_FAILED


def test_an_encrypted_object_from_no_verified_file_is_refused(ident: AgeIdentity) -> None:
    doc = yaml.safe_load(
        encrypt_file(SECRET, Format.YAML, [ident.recipient], encrypted_regex="^stringData$")
    )
    with pytest.raises(Stalled, match="comes from no file"):
        decryptor(ident).decrypt_objects([doc])


def test_secret_data_fields_holding_sops_files_are_decrypted(ident: AgeIdentity) -> None:
    inner = encrypt_file(b"A=1\nB=data-plaintext-4\n", Format.DOTENV, [ident.recipient])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "x"},
        "data": {"app.env": base64.b64encode(inner).decode(), "plain": "YWJj"},
    }
    (out,) = decryptor(ident).decrypt_objects([secret])
    assert base64.b64decode(out["data"]["app.env"]) == b"A=1\nB=data-plaintext-4\n"
    assert out["data"]["plain"] == "YWJj"


def test_the_decrypt_disabled_annotation_skips_an_object(ident: AgeIdentity) -> None:
    doc = yaml.safe_load(
        encrypt_file(SECRET, Format.YAML, [ident.recipient], encrypted_regex="^stringData$")
    )
    doc["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/decrypt": "Disabled"}
    assert decryptor(ident).decrypt_objects([doc]) == [doc]


def test_without_decryption_an_encrypted_secret_is_refused(ident: AgeIdentity) -> None:
    doc = yaml.safe_load(encrypt_file(SECRET, Format.YAML, [ident.recipient]))
    with pytest.raises(Stalled, match="configuring decryption is required"):
        refuse_encrypted([doc])
    refuse_encrypted([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p"}}])


def test_kustomize_errors_are_scrubbed_of_decrypted_values(
    tmp_path: Path, ident: AgeIdentity
) -> None:
    root = workspace(tmp_path, ident)
    dec = decryptor(ident)
    dec.prepare(root, "app")
    text = dec.scrub("invalid line 'API_KEY=env-plaintext-2' in bin-plaintext-3")
    assert "plaintext" not in text
    assert text.count("<redacted>") == 2


def test_generator_inputs_outside_the_workspace_are_left_alone(
    tmp_path: Path, ident: AgeIdentity
) -> None:
    outside = write(
        tmp_path,
        "outside.env",
        encrypt_file(b"X=outside-plaintext\n", Format.DOTENV, [ident.recipient]),
    )
    root = tmp_path / "src"
    write(
        root,
        "kustomization.yaml",
        yaml.safe_dump({"secretGenerator": [{"name": "g", "envs": ["../outside.env"]}]}).encode(),
    )
    decryptor(ident).prepare(root, "")
    assert b"outside-plaintext" not in outside.read_bytes()


def test_the_private_workspace_is_0700_and_removed(tmp_path: Path) -> None:
    with private_workspace(tmp_path, "t-") as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        (path / "f").write_text("x")
    assert not path.exists()


def test_spec_decryption_is_parsed() -> None:
    obj = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": "flux-system", "generation": 1},
        "spec": {
            "interval": "5m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}},
        },
    }
    assert parse_kustomization(obj).decryption == Decryption("sops", "sops-age")
