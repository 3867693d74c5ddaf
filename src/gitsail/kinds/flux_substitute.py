"""Flux's post-build variable substitution (``Kustomization.spec.postBuild``), pure.

After kustomize builds the manifests, each object is written as YAML, its ``${...}``
expressions are expanded, and the text is read back, as kustomize-controller does. The rules,
from Flux's documentation and its ``envsubst`` package (a fork of drone/envsubst):

- ``${var}`` is the variable's value. ``${var:=default}`` / ``${var:-default}`` use the
  default when the variable is unset or empty, ``${var=default}`` / ``${var-default}`` only
  when it is unset; a default may itself contain ``${...}``.
- ``$${var}`` is the literal ``${var}``, and ``$$`` is ``$``; ``$var`` (no braces) is left
  alone, so scripts in ConfigMaps keep working.
- bash's string functions: ``${#var}``, ``${var^}``, ``${var^^}``, ``${var,}``, ``${var,,}``,
  ``${var:offset}``, ``${var:offset:length}``, ``${var#glob}``, ``${var##glob}``,
  ``${var%glob}``, ``${var%%glob}``, ``${var/old/new}``, ``${var//old/new}``,
  ``${var/#old/new}``, ``${var/%old/new}``. ``${var:?x}``, ``${var:+x}``, ``${var+x}`` are
  not supported (an error, as in Flux). Lengths and offsets count characters, not bytes.
- Variable names match ``^[_a-zA-Z][_a-zA-Z0-9]*$``; a source with another key is refused.
  Values lose their newlines (Flux removes them).
- Precedence (``variables``): ``substituteFrom`` sources in order, a later one overwriting an
  earlier one, then ``substitute``, which wins over all of them.
- An object labelled or annotated ``kustomize.toolkit.fluxcd.io/substitute: disabled`` is
  left as it is. Nothing is substituted when no variable is defined at all.
- **Strict by default.** Flux replaces an undefined variable without a default by an empty
  string unless its ``StrictPostBuildSubstitutions`` feature gate is on (which Flux's
  documentation recommends). gitsail is strict unless told otherwise: an undefined variable
  without a default is an error naming it, and nothing is applied.

The output is bounded: expansion stops with an error once the text of all objects passes
``max_bytes`` (the policy's ``render_output_bytes``), so a variable repeated a million times
cannot exhaust memory. Nesting of ``${...}`` inside defaults is bounded too.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence

from gitsail.kinds.errors import SubstitutionError
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.render import RenderError, dump_yaml, load_manifests

__all__ = [
    "DISABLED_KEY",
    "MAX_NESTING",
    "expand",
    "substitute_objects",
    "variables",
    "variables_from",
]

DISABLED_KEY = "kustomize.toolkit.fluxcd.io/substitute"
MAX_NESTING = 32
_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


def variables(
    substitute: Iterable[tuple[str, str]] | Mapping[str, str],
    sources: Sequence[tuple[str, Mapping[str, str]]] = (),
) -> dict[str, str]:
    """The variables of one Kustomization: ``sources`` (``("ConfigMap/vars", data)``, in
    ``substituteFrom`` order; a missing optional source is passed as empty data), later
    ones winning, then ``substitute`` over all. Newlines are removed from values."""
    merged: dict[str, str] = {}
    pairs = substitute.items() if isinstance(substitute, Mapping) else substitute
    for label, data in [*sources, ("spec.postBuild.substitute", dict(pairs))]:
        for key, value in data.items():
            if not _NAME.fullmatch(key):
                raise SubstitutionError(
                    f"{label}: {key[:60]!r} is not a valid variable name "
                    "(letters, digits and _, not starting with a digit)"
                )
            merged[key] = value.replace("\n", "")
    return merged


def variables_from(obj: Obj) -> dict[str, str]:
    """A ConfigMap's ``data`` or a Secret's decoded ``data`` as variables (not yet merged)."""
    kind = obj.get("kind")
    name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
    data = obj.get("data") or {}
    if not isinstance(data, Mapping):
        raise SubstitutionError(f"{name}: data is not an object")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise SubstitutionError(f"{name}: data.{key} is not a string")
        if kind == "Secret":
            try:
                value = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise SubstitutionError(f"{name}: data.{key} is not base64 of UTF-8 text") from None
        out[str(key)] = value
    return out


def substitute_objects(
    objects: Sequence[Obj],
    variables: Mapping[str, str],
    *,
    strict: bool = True,
    max_bytes: int = DEFAULT_POLICY.render_output_bytes,
) -> list[Obj]:
    """Expand ``${...}`` in every object's YAML; returns new objects (inputs untouched).

    Raises ``SubstitutionError`` naming the object and the variable, or the limit.
    """
    if not variables:
        return list(objects)
    budget = _Budget(max_bytes)
    out: list[Obj] = []
    for obj in objects:
        if _disabled(obj):
            out.append(obj)
            continue
        what = _describe(obj)
        text = dump_yaml(obj)
        if "$" not in text:
            budget.spend(len(text))
            out.append(obj)
            continue
        try:
            expanded = _Expander(variables, strict, budget).run(text)
        except SubstitutionError as exc:
            raise SubstitutionError(f"{what}: {exc}") from None
        try:
            docs = load_manifests(expanded, source=what)
        except RenderError as exc:
            raise SubstitutionError(f"{what}: the substituted YAML is invalid: {exc}") from None
        if len(docs) != 1:
            raise SubstitutionError(f"{what}: substitution made {len(docs)} objects out of one")
        out.append(docs[0])
    return out


def expand(
    text: str,
    variables: Mapping[str, str],
    *,
    strict: bool = True,
    max_bytes: int = DEFAULT_POLICY.render_output_bytes,
) -> str:
    """Expand one text with Flux's rules (``substitute_objects`` calls this per object)."""
    return _Expander(variables, strict, _Budget(max_bytes)).run(text)


