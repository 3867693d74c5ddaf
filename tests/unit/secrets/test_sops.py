"""SOPS files: decryption, MAC checks, value typing and emitters (gitsail.secrets.sops)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import yaml

from gitsail.secrets import age, sops
from gitsail.secrets._sops_formats import go_float
from gitsail.secrets.age import AgeError, AgeIdentity
from gitsail.secrets.sops import Format, NoMatchingKey, SopsError
from gitsail.secrets.sops_encrypt import encrypt_file

SECRET = b"""apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: default
type: Opaque
stringData:
  password: hunter2-plaintext
  port: 5432
  ratio: 1.5
  enabled: true
  mode: yes
data:
  token: aGVsbG8=
"""


@pytest.fixture(scope="module")
def ident() -> AgeIdentity:
    return age.generate()[1]


@pytest.fixture(scope="module")
def other() -> AgeIdentity:
    return age.generate()[1]


def test_age_key_file_comments_and_blank_lines_are_skipped() -> None:
    line, ident = age.generate()
    text = f"# created: 2026-12-02\n# public key: {ident.recipient}\n\n{line}\n"
    parsed = age.parse_identities(text)
    assert [p.recipient for p in parsed] == [ident.recipient]
    assert line not in repr(parsed)


def test_a_bad_key_line_is_refused_by_number_without_its_text() -> None:
    with pytest.raises(AgeError) as err:
        age.parse_identities("# ok\nAGE-SECRET-KEY-1NOTAKEYATALLsecretish\n")
    assert "line 2" in str(err.value)
    assert "secretish" not in str(err.value).lower()
    with pytest.raises(AgeError, match="SSH key"):
        age.parse_identities("ssh-ed25519 AAAA\n")


@pytest.mark.parametrize(
    ("fmt", "plain"),
    [
        (Format.YAML, SECRET),
        (Format.JSON, b'{"a": {"b": [1, 2.5, "x<y&z"]}, "c": true, "e": {}, "f": []}'),
        (Format.DOTENV, b"USER=admin\n#a comment\nPASS=two\\nlines\n"),
        (Format.BINARY, b"\x00\x01 not utf8? no: plain text\n".replace(b"\x00\x01", b"--")),
    ],
)
def test_round_trip_in_every_format(fmt: Format, plain: bytes, ident: AgeIdentity) -> None:
    encrypted = encrypt_file(plain, fmt, [ident.recipient])
    assert b"ENC[AES256_GCM,data:" in encrypted
    assert sops.has_marker(encrypted, fmt)
    out = sops.decrypt_file(encrypted, fmt, [ident])
    if fmt is Format.YAML:
        expected = yaml.safe_load(plain)
        expected["stringData"]["mode"] = "yes"  # YAML 1.2 (go-yaml v3): a string, not a bool
        assert yaml.safe_load(out) == expected
    elif fmt is Format.JSON:
        assert json.loads(out) == json.loads(plain)
        assert b"\\u003c" in out  # Go's escaping, as sops writes it
    else:
        assert out == plain


def test_yaml_scalars_are_typed_as_go_yaml_v3_types_them(ident: AgeIdentity) -> None:
    plain = b"a: 5432\nb: 010\nc: 0x1F\nd: 1_000\ne: 2001-12-14\nf: yes\ng: ~\nh: 1e3\ni: '7'\n"
    out = yaml.safe_load(
        sops.decrypt_file(encrypt_file(plain, Format.YAML, [ident.recipient]), Format.YAML, [ident])
    )
    assert out == {
        "a": 5432,
        "b": 8,
        "c": 31,
        "d": 1000,
        "e": "2001-12-14",
        "f": "yes",
        "g": None,
        "h": 1000.0,
        "i": "7",
    }


def test_encrypted_regex_leaves_other_values_readable(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(
        SECRET, Format.YAML, [ident.recipient], encrypted_regex="^(data|stringData)$"
    )
    doc = yaml.safe_load(encrypted)
    assert doc["metadata"]["name"] == "db"
    assert doc["stringData"]["password"].startswith("ENC[AES256_GCM,")
    assert doc["sops"]["encrypted_regex"] == "^(data|stringData)$"
    assert b"hunter2" not in encrypted


def test_a_wrong_key_names_the_recipients_and_no_value(
    ident: AgeIdentity, other: AgeIdentity
) -> None:
    encrypted = encrypt_file(SECRET, Format.YAML, [ident.recipient])
    with pytest.raises(NoMatchingKey) as err:
        sops.decrypt_file(encrypted, Format.YAML, [other], where="secret.yaml")
    assert ident.recipient in str(err.value)
    assert "hunter2" not in str(err.value)


def test_an_altered_unencrypted_value_fails_the_mac(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(
        SECRET, Format.YAML, [ident.recipient], encrypted_regex="^(data|stringData)$"
    )
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.decrypt_file(encrypted.replace(b"name: db", b"name: dc"), Format.YAML, [ident])
    # without the MAC check the same file decrypts (what the post-build path relies on)
    loaded = sops.decrypt(
        sops.load(encrypted.replace(b"name: db", b"name: dc"), Format.YAML),
        [ident],
        verify_mac=False,
    )
    assert loaded.decrypted


def test_a_value_moved_to_another_key_does_not_decrypt(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(b"a: one-secret\nb: two-secret\n", Format.YAML, [ident.recipient])
    doc = yaml.safe_load(encrypted)
    doc["a"], doc["b"] = doc["b"], doc["a"]
    swapped = yaml.safe_dump(doc, sort_keys=False).encode()
    with pytest.raises(SopsError, match="could not decrypt") as err:
        sops.decrypt_file(swapped, Format.YAML, [ident])
    assert "secret" not in str(err.value).replace("sops", "")


def test_removing_a_value_fails_the_mac(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(b"a: one\nb: two\n", Format.YAML, [ident.recipient])
    doc = yaml.safe_load(encrypted)
    del doc["b"]
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.decrypt_file(yaml.safe_dump(doc).encode(), Format.YAML, [ident])


def test_unencrypted_suffix_is_the_default_rule(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(b"user_unencrypted: bob\npass: x1\n", Format.YAML, [ident.recipient])
    assert yaml.safe_load(encrypted)["user_unencrypted"] == "bob"
    assert yaml.safe_load(sops.decrypt_file(encrypted, Format.YAML, [ident]))["pass"] == "x1"


def test_multi_document_yaml_shares_one_mac(ident: AgeIdentity) -> None:
    plain = b"a: first\n---\nb: second\n"
    encrypted = encrypt_file(plain, Format.YAML, [ident.recipient])
    docs = list(yaml.safe_load_all(encrypted))
    assert docs[0]["sops"]["mac"] == docs[1]["sops"]["mac"]
    assert list(yaml.safe_load_all(sops.decrypt_file(encrypted, Format.YAML, [ident]))) == [
        {"a": "first"},
        {"b": "second"},
    ]


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"pgp": [{"fp": "X"}]}, "age identities only"),
        ({"key_groups": [{"age": []}, {"age": []}]}, "Shamir"),
        ({"encrypted_regex": "a", "unencrypted_suffix": "_u"}, "more than one"),
        ({"encrypted_regex": "(a+)+$"}, "nested quantifiers"),
        ({"encrypted_comment_regex": "x"}, "comment-based"),
        ({"lastmodified": "yesterday"}, "RFC 3339"),
    ],
)
def test_metadata_gitsail_cannot_honour_is_refused(
    ident: AgeIdentity, meta: dict[str, object], message: str
) -> None:
    encrypted = yaml.safe_load(encrypt_file(b"a: b\n", Format.YAML, [ident.recipient]))
    encrypted["sops"].pop("unencrypted_suffix", None)
    encrypted["sops"].update(meta)
    with pytest.raises(SopsError, match=message):
        sops.load(yaml.safe_dump(encrypted).encode(), Format.YAML)


def test_a_plain_file_has_no_metadata() -> None:
    with pytest.raises(SopsError, match="no sops metadata"):
        sops.load(b"a: b\n", Format.YAML)
    with pytest.raises(SopsError, match="no sops metadata"):
        sops.load(b"A=b\n", Format.DOTENV)


def test_dotenv_metadata_is_unflattened(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(b"A=1\n", Format.DOTENV, [ident.recipient])
    assert re.search(rb"^sops_age__list_0__map_recipient=age1", encrypted, re.M)
    loaded = sops.load(encrypted, Format.DOTENV)
    assert loaded.metadata.recipients == [ident.recipient]


def test_lastmodified_is_reformatted_as_go_does() -> None:
    assert sops._go_rfc3339("2024-01-02T03:04:05.123456Z") == "2024-01-02T03:04:05Z"
    assert sops._go_rfc3339("2024-01-02T03:04:05+00:00") == "2024-01-02T03:04:05Z"
    assert sops._go_rfc3339("2024-01-02T03:04:05+02:00") == "2024-01-02T03:04:05+02:00"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (1.5, "1.5"), (1e16, "10000000000000000"), (0.1, "0.1"), (-2.25, "-2.25")],
)
def test_floats_hash_in_go_shortest_f_form(value: float, text: str) -> None:
    assert go_float(value) == text


def test_bools_hash_as_go_formats_them() -> None:
    assert sops.to_bytes(True) == b"True"
    assert sops.to_bytes(False) == b"False"


def test_format_follows_the_extension() -> None:
    assert sops.format_for_path("a/secret.enc.yaml") is Format.YAML
    assert sops.format_for_path(".dockerconfigjson") is Format.JSON
    assert sops.format_for_path("app.env") is Format.DOTENV
    assert sops.format_for_path("token") is Format.BINARY


def test_decrypt_object_removes_sops_and_keeps_kustomize_edits(ident: AgeIdentity) -> None:
    encrypted = yaml.safe_load(
        encrypt_file(SECRET, Format.YAML, [ident.recipient], encrypted_regex="^(data|stringData)$")
    )
    encrypted["metadata"]["namespace"] = "moved-by-kustomize"
    out = sops.decrypt_object(encrypted, [ident], where="Secret/db", verify_mac=False)
    assert "sops" not in out
    assert out["metadata"]["namespace"] == "moved-by-kustomize"
    assert out["stringData"]["password"] == "hunter2-plaintext"
    assert out["stringData"]["port"] == 5432
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.decrypt_object(encrypted, [ident], where="Secret/db", verify_mac=True)


def test_oversized_files_are_refused() -> None:
    with pytest.raises(SopsError, match="larger than"):
        sops.load(b"a" * (sops.MAX_FILE_BYTES + 1), Format.BINARY)


def test_the_mac_is_bound_to_lastmodified(ident: AgeIdentity) -> None:
    encrypted = encrypt_file(
        b"a: b\n", Format.YAML, [ident.recipient], now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert b"lastmodified: '2026-01-01T00:00:00Z'" in encrypted
    moved = encrypted.replace(b"2026-01-01T00:00:00Z", b"2026-01-01T00:00:01Z")
    with pytest.raises(SopsError, match=r"sops\.mac"):
        sops.decrypt_file(moved, Format.YAML, [ident])
