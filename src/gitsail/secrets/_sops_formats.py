"""SOPS file formats below the crypto: parsing YAML (typed as go-yaml v3 types it), JSON
and dotenv into ordered trees, and writing values as Go does (floats, JSON). Private to
``gitsail.secrets.sops``, which documents the format."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import yaml

MAX_DEPTH = 64
INT64 = (-(1 << 63), (1 << 63) - 1)


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


class Branch(list[tuple[str, Any]]):
    """An ordered mapping (document order matters for the MAC)."""


@dataclass(frozen=True)
class Comment:
    value: str


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
INT64 = (-(1 << 63), (1 << 63) - 1)


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
        if value > INT64[1] or value < INT64[0]:
            raise SopsError("integer out of range in YAML (sops cannot walk it either)")
        return value
    if _YAML_FLOAT.match(plain):
        return float(plain)
    return text


class _ComposeLoader(yaml.SafeLoader):
    """Composes nodes only; plain scalars are resolved by ``_resolve_plain``."""


_ComposeLoader.yaml_implicit_resolvers = {}


def _from_node(node: yaml.Node, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise SopsError(f"YAML nested deeper than {MAX_DEPTH}")
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


def load_yaml(data: bytes) -> list[Branch]:
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


def json_pairs(pairs: list[tuple[str, Any]]) -> Branch:
    return Branch(pairs)


def json_number(text: str) -> Any:
    value = int(text)
    if INT64[0] <= value <= INT64[1]:
        return value
    return float(text)


def load_json(data: bytes) -> list[Branch]:
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=json_pairs, parse_int=json_number
        )
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise SopsError(f"invalid JSON{where}") from None
    if not isinstance(value, Branch):
        raise SopsError("a SOPS JSON file must hold an object")
    return [value]


def load_dotenv(data: bytes) -> list[Branch]:
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


def unflatten(items: list[tuple[str, Any]]) -> dict[str, Any]:
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


def go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") and value == 0 and math.copysign(1, value) > 0 else text


def go_json_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_json(value: Any, level: int = 0) -> str:
    """A value as sops writes JSON: Go's ``json.Marshal`` escaping (``<>&``), then
    ``json.Indent`` with a tab; empty objects and arrays stay ``{}`` / ``[]``."""
    pad, inner = "\n" + "\t" * level, "\n" + "\t" * (level + 1)
    if isinstance(value, Branch):
        items = [(k, v) for k, v in value if not isinstance(v, Comment)]
        if not items:
            return "{}"
        body = ("," + inner).join(f"{go_json_string(k)}: {go_json(v, level + 1)}" for k, v in items)
        return "{" + inner + body + pad + "}"
    if isinstance(value, list):
        elems = [v for v in value if not isinstance(v, Comment)]
        if not elems:
            return "[]"
        return "[" + inner + ("," + inner).join(go_json(v, level + 1) for v in elems) + pad + "]"
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
        return go_float(value)
    if isinstance(value, bytes):
        return json.dumps(base64.b64encode(value).decode())
    return go_json_string(str(value))