def _disabled(obj: Obj) -> bool:
    meta = obj.get("metadata") or {}
    for field in ("labels", "annotations"):
        values = meta.get(field) if isinstance(meta, Mapping) else None
        if isinstance(values, Mapping) and values.get(DISABLED_KEY) == "disabled":
            return True
    return False


def _describe(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"{obj.get('kind', '?')}/{f'{ns}/' if ns else ''}{name or '?'}"


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise SubstitutionError(
                f"the substituted manifests exceed {self.limit} bytes (render_output_bytes)"
            )


class _Expander:
    """A recursive-descent reader of one text: literal runs, ``$$``, and ``${...}``."""

    def __init__(self, values: Mapping[str, str], strict: bool, budget: _Budget) -> None:
        self.values = values
        self.strict = strict
        self.budget = budget
        self.text = ""
        self.pos = 0

    def run(self, text: str) -> str:
        self.text, self.pos = text, 0
        return self._sequence(depth=0, stops="")

    # --- text -----------------------------------------------------------------------------

    def _sequence(self, depth: int, stops: str) -> str:
        """Read until one of ``stops`` (unconsumed) or the end; args unescape ``\\``."""
        parts: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if stops and ch in stops:
                break
            if ch == "\\" and stops and self.pos + 1 < len(text) and text[self.pos + 1] in "\\/}":
                parts.append(self._emit(text[self.pos + 1]))
                self.pos += 2
            elif ch == "$" and text.startswith("$$", self.pos):
                parts.append(self._emit("$"))
                self.pos += 2
            elif ch == "$" and text.startswith("${", self.pos):
                if depth >= MAX_NESTING:
                    raise SubstitutionError(f"more than {MAX_NESTING} nested ${{...}}")
                parts.append(self._expression(depth + 1))
            else:
                end = self._literal_end(self.pos + 1, stops)
                parts.append(self._emit(text[self.pos : end]))
                self.pos = end
        return "".join(parts)

    def _literal_end(self, start: int, stops: str) -> int:
        end = start
        special = "$\\" + stops
        while end < len(self.text) and self.text[end] not in special:
            end += 1
        return end

    def _emit(self, piece: str) -> str:
        self.budget.spend(len(piece))
        return piece

    # --- ${...} ---------------------------------------------------------------------------

    def _expression(self, depth: int) -> str:
        start = self.pos
        self.pos += 2  # "${"
        length = self._take("#")
        name = self._name(start)
        if length:
            self._close(start)
            return self._emit(str(len(self._value(name, start, required=True))))
        text = self.text
        for op in ("^^", "^", ",,", ","):
            if self._take(op):
                self._close(start)
                value = self._value(name, start, required=True)
                return self._emit(_case(op, value))
        if self._take("}"):
            return self._emit(self._value(name, start, required=True))
        for op in (":=", ":-", "=", "-"):
            if self._take(op):
                default = self._sequence(depth, "}")
                self._close(start)
                current = self.values.get(name)
                empty_counts = op.startswith(":")
                if current is None or (empty_counts and current == ""):
                    return default  # already counted against the budget
                return self._emit(current)
        for op in (":?", ":+", "+"):
            if self._take(op):
                raise SubstitutionError(f"{self._shown(start)}: {op} is not supported")
        if self._take(":"):
            offset = self._sequence(depth, ":}")
            length_arg = self._sequence(depth, "}") if self._take(":") else None
            self._close(start)
            value = self._value(name, start, required=True)
            return self._emit(_substring(value, offset, length_arg))
        for op in ("##", "#", "%%", "%"):
            if self._take(op):
                pattern = self._sequence(depth, "}")
                self._close(start)
                value = self._value(name, start, required=True)
                return self._emit(_trim(op, value, pattern))
        for op in ("//", "/#", "/%", "/"):
            if self._take(op):
                old = self._sequence(depth, "/}")
                new = self._sequence(depth, "}") if self._take("/") else ""
                self._close(start)
                value = self._value(name, start, required=True)
                return self._emit(_replace(op, value, old, new))
        at = text[self.pos : self.pos + 1] or "end of text"
        raise SubstitutionError(f"{self._shown(start)}: bad substitution at {at!r}")

    def _name(self, start: int) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise SubstitutionError(f"{self._shown(start)}: bad substitution (no variable name)")
        self.pos = match.end()
        return match.group(0)

    def _value(self, name: str, start: int, *, required: bool) -> str:
        value = self.values.get(name)
        if value is None:
            if self.strict and required:
                raise SubstitutionError(
                    f"variable {name!r} is not defined and has no default "
                    f"(in {self._shown(start)}); define it in postBuild.substitute or "
                    "substituteFrom, or write ${" + name + ":=default}"
                )
            return ""
        return value

    def _take(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def _close(self, start: int) -> None:
        if not self._take("}"):
            raise SubstitutionError(f"{self._shown(start)}: missing closing brace")

    def _shown(self, start: int) -> str:
        end = self.text.find("}", start)
        snippet = self.text[start : end + 1 if 0 <= end < start + 60 else start + 60]
        return repr(snippet)


def _case(op: str, value: str) -> str:
    if op == "^^":
        return value.upper()
    if op == ",,":
        return value.lower()
    if not value:
        return value
    first = value[0].upper() if op == "^" else value[0].lower()
    return first + value[1:]


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[-+]?[0-9]{1,18}", text.strip()) else None


def _substring(value: str, offset_arg: str, length_arg: str | None) -> str:
    offset = _int(offset_arg)
    if offset is None:
        return value  # as bash: an unreadable offset leaves the value
    if offset < 0:
        offset = max(len(value) + offset, 0)
    if length_arg is None:
        return value[offset:]
    length = _int(length_arg)
    if length is None:
        return value
    if length < 0:
        end = len(value) + length
        return value[offset:end] if end >= offset else ""
    return value[offset : offset + length]


def _glob(pattern: str) -> re.Pattern[str] | None:
    """Go's path.Match pattern as a regex: ``*`` and ``?`` never match ``/``."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None  # Go: ErrBadPattern, the value is left as it is
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            body = "".join("\\" + c if c in "\\]^[" else c for c in body)
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None


def _trim(op: str, value: str, pattern: str) -> str:
    suffix = op.startswith("%")
    subject = value[::-1] if suffix else value
    compiled = _glob(pattern[::-1] if suffix else pattern)
    if compiled is None:
        return value
    prefixes = range(len(subject), 0, -1)  # longest first
    if op in ("#", "%"):
        prefixes = range(1, len(subject) + 1)  # shortest first
    for end in prefixes:
        if compiled.fullmatch(subject, 0, end):
            trimmed = subject[end:]
            return trimmed[::-1] if suffix else trimmed
    return value


def _replace(op: str, value: str, old: str, new: str) -> str:
    if op == "//":
        return value.replace(old, new) if old else value
    if op == "/":
        return value.replace(old, new, 1) if old else value
    if op == "/#":
        return new + value[len(old) :] if value.startswith(old) else value
    return value[: len(value) - len(old)] + new if value.endswith(old) else value
