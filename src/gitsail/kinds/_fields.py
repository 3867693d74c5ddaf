"""Reading a spec field by field, with the field's path in every error.

A ``Fields`` wraps one mapping of an object (``spec``, ``spec.ref``, one item of a list) and
its path. Each getter returns the typed value or ``None`` when the field is absent or
``null`` (the apiserver treats an explicit null as absent), and raises ``SpecError`` naming
the path for anything else. ``finish`` refuses the fields nobody asked for: a typo
(``intervall``) or a field of a newer API is an error, not a silent no-op.

Durations are Go's ``time.ParseDuration`` (``1m``, ``1h30m``, ``250ms``, ``0``), as Flux
reads them, refused when negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gitsail.kinds.errors import SpecError

__all__ = ["Fields", "annotation", "go_duration", "object_fields", "shown"]

_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_MAX_SECONDS = (2**63 - 1) / 1e9  # time.Duration is int64 nanoseconds


def shown(value: object, limit: int = 60) -> str:
    """A value as a message shows it: JSON-like, cut to ``limit`` characters."""
    if isinstance(value, str):
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "an object"
    elif isinstance(value, list | tuple):
        text = "a list"
    else:
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration string, or ``None`` when it is not one (or negative)."""
    body = text[1:] if text[:1] == "+" else text
    if body == "0":
        return 0.0
    if not body:
        return None
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if not match or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if math.isfinite(total) and total <= _MAX_SECONDS else None


class Fields:
    """One mapping of a spec and its path; typed getters; ``finish`` refuses the rest."""

    def __init__(self, value: object, path: str, *, required: bool = False) -> None:
        if value is None and not required:
            value = {}
        if not isinstance(value, Mapping):
            raise SpecError(path, f"expected an object, got {shown(value)}")
        self.path = path
        self._value: Mapping[Any, Any] = value
        self._seen: set[str] = set()

    def at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self._value.get(name)

    def present(self, name: str) -> bool:
        return self._value.get(name) is not None

    def string(
        self, name: str, *, required: bool = False, pattern: str | None = None
    ) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise SpecError(self.at(name), "required")
            return None
        if not isinstance(value, str):
            raise SpecError(self.at(name), f"expected a string, got {shown(value)}")
        if required and not value:
            raise SpecError(self.at(name), "must not be empty")
        if pattern is not None and value and not re.fullmatch(pattern, value):
            raise SpecError(self.at(name), f"invalid value {shown(value)}")
        return value

    def need_string(self, name: str, *, pattern: str | None = None) -> str:
        """A required, non-empty string."""
        value = self.string(name, required=True, pattern=pattern)
        if value is None:  # unreachable: string(required=True) raised
            raise SpecError(self.at(name), "required")
        return value

    def need_duration(self, name: str) -> float:
        """A required Go duration."""
        value = self.duration(name, required=True)
        if value is None:  # unreachable: string(required=True) raised
            raise SpecError(self.at(name), "required")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name)
        if value is None or value == "":
            return default
        if value not in allowed:
            raise SpecError(self.at(name), f"{shown(value)} is not one of {', '.join(allowed)}")
        return value

    def boolean(self, name: str, *, required: bool = False, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            if required:
                raise SpecError(self.at(name), "required (true or false)")
            return default
        if not isinstance(value, bool):
            raise SpecError(self.at(name), f"expected true or false, got {shown(value)}")
        return value

    def duration(self, name: str, *, required: bool = False) -> float | None:
        value = self.string(name, required=required)
        if value is None or value == "":
            return None
        seconds = go_duration(value)
        if seconds is None:
            raise SpecError(self.at(name), f"not a duration: {shown(value)} (use e.g. 30s, 5m, 1h)")
        return seconds

    def obj(self, name: str) -> Fields:
        return Fields(self.raw(name), self.at(name))

    def items(self, name: str) -> list[Fields]:
        return [
            Fields(item, f"{self.at(name)}[{i}]", required=True) for i, item in self._list(name)
        ]

    def strings(self, name: str) -> tuple[str, ...]:
        out = []
        for i, item in self._list(name):
            if not isinstance(item, str):
                raise SpecError(f"{self.at(name)}[{i}]", f"expected a string, got {shown(item)}")
            out.append(item)
        return tuple(out)

    def string_map(self, name: str) -> tuple[tuple[str, str], ...]:
        """A map of strings (labels, variables) as sorted pairs: frozen and hashable."""
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            raise SpecError(self.at(name), f"expected an object, got {shown(value)}")
        pairs = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(self.at(name), f"keys must be strings, got {shown(key)}")
            if not isinstance(item, str):
                raise SpecError(f"{self.at(name)}.{key}", f"expected a string, got {shown(item)}")
            pairs.append((key, item))
        return tuple(sorted(pairs))

    def finish(self) -> None:
        """Refuse every field that was not read: unknown to Flux's API, or misspelt."""
        for key in self._value:
            if not isinstance(key, str):
                raise SpecError(self.path or "object", f"keys must be strings, got {shown(key)}")
            if key not in self._seen and self._value[key] is not None:
                raise SpecError(self.at(key), "unknown field")

    def _list(self, name: str) -> list[tuple[int, Any]]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise SpecError(self.at(name), f"expected a list, got {shown(value)}")
        return list(enumerate(value))


def object_fields(
    obj: object, *, kind: str, api_versions: tuple[str, ...]
) -> tuple[str, str, str, int, Fields]:
    """Check an object's identity; returns (subject, namespace, name, generation, spec).

    ``subject`` is how errors name the object: ``GitRepository flux-system/myapp``.
    """
    if not isinstance(obj, Mapping):
        raise SpecError("object", f"expected an object, got {shown(obj)}")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise SpecError("metadata", f"expected an object, got {shown(meta)}", subject=kind)
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise SpecError(
            "metadata.name", f"must be a non-empty string, got {shown(name)}", subject=kind
        )
    if not isinstance(namespace, str) or not namespace:
        raise SpecError(
            "metadata.namespace",
            f"must be a non-empty string, got {shown(namespace)}",
            subject=kind,
        )
    subject = f"{kind} {namespace}/{name}"
    if obj.get("kind") != kind:
        raise SpecError("kind", f"expected {kind}, got {shown(obj.get('kind'))}", subject=subject)
    if obj.get("apiVersion") not in api_versions:
        raise SpecError(
            "apiVersion",
            f"{shown(obj.get('apiVersion'))} is not served (use {' or '.join(api_versions)})",
            subject=subject,
        )
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        generation = 0
    try:
        spec = Fields(obj.get("spec"), "spec", required=True)
    except SpecError as exc:
        raise exc.about(subject) from None
    return subject, namespace, name, generation, spec


def annotation(obj: Mapping[str, Any], key: str) -> str | None:
    """One annotation's value when it is a string (the apiserver guarantees it is)."""
    annotations = obj.get("metadata", {}).get("annotations")
    value = annotations.get(key) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None
