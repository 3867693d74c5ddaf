"""gitsail's SOPS decryption against the real ``sops`` (v3.13.3) and ``age`` (v1.3.2), both
the pinned test-only builds:

- files the real ``sops`` encrypts with an age key made by the real ``age-keygen`` (YAML,
  JSON, dotenv, binary; every encryption rule; ``--mac-only-encrypted``; comments; several
  recipients) are decrypted by gitsail to what ``sops --decrypt`` prints (byte for byte for
  JSON, dotenv and binary; the same data for YAML, which gitsail re-serialises);
- a file the real ``sops`` refuses after tampering is refused by gitsail too;
- what gitsail encrypts (its fixture encrypter) the real ``sops`` decrypts.

No cluster is needed; the files live in the test's tmp_path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from gitsail import toolchain
from gitsail.secrets import age, sops
from gitsail.secrets.age import AgeIdentity
from gitsail.secrets.sops import Format, SopsError
from gitsail.secrets.sops_encrypt import encrypt_file

pytestmark = pytest.mark.integration

SECRET_YAML = """\
# a comment sops encrypts too
apiVersion: v1
kind: Secret
metadata:
  name: db # inline comment
  namespace: default
type: Opaque
stringData:
  password: s3cr3t-yaml-value
  port: 5432
  ratio: 1.25
  enabled: true
  mode: yes
  list:
    - one
    - 2
    # comment in a list
    - three: 3
  empty: ""
  nothing: null
data:
  token: aGVsbG8td29ybGQ=
