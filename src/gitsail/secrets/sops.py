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
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gitsail.secrets import age
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
    "encrypt_file",
    "format_for_path",
    "has_marker",
    "is_encrypted_object",
    "load",
    "mac_of",
    "open_file",
    "plaintext_leaves",
]

MAX_FILE_BYTES = 5 << 20  # kustomize-controller's limit for one encrypted file
_MAX_DEPTH = 64
_MAX_REGEX = 256
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
_MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex(
    "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
)
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_UNSUPPORTED_KEYS = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")


class SopsError(ValueError):
    """A SOPS file that cannot be decrypted; the message never carries a plaintext value."""


class NoMatchingKey(SopsError):
    """None of the identities opens the file's data key (a wrong or missing key)."""


class Format(Enum):
    YAML = "yaml"
    JSON = "json"
    DOTENV = "dotenv"
    BINARY = "binary"


def format_for_path(path: str) -> Format:
    """sops' choice by extension (and Flux's: ``.dockerconfigjson`` is JSON)."""
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        return Format.YAML
    if lower.endswith((".json", ".dockerconfigjson")):
        return Format.JSON
    if lower.endswith(".env"):
        return Format.DOTENV
    return Format.BINARY


_MARKERS = {
    Format.YAML: b"mac: ENC[",
    Format.JSON: b'"mac": "ENC[',
    Format.BINARY: b'"mac": "ENC[',
    Format.DOTENV: b"sops_mac=ENC[",
}


def has_marker(data: bytes, fmt: Format | None = None) -> bool:
    """Whether ``data`` looks SOPS-encrypted (Flux's marker bytes), in ``fmt`` or any."""
    if fmt is not None:
        return _MARKERS[fmt] in data
    return any(m in data for m in _MARKERS.values())


# --- the tree --------------------------------------------------------------------------------


class Branch(list[tuple[str, Any]]):
    """An ordered mapping (document order matters for the MAC)."""


@dataclass(frozen=True)
class Comment:
    value: str


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


