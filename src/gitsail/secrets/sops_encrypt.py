"""Encrypting files in sops' format, for fixtures and round trips (there is no ``gitsail sops``
command): the interop tests check that the real ``sops`` decrypts what this writes. Values are
sealed as ``gitsail.secrets.sops`` documents (AES-256-GCM, 32-byte IV, path as additional
data), the MAC over the plaintext values, the data key age-encrypted (armored) per recipient.
YAML and JSON are written without comments."""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gitsail.secrets import age
from gitsail.secrets._sops_formats import (
    Branch,
    Comment,
    Format,
    SopsError,
    go_float,
    go_json,
    load_dotenv,
    load_json,
    load_yaml,
)
from gitsail.secrets.sops import (
    DEFAULT_UNENCRYPTED_SUFFIX,
    Metadata,
    check_regex,
    mac_hasher,
    should_encrypt,
    to_bytes,
    yaml_value,
)

__all__ = ["encrypt_file"]


def _encrypt_value(value: Any, key: bytes, aad: str) -> str:
    if isinstance(value, str) and value == "":
        return ""
    if isinstance(value, Comment):
        kind, plain = "comment", value.value.encode()
    elif isinstance(value, bool):
        kind, plain = "bool", b"True" if value else b"False"
    elif isinstance(value, str):
        kind, plain = "str", value.encode()
    elif isinstance(value, int):
        kind, plain = "int", str(value).encode()
    elif isinstance(value, float):
        kind, plain = "float", go_float(value).encode()
    else:
        raise SopsError(f"cannot encrypt a value of type {type(value).__name__}")
    iv = os.urandom(32)
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode())
    data, nonce, tag = (base64.b64encode(b).decode() for b in (sealed[:-16], iv, sealed[-16:]))
    return f"ENC[AES256_GCM,data:{data},iv:{nonce},tag:{tag},type:{kind}]"


def encrypt_file(
    data: bytes,
    fmt: Format,
    recipients: Sequence[str],
    *,
    encrypted_regex: str = "",
    now: dt.datetime | None = None,
) -> bytes:
    """Encrypt a plain file to age ``recipients`` in sops' format (YAML/JSON emitted as JSON
    or YAML without comments; dotenv and binary as sops writes them)."""
    if fmt is Format.BINARY:
        branches = [Branch([("data", data.decode("utf-8"))])]
    elif fmt is Format.DOTENV:
        branches = load_dotenv(data)
    elif fmt is Format.YAML:
        branches = load_yaml(data)
    else:
        branches = load_json(data)
    key = os.urandom(32)
    raw_meta: dict[str, Any] = {}
    meta = Metadata(raw=raw_meta, age_keys=[], last_modified="", mac="")
    if encrypted_regex:
        check_regex("encrypted_regex", encrypted_regex)
        meta.encrypted_regex = encrypted_regex
    else:
        meta.unencrypted_suffix = DEFAULT_UNENCRYPTED_SUFFIX
    hasher = mac_hasher(meta)

    def walk(value: Any, path: list[str]) -> Any:
        if value is None:
            return None
        if isinstance(value, Branch):
            return Branch(
                (k, walk(v, path) if isinstance(v, Comment) else walk(v, [*path, k]))
                for k, v in value
            )
        if isinstance(value, list):
            return [walk(v, path) for v in value]
        encrypted = should_encrypt(meta, path)
        if not isinstance(value, Comment):
            hasher.update(to_bytes(value))
        if not encrypted:
            return value
        sealed = _encrypt_value(value, key, ":".join(path) + ":")
        return Comment(sealed) if isinstance(value, Comment) else sealed

    sealed = [walk(b, []) for b in branches]
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    last = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    mac = _encrypt_value(hasher.hexdigest().upper(), key, last)
    ages = [{"recipient": r, "enc": age.encrypt(key, [r], armor=True).decode()} for r in recipients]
    meta_out: dict[str, Any] = {"age": ages, "lastmodified": last, "mac": mac}
    if encrypted_regex:
        meta_out["encrypted_regex"] = encrypted_regex
    else:
        meta_out["unencrypted_suffix"] = DEFAULT_UNENCRYPTED_SUFFIX
    meta_out["version"] = "3.13.3"
    if fmt is Format.DOTENV:
        lines = []
        for k, v in sealed[0]:
            lines.append(f"#{v.value}\n" if isinstance(v, Comment) else f"{k}={v}\n")
        for i, entry in enumerate(ages):
            for name in ("recipient", "enc"):
                text = entry[name].replace("\n", "\\n")
                lines.append(f"sops_age__list_{i}__map_{name}={text}\n")
        for name in ("lastmodified", "mac", *meta_out.keys() - {"age", "lastmodified", "mac"}):
            lines.append(f"sops_{name}={meta_out[name]}\n")
        return "".join(lines).encode()
    if fmt in (Format.JSON, Format.BINARY):
        doc = Branch([*sealed[0], ("sops", _branch_of(meta_out))])
        return (go_json(doc) + "\n").encode()
    docs = [yaml_value(Branch([*b, ("sops", _branch_of(meta_out))])) for b in sealed]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True).encode()


def _branch_of(value: Any) -> Any:
    if isinstance(value, dict):
        return Branch((k, _branch_of(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_branch_of(v) for v in value]
    return value
