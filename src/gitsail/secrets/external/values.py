"""What External Secrets does to a value between the provider and the Secret (pure).

- ``pick_property``: ESO's property rule: a JSON document's top-level key that matches the
  property exactly wins; otherwise the property is a gjson path (``a.b``, ``list.0``,
  ``a\\.b`` for a dot inside a key). Strings come back as their bytes, anything else as JSON.
- ``convert_key``: ``conversionStrategy`` for keys from ``dataFrom`` (``Default``: every rune
  that is not a letter, digit, ``-``, ``.`` or ``_`` becomes ``_``; ``Unicode``: ``_U%04x_``).
- ``decode``: ``decodingStrategy`` (``None``, ``Base64``, ``Base64URL``, ``Auto``: Base64,
  then Base64URL, then the raw value).
- ``rewrite_keys``: ``rewrite[].regexp`` (Go's ``ReplaceAllString`` on every key).
- ``data_hash``: ESO's ``ObjectHash`` of a Secret's data (sha3-224 of Go's ``%+v`` print of a
  ``map[string][]byte``), the value of ``reconcile.external-secrets.io/data-hash``, so a
  Secret written by gitsail and one written by ESO agree.

Errors (``ValueProblem``) name keys and properties, never values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_PATTERN",
    "ValueProblem",
    "convert_key",
    "data_hash",
    "decode",
    "go_regexp",
    "json_map",
    "pick_property",
    "rewrite_keys",
]

MAX_PATTERN = 1024  # characters of a tenant's regular expression


class ValueProblem(ValueError):
    """A value that cannot be turned into Secret data; the message carries no value."""


def pick_property(raw: bytes, prop: str, *, key: str) -> bytes:
    """The ``prop`` of the JSON document ``raw`` (see the module docstring)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ValueProblem(
            f"key {key!r}: the value is not JSON, it has no property {prop!r}"
        ) from None
    if isinstance(doc, dict) and prop in doc:
        return _as_bytes(doc[prop])
    value = _gjson(doc, prop)
    if value is _ABSENT:
        raise ValueProblem(f"key {key!r} has no property {prop!r}")
    return _as_bytes(value)


_ABSENT = object()


def _gjson(doc: Any, path: str) -> Any:
    parts = [p.replace("\x00", ".") for p in path.replace("\\.", "\x00").split(".")]
    value = doc
    for part in parts:
        if isinstance(value, dict):
            if part not in value:
                return _ABSENT
            value = value[part]
        elif isinstance(value, list):
            if part == "#":
                value = len(value)
            elif part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return _ABSENT
        else:
            return _ABSENT
    return value


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def json_map(raw: bytes, *, key: str) -> dict[str, bytes]:
    """A JSON object's top-level entries as Secret values (``dataFrom.extract``)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ValueProblem(
            f"key {key!r}: the value is not a JSON object, nothing to extract"
        ) from None
    if not isinstance(doc, dict):
        raise ValueProblem(f"key {key!r}: the value is not a JSON object, nothing to extract")
    return {str(k): _as_bytes(v) if v is not None else b"" for k, v in doc.items()}


_KEY_OK = re.compile(r"[-._a-zA-Z0-9]")


def convert_key(key: str, strategy: str) -> str:
    """A provider's key made a valid Secret key (``Default`` or ``Unicode``)."""
    out = []
    for char in key:
        if _KEY_OK.fullmatch(char):
            out.append(char)
        elif strategy == "Unicode":
            out.append(f"_U{ord(char):04x}_")
        else:
            out.append("_")
    return "".join(out)


def decode(value: bytes, strategy: str, *, key: str) -> bytes:
    """``decodingStrategy`` applied to one value."""
    if strategy in ("", "None"):
        return value
    if strategy == "Base64":
        return _b64(value, altchars=None, key=key)
    if strategy == "Base64URL":
        return _b64(value, altchars=b"-_", key=key)
    if strategy == "Auto":
        for altchars in (None, b"-_"):
            try:
                return _b64(value, altchars=altchars, key=key)
            except ValueProblem:
                continue
        return value
    raise ValueProblem(f"key {key!r}: unknown decodingStrategy {strategy!r}")


def _b64(value: bytes, *, altchars: bytes | None, key: str) -> bytes:
    text = value.strip()
    padded = text + b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ValueProblem(f"key {key!r}: the value is not valid base64") from None


def go_regexp(pattern: str, *, where: str) -> re.Pattern[str]:
    """A tenant's Go (RE2) regular expression as Python's: bounded, refused when Python reads
    it differently (backreferences, lookaround: RE2 has none)."""
    if len(pattern) > MAX_PATTERN:
        raise ValueProblem(f"{where}: the regular expression is over {MAX_PATTERN} characters")
    if re.search(r"\\[1-9]|\(\?[=!<]|\(\?<[=!]", pattern):
        raise ValueProblem(f"{where}: backreferences and lookaround are not RE2 syntax")
    try:
        return re.compile(pattern.replace("(?P<", "(?P<"))
    except re.error as exc:
        raise ValueProblem(f"{where}: invalid regular expression: {exc}") from None


_GO_REF = re.compile(r"\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _go_template(target: str) -> str:
    """Go's ``$1`` / ``${name}`` expansion syntax as Python's ``\\g<1>`` / ``\\g<name>``."""

    def swap(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2) or match.group(3)
        return f"\\g<{name}>"

    return _GO_REF.sub(swap, target.replace("\\", "\\\\"))


def rewrite_keys(
    data: Mapping[str, bytes], source: str, target: str, *, where: str
) -> dict[str, bytes]:
    """Every key rewritten by ``regexp.ReplaceAllString(key, target)``."""
    pattern = go_regexp(source, where=where)
    template = _go_template(target)
    out: dict[str, bytes] = {}
    for key, value in data.items():
        try:
            out[_go_replace_all(pattern, template, key)] = value
        except (re.error, IndexError):
            raise ValueProblem(
                f"{where}: target {target!r} names a group the source lacks"
            ) from None
    return out


def _go_replace_all(pattern: re.Pattern[str], template: str, text: str) -> str:
    """Go's ``ReplaceAllString``: like ``re.sub`` except that an empty match right after
    the previous match is skipped (``(.*)`` on ``abc`` matches once in Go, twice in Python)."""
    parts: list[str] = []
    last = 0
    previous_end = -1
    for match in pattern.finditer(text):
        if match.start() == match.end() == previous_end:
            continue
        parts.append(text[last : match.start()])
        parts.append(match.expand(template))
        last = match.end()
        previous_end = match.end()
    parts.append(text[last:])
    return "".join(parts)


def data_hash(data: Mapping[str, bytes]) -> str:
    """ESO's ``ObjectHash`` of ``map[string][]byte`` (keys sorted, bytes as decimals)."""
    inner = " ".join(f"{k}:[{' '.join(str(b) for b in data[k])}]" for k in sorted(data))
    return hashlib.sha3_224(f"map[{inner}]".encode()).hexdigest()