# --- YAML typed as go-yaml v3 types it ---------------------------------------------------------

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_YAML_SPECIAL: dict[str, Any] = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
}
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _go_parse_int(text: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)`` (prefixes 0x/0o/0b, a leading 0 is octal)."""
    m = re.fullmatch(r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)", text)
    if m is None:
        return None
    sign, digits = m.groups()
    lower = digits.lower()
    if lower.startswith("0x"):
        value = int(lower[2:], 16)
    elif lower.startswith("0o"):
        value = int(lower[2:], 8)
    elif lower.startswith("0b"):
        value = int(lower[2:], 2)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def _resolve_plain(text: str) -> Any:
    """A plain (unquoted, untagged) YAML scalar as go-yaml v3 decodes it into ``any``
    (timestamps stay strings; ``yes``/``on`` are strings in YAML 1.2)."""
    if text in _YAML_SPECIAL:
        return _YAML_SPECIAL[text]
    if not text or not (text[0].isdigit() or text[0] in "+-."):
        return text
    if text[0] == ".":
        try:
            return float(text) if _YAML_FLOAT.match(text) else text
        except ValueError:
            return text
    plain = text.replace("_", "")
    value = _go_parse_int(plain)
    if value is not None and value <= (1 << 64) - 1:
        if value > _INT64[1] or value < _INT64[0]:
            raise SopsError("integer out of range in YAML (sops cannot walk it either)")
        return value
    if _YAML_FLOAT.match(plain):
        return float(plain)
    return text


class _ComposeLoader(yaml.SafeLoader):
    """Composes nodes only; plain scalars are resolved by ``_resolve_plain``."""


_ComposeLoader.yaml_implicit_resolvers = {}


def _from_node(node: yaml.Node, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise SopsError(f"YAML nested deeper than {_MAX_DEPTH}")
    if isinstance(node, yaml.MappingNode):
        branch = Branch()
        for key_node, value_node in node.value:
            key = _from_node(key_node, depth + 1)
            if not isinstance(key, str):
                key = "" if key is None else str(key)
            branch.append((key, _from_node(value_node, depth + 1)))
        return branch
    if isinstance(node, yaml.SequenceNode):
        return [_from_node(item, depth + 1) for item in node.value]
    assert isinstance(node, yaml.ScalarNode)
    tag = node.tag
    if node.style is None and tag in ("tag:yaml.org,2002:str", "!"):
        return _resolve_plain(node.value)
    if tag == "tag:yaml.org,2002:binary":
        try:
            return base64.b64decode(node.value)
        except binascii.Error:
            raise SopsError("malformed !!binary scalar") from None
    if tag == "tag:yaml.org,2002:int":
        value = _go_parse_int(node.value.replace("_", ""))
        if value is None:
            raise SopsError("malformed !!int scalar")
        return value
    if tag == "tag:yaml.org,2002:float":
        try:
            return float(node.value)
        except ValueError:
            raise SopsError("malformed !!float scalar") from None
    if tag == "tag:yaml.org,2002:bool":
        return _YAML_SPECIAL.get(node.value, node.value)
    if tag == "tag:yaml.org,2002:null":
        return None
    return node.value


def _load_yaml(data: bytes) -> list[Branch]:
    try:
        nodes = list(yaml.compose_all(data.decode("utf-8"), Loader=_ComposeLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SopsError(f"invalid YAML{where}") from None
    branches: list[Branch] = []
    for node in nodes:
        value = _from_node(node)
        if not isinstance(value, Branch):
            raise SopsError("a YAML document of a SOPS file must be a mapping")
        branches.append(value)
    return branches


# --- JSON and dotenv -------------------------------------------------------------------------


def _json_pairs(pairs: list[tuple[str, Any]]) -> Branch:
    return Branch(pairs)


def _json_number(text: str) -> Any:
    value = int(text)
    if _INT64[0] <= value <= _INT64[1]:
        return value
    return float(text)


def _load_json(data: bytes) -> list[Branch]:
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_json_pairs, parse_int=_json_number
        )
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise SopsError(f"invalid JSON{where}") from None
    if not isinstance(value, Branch):
        raise SopsError("a SOPS JSON file must hold an object")
    return [value]


def _load_dotenv(data: bytes) -> list[Branch]:
    branch = Branch()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SopsError("dotenv file is not UTF-8") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        if line.startswith("#"):
            branch.append(("", Comment(line[1:])))
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SopsError(f"invalid dotenv line {number} (no '=')")
        branch.append((key, value.replace("\\n", "\n")))
    return [branch]


_TOKEN = re.compile(r"__(map|list)_")


def _unflatten(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """sops' flattened metadata keys (``age__list_0__map_recipient``) back to a tree."""
    root: dict[str, Any] = {}
    for key, value in items:
        parts = _TOKEN.split(key)
        node: Any = root
        path: list[str | int] = [parts[0]]
        for kind, name in zip(parts[1::2], parts[2::2], strict=True):
            path.append(int(name) if kind == "list" and name.isdigit() else name)
        for here, nxt in itertools.pairwise(path):
            container: Any = [] if isinstance(nxt, int) else {}
            if isinstance(node, list):
                assert isinstance(here, int)
                while len(node) <= here:
                    node.append(None)
                if node[here] is None:
                    node[here] = container
                node = node[here]
            else:
                node = node.setdefault(str(here), container)
        last = path[-1]
        if isinstance(node, list) and isinstance(last, int):
            while len(node) <= last:
                node.append(None)
            node[last] = value
        elif isinstance(node, dict):
            node[str(last)] = value
    return root


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
        _check_regex(name, rules[name])
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


def _check_regex(name: str, pattern: str) -> None:
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
        branches = _load_dotenv(data)
        meta_items = [(k[5:], v) for k, v in branches[0] if k.startswith("sops_")]
        branches[0] = Branch([(k, v) for k, v in branches[0] if not k.startswith("sops_")])
        if not meta_items:
            raise SopsError("no sops metadata found (is the file encrypted?)")
        raw = _unflatten(meta_items)
    else:
        branches = _load_yaml(data) if fmt is Format.YAML else _load_json(data)
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


