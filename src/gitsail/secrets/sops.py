"""SOPS files: parse, decrypt with age identities, verify the MAC, emit the plaintext.

The format, as sops v3 documents and writes it:

- **Values.** Each encrypted leaf is ``ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]``:
  AES-256-GCM with the file's 32-byte data key, a 32-byte IV, the 16-byte tag split off,
  and as additional data the leaf's path (its mapping keys joined by ``:`` plus a trailing
  ``:``; list indexes are not part of it). ``type`` is ``str``, ``int``, ``float``,
  ``bool``, ``bytes``, ``time`` or ``comment``; an empty string stays empty, unencrypted.
- **Which leaves.** ``unencrypted_suffix`` (the default ``_unencrypted`` when no rule is
  set), ``encrypted_suffix``, ``unencrypted_regex`` and ``encrypted_regex`` decide per path,
  at most one rule per file. The comment-based rules are refused (not supported here).
- **Metadata.** A top-level ``sops`` mapping (YAML, JSON, binary), or ``sops_``-prefixed
  flattened keys (dotenv: ``sops_age__list_0__map_enc=…``). The data key is the age file
  in ``age[].enc`` (or in a single ``key_groups`` entry); Shamir groups are refused.
- **MAC.** SHA-512 over every non-null leaf in document order (only the encrypted ones with
  ``mac_only_encrypted``, then prefixed with sops' fixed initialisation bytes), as bytes:
  strings as is, ints in decimal, floats in Go's shortest ``'f'`` form, bools ``True`` /
  ``False``. Its upper-case hex is stored encrypted in ``sops.mac`` with ``lastmodified``
  (RFC 3339, re-formatted as Go does) as additional data. A mismatch refuses the file.
- **Formats.** YAML (scalars typed as go-yaml v3 types them, which is what the MAC saw;
  multi-document files share one metadata block and one MAC), JSON (integers stay ints),
  dotenv (``KEY=value`` lines, ``\\n`` escapes, ``#`` comments) and binary (a JSON
  envelope whose ``data`` is the file).

Nothing here writes a file, and no error message carries a value: messages name paths,
recipients and counts only. Limits: ``MAX_FILE_BYTES`` per file, a nesting depth, and a
bounded regex length (Python's engine backtracks, so rule regexes with nested quantifiers
are refused).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gitsail.secrets import age
from gitsail.secrets._sops_formats import (
    MAX_DEPTH,
    Branch,
    Comment,
    Format,
    NoMatchingKey,
    SopsError,
    format_for_path,
    go_float,
    go_json,
    has_marker,
    load_dotenv,
    load_json,
    load_yaml,
    unflatten,
)
from gitsail.secrets.age import AgeError, AgeIdentity

__all__ = [
    "MAX_FILE_BYTES",
    "Format",
    "Metadata",
    "NoMatchingKey",
    "SopsError",
    "SopsFile",
    "decrypt",
    "decrypt_file",
    "decrypt_object",
    "emit",
    "format_for_path",
    "has_marker",
    "is_encrypted_object",
    "load",
    "mac_of",
    "open_file",
    "plaintext_leaves",
]

MAX_FILE_BYTES = 5 << 20  # kustomize-controller's limit for one encrypted file
_MAX_REGEX = 256
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
_MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex(
    "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
)
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_UNSUPPORTED_KEYS = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")


# --- the tree --------------------------------------------------------------------------------


@dataclass
class Metadata:
    raw: dict[str, Any]
    age_keys: list[tuple[str, str]]  # (recipient, armored enc)
    last_modified: str
    mac: str
    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False
    version: str = ""

    @property
    def recipients(self) -> list[str]:
        return [r for r, _ in self.age_keys]


@dataclass
class SopsFile:
    """A loaded SOPS file: its branches (documents) and metadata; ``decrypted`` after
    ``decrypt``."""

    fmt: Format
    branches: list[Branch]
    metadata: Metadata
    decrypted: bool = False
    data_key: bytes = field(default=b"", repr=False)


def _go_rfc3339(value: str) -> str:
    """``time.Parse(RFC3339)`` then ``Format(RFC3339)``: what sops authenticates the MAC
    with (fractional seconds dropped, ``Z`` for UTC)."""
    text = value.strip()
    match = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text
    )
    if match is None:
        raise SopsError(f"sops metadata: lastmodified {text[:40]!r} is not RFC 3339")
    zone = match.group(8)
    if zone in ("Z", "z", "+00:00", "-00:00"):
        zone = "Z"
    return "{}-{}-{}T{}:{}:{}{}".format(*match.group(1, 2, 3, 4, 5, 6), zone)


def _plain(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "t", "true")


def _parse_metadata(raw: dict[str, Any]) -> Metadata:
    for name in _UNSUPPORTED_KEYS:
        if raw.get(name):
            raise SopsError(
                f"sops metadata uses {name} keys; gitsail decrypts with age identities only"
            )
    groups = raw.get("key_groups") or []
    age_entries = raw.get("age") or []
    if groups:
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
            raise SopsError("sops key_groups with Shamir secret sharing are not supported")
        group = groups[0]
        for name in _UNSUPPORTED_KEYS:
            if group.get(name):
                raise SopsError(
                    f"sops key group uses {name} keys; gitsail decrypts with age identities only"
                )
        age_entries = group.get("age") or []
    if not isinstance(age_entries, list):
        raise SopsError("sops metadata: age is not a list")
    keys: list[tuple[str, str]] = []
    for entry in age_entries:
        if not isinstance(entry, dict):
            raise SopsError("sops metadata: an age entry is not a mapping")
        keys.append((str(entry.get("recipient") or ""), str(entry.get("enc") or "")))
    if not keys:
        raise SopsError("sops metadata has no age recipients")
    rules = {
        name: str(raw.get(name) or "")
        for name in (
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        )
    }
    if sum(1 for v in rules.values() if v) > 1:
        raise SopsError(
            "sops metadata sets more than one of encrypted_suffix, unencrypted_suffix, "
            "encrypted_regex, unencrypted_regex, encrypted_comment_regex, "
            "unencrypted_comment_regex"
        )
    if rules["unencrypted_comment_regex"] or rules["encrypted_comment_regex"]:
        raise SopsError("sops comment-based encryption rules are not supported by gitsail")
    if not any(rules.values()):
        rules["unencrypted_suffix"] = DEFAULT_UNENCRYPTED_SUFFIX
    for name in ("unencrypted_regex", "encrypted_regex"):
        check_regex(name, rules[name])
    mac = raw.get("mac")
    if not isinstance(mac, str):
        raise SopsError("sops metadata has no mac")
    last = raw.get("lastmodified")
    if not isinstance(last, str):
        raise SopsError("sops metadata has no lastmodified")
    return Metadata(
        raw=raw,
        age_keys=keys,
        last_modified=_go_rfc3339(last),
        mac=mac,
        unencrypted_suffix=rules["unencrypted_suffix"],
        encrypted_suffix=rules["encrypted_suffix"],
        unencrypted_regex=rules["unencrypted_regex"],
        encrypted_regex=rules["encrypted_regex"],
        mac_only_encrypted=_as_bool(raw.get("mac_only_encrypted", False)),
        version=str(raw.get("version") or ""),
    )


_NESTED_QUANTIFIER = re.compile(r"\)[*+{]|[*+}]\)?[*+{]")


def check_regex(name: str, pattern: str) -> None:
    if not pattern:
        return
    if len(pattern) > _MAX_REGEX:
        raise SopsError(f"sops {name} is longer than {_MAX_REGEX} characters")
    if _NESTED_QUANTIFIER.search(pattern.replace("\\\\", "")):
        raise SopsError(f"sops {name} has nested quantifiers (refused: it could run forever)")
    try:
        re.compile(pattern)
    except re.error:
        raise SopsError(f"sops {name} is not a valid regular expression") from None


def load(data: bytes, fmt: Format) -> SopsFile:
    """Parse an encrypted file (nothing is decrypted yet)."""
    if len(data) > MAX_FILE_BYTES:
        raise SopsError(f"file larger than {MAX_FILE_BYTES} bytes")
    if fmt is Format.DOTENV:
        branches = load_dotenv(data)
        meta_items = [(k[5:], v) for k, v in branches[0] if k.startswith("sops_")]
        branches[0] = Branch([(k, v) for k, v in branches[0] if not k.startswith("sops_")])
        if not meta_items:
            raise SopsError("no sops metadata found (is the file encrypted?)")
        raw = unflatten(meta_items)
    else:
        branches = load_yaml(data) if fmt is Format.YAML else load_json(data)
        meta: Any = None
        for index, branch in enumerate(branches):
            found = [v for k, v in branch if k == "sops"]
            if index == 0:
                if len(found) > 1:
                    raise SopsError("duplicate sops entry")
                meta = found[0] if found else None
            branches[index] = Branch([(k, v) for k, v in branch if k != "sops"])
        if meta is None:
            raise SopsError("no sops metadata found (is the file encrypted?)")
        if not isinstance(meta, Branch):
            raise SopsError("the sops entry is not a mapping")
        raw = _plain(meta)
    return SopsFile(fmt=fmt, branches=branches, metadata=_parse_metadata(raw))


# --- decryption ------------------------------------------------------------------------------


def should_encrypt(meta: Metadata, path: Sequence[str]) -> bool:
    encrypted = True
    if meta.unencrypted_suffix and any(p.endswith(meta.unencrypted_suffix) for p in path):
        encrypted = False
    if meta.encrypted_suffix:
        encrypted = any(p.endswith(meta.encrypted_suffix) for p in path)
    if meta.unencrypted_regex and any(re.search(meta.unencrypted_regex, p) for p in path):
        encrypted = False
    if meta.encrypted_regex:
        encrypted = any(re.search(meta.encrypted_regex, p) for p in path)
    return encrypted


def to_bytes(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return go_float(value).encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z").encode()
    raise SopsError(f"cannot hash a value of type {type(value).__name__}")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SopsError(f"malformed encrypted value ({what} is not base64)") from None


def _decrypt_value(text: str, key: bytes, aad: str, where: str) -> Any:
    if text == "":
        return ""
    match = _ENC.match(text)
    if match is None:
        raise SopsError(f"{where}: value is not in sops' ENC[AES256_GCM,...] format")
    data, iv, tag = (_b64(match.group(i), n) for i, n in ((1, "data"), (2, "iv"), (3, "tag")))
    kind = match.group(4)
    if not iv or len(tag) != 16:
        raise SopsError(f"{where}: malformed encrypted value")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode())
    except Exception:
        raise SopsError(
            f"{where}: could not decrypt with AES-GCM (wrong data key, or the value was "
            "moved or altered)"
        ) from None
    try:
        return _typed(plain, kind)
    except (ValueError, UnicodeDecodeError):
        raise SopsError(f"{where}: decrypted value is not a valid {kind}") from None


def _typed(plain: bytes, kind: str) -> Any:
    if kind == "bytes":
        return plain
    text = plain.decode()
    if kind == "str":
        return text
    if kind == "int":
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(kind)
        return int(text)
    if kind == "float":
        return float(text.replace("_", ""))
    if kind == "bool":
        if text in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if text in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise ValueError(kind)
    if kind == "time":
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "comment":
        return Comment(text)
    raise ValueError(kind)


@dataclass
class _Walk:
    meta: Metadata
    key: bytes
    where: str
    hasher: Any

    def leaf(self, value: Any, path: list[str]) -> Any:
        is_comment = isinstance(value, Comment)
        encrypted = should_encrypt(self.meta, path)
        shown = f"{self.where}: {'.'.join(path) or '(top)'}"
        if encrypted:
            aad = ":".join(path) + ":"
            if is_comment:
                try:
                    result = _decrypt_value(value.value, self.key, aad, shown)
                except SopsError:
                    result = value  # written unencrypted by an older sops
            elif isinstance(value, str):
                result = _decrypt_value(value, self.key, aad, shown)
            else:
                raise SopsError(f"{shown}: expected an encrypted string, found a plain value")
        else:
            result = value
        if (not self.meta.mac_only_encrypted or encrypted) and not isinstance(result, Comment):
            self.hasher.update(to_bytes(result))
        return result

    def value(self, value: Any, path: list[str], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SopsError(f"{self.where}: nested deeper than {MAX_DEPTH}")
        if value is None:
            return None
        if isinstance(value, Branch):
            return self.branch(value, path, depth + 1)
        if isinstance(value, dict):
            return _unbranch(self.branch(Branch(value.items()), path, depth + 1))
        if isinstance(value, list):
            return [self.value(v, path, depth + 1) for v in value]
        return self.leaf(value, path)

    def branch(self, branch: Branch, path: list[str], depth: int) -> Branch:
        out = Branch()
        for key, value in branch:
            if isinstance(value, Comment) and key == "":
                out.append((key, self.leaf(value, path)))
                continue
            out.append((key, self.value(value, [*path, key], depth)))
        return out


def _unbranch(branch: Branch) -> dict[str, Any]:
    return dict(branch)


def _data_key(meta: Metadata, identities: Sequence[AgeIdentity], where: str) -> bytes:
    if not identities:
        raise NoMatchingKey(f"{where}: no age identities to decrypt with")
    for recipient, enc in meta.age_keys:
        try:
            key = age.decrypt(enc.encode(), identities)
        except AgeError:
            continue
        if len(key) != 32:
            raise SopsError(f"{where}: the data key for {recipient} is not 32 bytes")
        return key
    raise NoMatchingKey(
        f"{where}: none of the {len(identities)} age identities matches the file's recipients "
        f"({', '.join(meta.recipients)})"
    )


def mac_hasher(meta: Metadata) -> Any:
    hasher = hashlib.sha512()
    if meta.mac_only_encrypted:
        hasher.update(_MAC_ONLY_ENCRYPTED_INIT)
    return hasher


def decrypt(
    sops_file: SopsFile,
    identities: Sequence[AgeIdentity],
    *,
    where: str = "file",
    verify_mac: bool = True,
) -> SopsFile:
    """The file with every value decrypted; the MAC is verified unless told not to."""
    meta = sops_file.metadata
    key = _data_key(meta, identities, where)
    walk = _Walk(meta, key, where, mac_hasher(meta))
    branches = [walk.branch(b, [], 0) for b in sops_file.branches]
    if verify_mac:
        computed = walk.hasher.hexdigest().upper()
        stored = _decrypt_value(meta.mac, key, meta.last_modified, f"{where}: sops.mac")
        if not isinstance(stored, str) or not hmac.compare_digest(stored, computed):
            raise SopsError(
                f"{where}: MAC mismatch: the file was altered after it was encrypted "
                "(refusing to use it)"
            )
    return SopsFile(sops_file.fmt, branches, meta, decrypted=True, data_key=key)


# --- emitting the plaintext ------------------------------------------------------------------


def yaml_value(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: yaml_value(v) for k, v in value if not isinstance(v, Comment)}
    if isinstance(value, list):
        return [yaml_value(v) for v in value if not isinstance(v, Comment)]
    return value


def emit(sops_file: SopsFile) -> bytes:
    """The decrypted file in its format: binary byte for byte, dotenv as sops writes it;
    JSON as sops writes it (tab indent); YAML re-serialised (comments dropped)."""
    if not sops_file.decrypted:
        raise SopsError("emit before decrypt")
    branches = sops_file.branches
    if sops_file.fmt is Format.BINARY:
        data = [v for k, v in branches[0] if k == "data"]
        if len(data) != 1 or not isinstance(data[0], str | bytes):
            raise SopsError("binary SOPS file has no string 'data' entry")
        value = data[0]
        return value if isinstance(value, bytes) else value.encode()
    if sops_file.fmt is Format.DOTENV:
        lines = []
        for key, value in branches[0]:
            if isinstance(value, Comment):
                lines.append(f"#{value.value}\n")
            elif isinstance(value, Branch | list):
                raise SopsError(f"cannot write a nested value to a dotenv file (key {key})")
            else:
                text = value if isinstance(value, str) else _value_string(value)
                lines.append(f"{key}={text.replace(chr(10), chr(92) + 'n')}\n")
        return "".join(lines).encode()
    if sops_file.fmt is Format.JSON:
        return (go_json(branches[0]) + "\n").encode()
    docs = [yaml_value(b) for b in branches]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True).encode()


def _value_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def decrypt_file(
    data: bytes,
    fmt: Format,
    identities: Sequence[AgeIdentity],
    *,
    where: str = "file",
    output: Format | None = None,
) -> bytes:
    """Decrypt a whole SOPS file (MAC verified) and emit it in ``output`` (default: its own
    format), as kustomize-controller does with secretGenerator inputs."""
    return open_file(data, fmt, identities, where=where, output=output)[1]


def open_file(
    data: bytes,
    fmt: Format,
    identities: Sequence[AgeIdentity],
    *,
    where: str = "file",
    output: Format | None = None,
) -> tuple[SopsFile, bytes]:
    """``decrypt_file`` that also returns the decrypted tree."""
    loaded = decrypt(load(data, fmt), identities, where=where)
    target = loaded
    if output is not None and output is not fmt:
        if fmt is Format.BINARY and output is not Format.BINARY:
            raise SopsError(f"{where}: a binary SOPS file cannot be written as {output.value}")
        target = SopsFile(output, loaded.branches, loaded.metadata, True, loaded.data_key)
    return loaded, emit(target)


# --- Kubernetes objects ----------------------------------------------------------------------


def is_encrypted_object(obj: dict[str, Any]) -> bool:
    """Flux's test: a top-level ``sops`` mapping with a non-empty ``mac``."""
    meta = obj.get("sops")
    return isinstance(meta, dict) and bool(meta.get("mac"))


