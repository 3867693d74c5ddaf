"""JSON on the controller's hot paths: the apiserver's answers and watch events, request
bodies, and the digests that tell whether something changed.

orjson does the work (3-4x faster decoding than the standard library, 10x faster sorted
encoding, and map keys shared between decoded objects, so thousands of cached objects do not
each hold their own copy of ``"metadata"`` or ``"f:spec"``). Where it refuses what the
standard library accepts, the standard library answers instead, so a caller sees one
behaviour:

- ``dumps``/``digest``: an integer beyond 64 bits, a key that is not a string, or a value of
  a type neither knows (``default=str`` as the callers used) fall back to ``json.dumps``.
- ``loads`` is for what a Kubernetes apiserver sends: it never sends integers beyond 64 bits
  (Go decodes them into int64 or float64), which orjson would read as floats. NaN and
  Infinity, which orjson refuses and the apiserver never sends, fall back too.

Output is compact (no spaces) UTF-8; non-ASCII characters are not escaped.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import orjson

__all__ = ["digest", "dumps", "loads", "share_strings"]


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode one JSON document; ``ValueError`` (a ``json.JSONDecodeError``) when it is not."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
        return json.loads(text)  # raises JSONDecodeError itself when it is not JSON either


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON bytes of ``value``; with ``sort_keys`` map keys in order (a canonical
    form for digests)."""
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(value, option=option, default=str)
    except TypeError:  # a key that is not a string, an integer beyond 64 bits
        text = json.dumps(
            value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False, default=str
        )
        return text.encode()


def digest(value: Any) -> str:
    """SHA-256 hex of ``value``'s canonical JSON (keys sorted): equal for equal values."""
    return hashlib.sha256(dumps(value, sort_keys=True)).hexdigest()


# Strings up to this length are shared by ``share_strings`` (field values such as "True",
# "apps/v1", "Available", a manager's name, a timestamp; not a certificate).
SHARED_STRING_MAX = 64
_MAX_DEPTH = 256  # deeper structure is left as it is (JSON from the apiserver is shallow)


def share_strings(value: Any) -> Any:
    """``value`` with its short string values replaced, in place, by one shared copy each
    (``sys.intern``): a watch cache holds thousands of objects repeating the same few
    hundred strings, a third of their memory. Keys are shared by the decoder already.
    Returns ``value``. Interned strings are freed when no object uses them any more."""
    _share(value, 0)
    return value


def _share(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(item) is str:
                if len(item) <= SHARED_STRING_MAX:
                    value[key] = sys.intern(item)
            elif isinstance(item, dict | list):
                _share(item, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) is str:
                if len(item) <= SHARED_STRING_MAX:
                    value[index] = sys.intern(item)
            elif isinstance(item, dict | list):
                _share(item, depth + 1)