def _should_encrypt(meta: Metadata, path: Sequence[str]) -> bool:
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


def _go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") and value == 0 and math.copysign(1, value) > 0 else text


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
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
        encrypted = _should_encrypt(self.meta, path)
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
            self.hasher.update(_to_bytes(result))
        return result

    def value(self, value: Any, path: list[str], depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise SopsError(f"{self.where}: nested deeper than {_MAX_DEPTH}")
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


def _mac(meta: Metadata) -> Any:
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
    walk = _Walk(meta, key, where, _mac(meta))
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


def _go_json_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _go_json(value: Any, level: int = 0) -> str:
    """A value as sops writes JSON: Go's ``json.Marshal`` escaping (``<>&``), then
    ``json.Indent`` with a tab; empty objects and arrays stay ``{}`` / ``[]``."""
    pad, inner = "\n" + "\t" * level, "\n" + "\t" * (level + 1)
    if isinstance(value, Branch):
        items = [(k, v) for k, v in value if not isinstance(v, Comment)]
        if not items:
            return "{}"
        body = ("," + inner).join(
            f"{_go_json_string(k)}: {_go_json(v, level + 1)}" for k, v in items
        )
        return "{" + inner + body + pad + "}"
    if isinstance(value, list):
        elems = [v for v in value if not isinstance(v, Comment)]
        if not elems:
            return "[]"
        return "[" + inner + ("," + inner).join(_go_json(v, level + 1) for v in elems) + pad + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise SopsError("JSON cannot hold NaN or infinity")
        magnitude = abs(value)
        if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
            mantissa, _, exponent = f"{value:e}".partition("e")
            short = repr(value)
            if "e" in short:
                mantissa, _, exponent = short.partition("e")
            sign = exponent[0] if exponent[0] in "+-" else "+"
            digits = exponent.lstrip("+-").lstrip("0") or "0"
            return f"{mantissa}e{sign}{digits.zfill(2)}"
        return _go_float(value)
    if isinstance(value, bytes):
        return json.dumps(base64.b64encode(value).decode())
    return _go_json_string(str(value))


def _yaml_value(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: _yaml_value(v) for k, v in value if not isinstance(v, Comment)}
    if isinstance(value, list):
        return [_yaml_value(v) for v in value if not isinstance(v, Comment)]
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
        return (_go_json(branches[0]) + "\n").encode()
    docs = [_yaml_value(b) for b in branches]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True).encode()


def _value_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
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
    walk = _Walk(meta, key, where, _mac(meta))
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


# --- encryption (fixtures and round trips; the real sops must decrypt what this writes) ------


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
        kind, plain = "float", _go_float(value).encode()
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
        branches = _load_dotenv(data)
    elif fmt is Format.YAML:
        branches = _load_yaml(data)
    else:
        branches = _load_json(data)
    key = os.urandom(32)
    raw_meta: dict[str, Any] = {}
    meta = Metadata(raw=raw_meta, age_keys=[], last_modified="", mac="")
    if encrypted_regex:
        _check_regex("encrypted_regex", encrypted_regex)
        meta.encrypted_regex = encrypted_regex
    else:
        meta.unencrypted_suffix = DEFAULT_UNENCRYPTED_SUFFIX
    hasher = _mac(meta)

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
        encrypted = _should_encrypt(meta, path)
        if not isinstance(value, Comment):
            hasher.update(_to_bytes(value))
        return _encrypt_value(value, key, ":".join(path) + ":") if encrypted else value

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
        return (_go_json(doc) + "\n").encode()
    docs = [_yaml_value(Branch([*b, ("sops", _branch_of(meta_out))])) for b in sealed]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True).encode()


def _branch_of(value: Any) -> Any:
    if isinstance(value, dict):
        return Branch((k, _branch_of(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_branch_of(v) for v in value]
    return value


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