def decrypt_object(
    obj: dict[str, Any],
    identities: Sequence[AgeIdentity],
    *,
    where: str,
    verify_mac: bool,
    data_key: Callable[[Metadata], bytes | None] | None = None,
) -> dict[str, Any]:
    """A rendered object with its SOPS values decrypted and the ``sops`` entry removed.

    The MAC covers unencrypted values too, which kustomize legitimately edits (namespace,
    labels, name prefix): after a build it is checked on the committed file instead (see
    ``gitsail.kinds.flux_kustomization_build``), and here only each value's own GCM tag and
    path binding authenticate it."""
    raw = obj.get("sops")
    if not isinstance(raw, dict):
        raise SopsError(f"{where}: no sops metadata")
    meta = _parse_metadata(raw)
    key = data_key(meta) if data_key is not None else None
    if key is None:
        key = _data_key(meta, identities, where)
    walk = _Walk(meta, key, where, mac_hasher(meta))
    body = Branch((k, v) for k, v in obj.items() if k != "sops")
    out = walk.branch(body, [], 0)
    if verify_mac:
        computed = walk.hasher.hexdigest().upper()
        stored = _decrypt_value(meta.mac, key, meta.last_modified, f"{where}: sops.mac")
        if stored != computed:
            raise SopsError(f"{where}: MAC mismatch: the object was altered after encryption")
    plain: dict[str, Any] = _to_plain_object(out)
    return plain


def _to_plain_object(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: _to_plain_object(v) for k, v in value if not isinstance(v, Comment)}
    if isinstance(value, list):
        return [_to_plain_object(v) for v in value if not isinstance(v, Comment)]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def mac_of(sops_file: SopsFile) -> str:
    """The stored (encrypted) MAC: it identifies one encryption of one file."""
    return sops_file.metadata.mac


def plaintext_leaves(sops_file: SopsFile) -> list[str]:
    """Every decrypted string leaf (for scrubbing tool output that might quote them)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Branch):
            for _, v in value:
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str | bytes | int | float) and not isinstance(value, bool):
            out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))

    for branch in sops_file.branches:
        walk(branch)
    return out