"""
SECRET_JSON = """{
  "user": "admin",
  "password": "s3cr3t-json-value",
  "n": 42,
  "f": 0.5,
  "nested": {"a": [1, "x<y&z", true], "b": {}},
  "e": []
}
"""
SECRET_ENV = "DB_USER=admin\n# comment\nDB_PASS=s3cr3t-env-value\nMULTI=a\\nb\n"
SECRET_BINARY = b"-----BEGIN KEY-----\ns3cr3t-binary-value\n\x7f\n-----END KEY-----\n"


@pytest.fixture(scope="module")
def sops_bin() -> Path:
    return toolchain.find_binary("sops")


@pytest.fixture(scope="module")
def age_keygen() -> Path:
    return toolchain.find_binary("age-keygen")


@pytest.fixture(scope="module")
def real_key(age_keygen: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A key file made by the real age-keygen and its public recipient."""
    path = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run([str(age_keygen), "-o", str(path)], check=True, capture_output=True)
    public = next(
        line.split(": ", 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith("# public key: ")
    )
    return path, public


@pytest.fixture(scope="module")
def identities(real_key: tuple[Path, str]) -> list[AgeIdentity]:
    return age.parse_identities(real_key[0].read_text())


def run_sops(sops_bin: Path, args: list[str], key_file: Path | None = None) -> bytes:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(key_file.parent if key_file else "/nonexistent")}
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    proc = subprocess.run(
        [str(sops_bin), *args], capture_output=True, check=False, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def sops_encrypt(sops_bin: Path, path: Path, fmt: str, recipients: list[str], *extra: str) -> bytes:
    return run_sops(
        sops_bin,
        [
            "--encrypt",
            "--age",
            ",".join(recipients),
            "--input-type",
            fmt,
            "--output-type",
            fmt,
            *extra,
            str(path),
        ],
    )


def sops_decrypt(sops_bin: Path, data: bytes, fmt: str, key_file: Path, tmp: Path) -> bytes:
    path = tmp / f"in.{fmt}"
    path.write_bytes(data)
    return run_sops(
        sops_bin,
        ["--decrypt", "--input-type", fmt, "--output-type", fmt, str(path)],
        key_file=key_file,
    )


RULES = [
    (),
    ("--encrypted-regex", "^(data|stringData)$"),
    ("--unencrypted-regex", "^(apiVersion|kind|metadata|type)$"),
    ("--encrypted-suffix", "Data"),
    ("--unencrypted-suffix", "_plain"),
    ("--mac-only-encrypted", "--encrypted-regex", "^stringData$"),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: " ".join(r) or "default")
def test_yaml_encrypted_by_real_sops_decrypts_to_the_same_data(
    sops_bin: Path,
    real_key: tuple[Path, str],
    identities: list[AgeIdentity],
    tmp_path: Path,
    rule: tuple[str, ...],
) -> None:
    plain = tmp_path / "secret.yaml"
    plain.write_text(SECRET_YAML)
    encrypted = sops_encrypt(sops_bin, plain, "yaml", [real_key[1]], *rule)
    assert b"s3cr3t-yaml-value" not in encrypted
    ours = sops.decrypt_file(encrypted, Format.YAML, identities, where="secret.yaml")
    theirs = sops_decrypt(sops_bin, encrypted, "yaml", real_key[0], tmp_path)
    assert yaml.safe_load(ours) == yaml.safe_load(theirs)
    assert yaml.safe_load(ours)["stringData"]["password"] == "s3cr3t-yaml-value"


def test_multi_document_yaml_from_real_sops(
    sops_bin: Path, real_key: tuple[Path, str], identities: list[AgeIdentity], tmp_path: Path
) -> None:
    plain = tmp_path / "two.yaml"
    plain.write_text(SECRET_YAML + "---\nkind: Second\nvalue: s3cr3t-second-doc\n")
    encrypted = sops_encrypt(sops_bin, plain, "yaml", [real_key[1]])
    ours = list(yaml.safe_load_all(sops.decrypt_file(encrypted, Format.YAML, identities)))
    theirs = list(
        yaml.safe_load_all(sops_decrypt(sops_bin, encrypted, "yaml", real_key[0], tmp_path))
    )
    assert ours == theirs
    assert ours[1]["value"] == "s3cr3t-second-doc"


@pytest.mark.parametrize(
    ("fmt", "ext", "text"),
    [
        (Format.JSON, "json", SECRET_JSON.encode()),
        (Format.DOTENV, "dotenv", SECRET_ENV.encode()),
        (Format.BINARY, "binary", SECRET_BINARY),
    ],
)
def test_json_dotenv_binary_from_real_sops_decrypt_byte_for_byte(
    sops_bin: Path,
    real_key: tuple[Path, str],
    identities: list[AgeIdentity],
    tmp_path: Path,
    fmt: Format,
    ext: str,
    text: bytes,
) -> None:
    plain = tmp_path / f"secret.{ext}"
    plain.write_bytes(text)
    encrypted = sops_encrypt(sops_bin, plain, ext, [real_key[1]])
    assert b"s3cr3t" not in encrypted
    ours = sops.decrypt_file(encrypted, fmt, identities)
    theirs = sops_decrypt(sops_bin, encrypted, ext, real_key[0], tmp_path)
    assert ours == theirs
    if fmt is not Format.JSON:
        assert ours == text


def test_the_second_recipient_decrypts_too(
    sops_bin: Path, real_key: tuple[Path, str], identities: list[AgeIdentity], tmp_path: Path
) -> None:
    _, first = age.generate()
    plain = tmp_path / "secret.yaml"
    plain.write_text(SECRET_YAML)
    encrypted = sops_encrypt(sops_bin, plain, "yaml", [first.recipient, real_key[1]])
    out = yaml.safe_load(sops.decrypt_file(encrypted, Format.YAML, identities))
    assert out["stringData"]["password"] == "s3cr3t-yaml-value"
    with pytest.raises(sops.NoMatchingKey) as err:
        sops.decrypt_file(encrypted, Format.YAML, [age.generate()[1]])
    assert first.recipient in str(err.value)
    assert real_key[1] in str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_a_file_real_sops_refuses_after_tampering_is_refused(
    sops_bin: Path, real_key: tuple[Path, str], identities: list[AgeIdentity], tmp_path: Path
) -> None:
    plain = tmp_path / "secret.yaml"
    plain.write_text(SECRET_YAML)
    encrypted = sops_encrypt(
        sops_bin, plain, "yaml", [real_key[1]], "--encrypted-regex", "^stringData$"
    )
    tampered = encrypted.replace(b"name: db", b"name: other")
    path = tmp_path / "tampered.yaml"
    path.write_bytes(tampered)
    proc = subprocess.run(
        [str(sops_bin), "--decrypt", str(path)],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SOPS_AGE_KEY_FILE": str(real_key[0])},
    )
    assert proc.returncode != 0
    assert b"MAC mismatch" in proc.stderr
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.decrypt_file(tampered, Format.YAML, identities)


@pytest.mark.parametrize(
    ("fmt", "ext", "text"),
    [
        (Format.YAML, "yaml", SECRET_YAML.encode()),
        (Format.JSON, "json", SECRET_JSON.encode()),
        (Format.DOTENV, "dotenv", SECRET_ENV.encode()),
        (Format.BINARY, "binary", SECRET_BINARY),
    ],
)
def test_what_gitsail_encrypts_the_real_sops_decrypts(
    sops_bin: Path,
    real_key: tuple[Path, str],
    tmp_path: Path,
    fmt: Format,
    ext: str,
    text: bytes,
) -> None:
    encrypted = encrypt_file(text, fmt, [real_key[1]])
    theirs = sops_decrypt(sops_bin, encrypted, ext, real_key[0], tmp_path)
    if fmt is Format.YAML:
        expected = yaml.safe_load(text)
        expected["stringData"]["mode"] = "yes"  # YAML 1.2 typing, as sops reads it
        assert yaml.safe_load(theirs) == expected
    elif fmt is Format.JSON:
        assert theirs == sops.decrypt_file(
            encrypted, fmt, age.parse_identities(real_key[0].read_text())
        )
    elif fmt is Format.DOTENV:
        assert theirs == text
    else:
        assert theirs == text


def test_the_real_age_cli_decrypts_what_pyrage_encrypts(
    real_key: tuple[Path, str], tmp_path: Path
) -> None:
    age_bin = toolchain.find_binary("age")
    sealed = tmp_path / "k.age"
    sealed.write_bytes(age.encrypt(b"data-key-bytes", [real_key[1]], armor=True))
    proc = subprocess.run(
        [str(age_bin), "--decrypt", "-i", str(real_key[0]), str(sealed)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert proc.stdout == b"data-key-bytes"
