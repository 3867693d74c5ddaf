r"""A HelmRelease's values: ``valuesFrom`` and inline ``values`` composed as Flux does.

Order (helm-controller's): each ``valuesFrom`` item in the order given, a later one over an
earlier one, then the inline ``spec.values`` on top. Maps merge key by key (recursively);
anything else replaces what was there.

An item without ``targetPath`` reads its ``valuesKey`` (default ``values.yaml``) as a YAML
map, bounded like every tenant YAML (``gitsail.source.boundedyaml``). An item with
``targetPath`` sets one value at that path with Helm's ``--set`` semantics (``set_path``):
``a.b[0].c``, ``\.`` for a literal dot, and the value typed as ``--set`` types it
(``true``/``false``, ``null``, integers without a leading zero, ``{a,b}`` a list, a comma
starting another assignment); with ``literal: true`` the value is the text as it is
(``--set-literal``).

A missing ConfigMap or Secret is skipped when ``optional``; otherwise, like a missing key or
unreadable YAML, it is a ``ValuesError`` naming the object (never its content: a Secret's
values never appear in a message), and nothing is released.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import yaml

from gitsail.kinds.flux_helmrelease import ValuesReference
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.boundedyaml import YAMLLimitError, load_document

__all__ = ["ValuesError", "compose_values", "merge_maps", "set_path"]

ReadObject = Callable[[str, str], Awaitable["Mapping[str, Any] | None"]]  # (kind, name)


class ValuesError(ValueError):
    """The values could not be composed; the message names the reference, never a value."""


def merge_maps(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: maps merge recursively, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_maps(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


async def compose_values(
    references: Sequence[ValuesReference],
    inline: Mapping[str, Any],
    read: ReadObject,
    *,
    policy: Policy = DEFAULT_POLICY,
    secrets: set[str] | None = None,
) -> dict[str, Any]:
    """The release's values: every reference in order, then ``inline`` on top. The string
    values read from Secrets are added to ``secrets`` (to redact them from messages)."""
    result: dict[str, Any] = {}
    for ref in references:
        shown = f"{ref.kind} '{ref.name}'"
        obj = await read(ref.kind, ref.name)
        if obj is None:
            if ref.optional:
                continue
            raise ValuesError(f"could not find {shown} (spec.valuesFrom)")
        text = _data(obj, ref, shown)
        if secrets is not None and ref.kind == "Secret":
            secrets.add(text)
        if ref.target_path:
            try:
                set_path(result, ref.target_path, text, literal=ref.literal)
            except ValueError as exc:
                raise ValuesError(
                    f"unable to merge value from key '{ref.values_key}' in {shown} into "
                    f"target path '{ref.target_path}': {exc}"
                ) from None
            continue
        try:
            loaded = load_document(text, f"{shown} key {ref.values_key}", policy)
        except (YAMLLimitError, yaml.YAMLError) as exc:
            problem = str(exc) if isinstance(exc, YAMLLimitError) else "not valid YAML"
            raise ValuesError(
                f"unable to read values from key '{ref.values_key}' in {shown}: {problem}"
            ) from None
        if loaded is None:
            continue
        if not isinstance(loaded, Mapping):
            raise ValuesError(
                f"unable to read values from key '{ref.values_key}' in {shown}: not a map"
            )
        if secrets is not None and ref.kind == "Secret":
            secrets.update(_strings(loaded))
        result = merge_maps(result, loaded)
    return merge_maps(result, inline)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _data(obj: Mapping[str, Any], ref: ValuesReference, shown: str) -> str:
    data = obj.get("data") or {}
    value = data.get(ref.values_key) if isinstance(data, Mapping) else None
    if value is None and ref.kind == "ConfigMap":
        binary = obj.get("binaryData") or {}
        value = binary.get(ref.values_key) if isinstance(binary, Mapping) else None
        if isinstance(value, str):
            return _decoded(value, ref, shown)
    if not isinstance(value, str):
        raise ValuesError(f"missing key '{ref.values_key}' in {shown}")
    return _decoded(value, ref, shown) if ref.kind == "Secret" else value


def _decoded(value: str, ref: ValuesReference, shown: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValuesError(f"key '{ref.values_key}' in {shown} is not UTF-8 text") from None


# -- Helm's --set syntax (strvals) ----------------------------------------------------------

_MAX_INDEX = 65536  # Helm refuses list indexes beyond this


def _typed(text: str) -> Any:
    """A ``--set`` value as Helm types it."""
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null":
        return None
    if text == "0":
        return 0
    if text.startswith("0"):
        return text
    try:
        return int(text) if -(2**63) <= int(text) < 2**63 else text
    except ValueError:
        return text


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def until(self, stops: str) -> tuple[str, str]:
        """Characters up to one of ``stops`` (backslash escapes the next); the stop read
        (``""`` at the end)."""
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
                continue
            if char in stops:
                return "".join(out), char
            out.append(char)
        return "".join(out), ""


def set_path(data: dict[str, Any], path: str, value: str, *, literal: bool = False) -> None:
    """Set ``path=value`` into ``data`` as ``helm --set`` (or ``--set-literal``) would."""
    if literal:
        _assign(_Reader(path + "="), data, literal_value=value)
        return
    reader = _Reader(f"{path}={value}")
    while not reader.done():
        _assign(reader, data)


def _assign(reader: _Reader, data: dict[str, Any], literal_value: str | None = None) -> None:
    """One ``key=value`` assignment (the key may nest: ``a.b[1].c``) into ``data``."""
    key, stop = reader.until("=.[,")
    if not key:
        raise ValueError("empty key")
    if stop == "=":
        data[key] = _value(reader, literal_value)
    elif stop == ".":
        child = data.get(key)
        if not isinstance(child, dict):
            child = {}
        data[key] = child
        _assign(reader, child, literal_value)
    elif stop == "[":
        current = data.get(key)
        data[key] = _assign_list(
            reader, current if isinstance(current, list) else [], literal_value
        )
    else:
        raise ValueError(f"key {key!r} has no value")


def _index(reader: _Reader) -> int:
    text, stop = reader.until("]")
    if stop != "]" or not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid list index {text!r}")
    index = int(text)
    if index > _MAX_INDEX:
        raise ValueError(f"list index {index} is over {_MAX_INDEX}")
    return index


def _assign_list(reader: _Reader, items: list[Any], literal_value: str | None) -> list[Any]:
    index = _index(reader)
    items = items + [None] * (index + 1 - len(items))
    if reader.done():
        raise ValueError("a list index needs a value")
    char = reader.text[reader.pos]
    reader.pos += 1
    if char == "=":
        items[index] = _value(reader, literal_value)
    elif char == ".":
        child = items[index] if isinstance(items[index], dict) else {}
        items[index] = child
        _assign(reader, child, literal_value)
    elif char == "[":
        nested = items[index] if isinstance(items[index], list) else []
        items[index] = _assign_list(reader, nested, literal_value)
    else:
        raise ValueError(f"unexpected {char!r} after a list index")
    return items


def _value(reader: _Reader, literal_value: str | None) -> Any:
    if literal_value is not None:
        return literal_value
    if reader.text.startswith("{", reader.pos):
        reader.pos += 1
        items: list[Any] = []
        while True:
            text, stop = reader.until(",}")
            items.append(_typed(text))
            if stop == "}":
                break
            if stop == "":
                raise ValueError("a list value must end with '}'")
        after = reader.until(",")[0] if not reader.done() else ""
        if after:
            raise ValueError(f"unexpected {after!r} after a list value")
        return items
    text, _ = reader.until(",")
    return _typed(text)
