"""A small, exact subset of Go's ``text/template`` with the Sprig functions Argo CD's
ApplicationSet documentation uses (``goTemplate: true``).

The template is split into text and actions (``{{ ... }}``, with ``{{-`` / ``-}}`` trimming
the whitespace beside them and ``{{/* comments */}}``). An action is a pipeline: commands
separated by ``|``, each command's result passed as the *last* argument of the next, as Go
does. Operands are fields (``.cluster``, ``.path.basename``, ``.`` itself, ``$`` and
``$.a``), literals (``"double"`` and ```raw``` strings, numbers, ``true``, ``false``,
``nil``), parenthesized pipelines (``(index .m "k").x``) and function calls. Control
structures: ``if`` / ``else if`` / ``else`` / ``end`` and ``range`` (``range PIPELINE``,
``range $v := PIPELINE``, ``range $k, $v := PIPELINE``, with an optional ``else`` for an
empty collection; ``.`` is the element inside, ``$`` stays the data; maps in sorted key
order, as Go ranges over them); ``with``, ``define`` and ``template`` are refused at parse
time (``TemplateError``), like an unknown function (``function "cluster" not defined``,
which is what Argo answers for ``{{cluster}}`` under goTemplate) and a variable no
``range`` declared.

Missing keys follow Go's ``missingkey`` option: ``default`` (and ``zero``, for Argo's
``map[string]any`` parameters the same) print ``<no value>``; ``error`` makes the render
fail with ``map has no entry for key "k"``. Values print as Go's ``fmt.Sprint`` would
(``map[a:1]``, ``[a b]``, ``<nil>``).

Work is bounded: the output of one render is capped (``max_output`` characters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["FUNCTIONS", "GoTemplate", "TemplateError", "go_sprint", "render_go"]

MAX_OUTPUT = 1_000_000


class TemplateError(ValueError):
    """A template that does not parse, or a render that failed (a missing key, a bad call)."""


class _Missing:
    """The value of a missing map key under missingkey=default (printed ``<no value>``)."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# -- printing as Go's fmt.Sprint does --------------------------------------------------------


def go_sprint(value: Any) -> str:
    if isinstance(value, _Missing):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_sprint(k)}:{go_sprint(value[k])}" for k in sorted(value, key=str))
        return f"map[{inner}]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _truthy(value: Any) -> bool:
    if value is None or isinstance(value, _Missing):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, Mapping, list, tuple)):
        return len(value) > 0
    return True


# -- functions (Go builtins and the Sprig ones Argo's docs use) ------------------------------


def _to_str(value: Any) -> str:
    return "" if value is None or isinstance(value, _Missing) else go_sprint(value)


def _default(default: Any, *given: Any) -> Any:
    if not given or not _truthy(given[0]):
        return default
    return given[0]


def _trunc(length: Any, text: Any) -> str:
    s, n = _to_str(text), int(length)
    if n < 0:
        return s[n:] if -n < len(s) else s
    return s[:n]


def _quote(*values: Any) -> str:
    return " ".join(json.dumps(_to_str(v), ensure_ascii=False) for v in values if v is not None)


def _squote(*values: Any) -> str:
    return " ".join(f"'{_to_str(v)}'" for v in values if v is not None)


def _index(collection: Any, *keys: Any) -> Any:
    value = collection
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, None)
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"error calling index: cannot index slice with {key!r}")
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        elif value is None or isinstance(value, _Missing):
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(value)}")
    return value


def _printf(fmt: Any, *args: Any) -> str:
    out: list[str] = []
    values = list(args)
    text = _to_str(fmt)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        verb = text[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if not values:
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values.pop(0)
        if verb in "sv":
            out.append(go_sprint(value))
        elif verb == "d":
            out.append(str(int(value)))
        elif verb == "q":
            out.append(json.dumps(_to_str(value), ensure_ascii=False))
        else:
            raise TemplateError(f"printf: the verb %{verb} is not supported")
    return "".join(out)


def _normalize(value: Any) -> str:
    # Argo's nameNormalized: lowercase, anything but [a-z0-9-.] becomes '-'.
    return re.sub(r"[^a-z0-9.-]", "-", _to_str(value).lower())


def _slugify(*args: Any) -> str:
    # Argo: slugify [maxLength smartTruncate] text; defaults 50 and true.
    text = _to_str(args[-1]) if args else ""
    max_len = int(args[0]) if len(args) >= 2 else 50
    smart = bool(args[1]) if len(args) >= 3 else True
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > max_len:
        if smart and "-" in slug[:max_len]:
            cut = slug[: max_len + 1]
            slug = cut[: cut.rfind("-")] if cut.rfind("-") > 0 else slug[:max_len]
        else:
            slug = slug[:max_len]
    return slug.strip("-")


def _compare(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        if not others:
            raise TemplateError(f"wrong number of args for {name}: want at least 2 got 1")
        if name == "eq":
            return any(op(a, b) for b in others)
        return all(op(a, b) for b in others)

    return compare


def _and(*values: Any) -> Any:
    for value in values:
        if not _truthy(value):
            return value
    return values[-1]


def _or(*values: Any) -> Any:
    for value in values:
        if _truthy(value):
            return value
    return values[-1]


def _to_yaml(value: Any) -> str:
    if isinstance(value, _Missing):
        value = None
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).removesuffix("\n")


def _to_json(value: Any) -> str:
    if isinstance(value, _Missing):
        value = None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _title(value: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), _to_str(value))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # Go builtins
    "and": _and,
    "or": _or,
    "not": lambda v: not _truthy(v),
    "len": lambda v: len(v),
    "index": _index,
    "print": lambda *a: "".join(go_sprint(v) for v in a),
    "printf": _printf,
    "eq": _compare("eq", lambda a, b: a == b),
    "ne": _compare("ne", lambda a, b: a != b),
    "lt": _compare("lt", lambda a, b: a < b),
    "le": _compare("le", lambda a, b: a <= b),
    "gt": _compare("gt", lambda a, b: a > b),
    "ge": _compare("ge", lambda a, b: a >= b),
    # Sprig
    "default": _default,
    "empty": lambda v: not _truthy(v),
    "lower": lambda s: _to_str(s).lower(),
    "upper": lambda s: _to_str(s).upper(),
    "title": _title,
    "trim": lambda s: _to_str(s).strip(),
    "trimPrefix": lambda p, s: _to_str(s).removeprefix(_to_str(p)),
    "trimSuffix": lambda p, s: _to_str(s).removesuffix(_to_str(p)),
    "replace": lambda old, new, s: _to_str(s).replace(_to_str(old), _to_str(new)),
    "trunc": _trunc,
    "quote": _quote,
    "squote": _squote,
    "contains": lambda sub, s: _to_str(sub) in _to_str(s),
    "hasPrefix": lambda p, s: _to_str(s).startswith(_to_str(p)),
    "hasSuffix": lambda p, s: _to_str(s).endswith(_to_str(p)),
    "join": lambda sep, items: _to_str(sep).join(_to_str(i) for i in (items or [])),
    "splitList": lambda sep, s: _to_str(s).split(_to_str(sep)),
    "toString": _to_str,
    "toJson": _to_json,
    "toYaml": _to_yaml,
    "list": lambda *a: list(a),
    "dict": lambda *a: {_to_str(a[i]): a[i + 1] for i in range(0, len(a) - 1, 2)},
    # Argo CD's own
    "normalize": _normalize,
    "slugify": _slugify,
}


# -- lexing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Action:
    body: str


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _split(source: str) -> list[_Text | _Action]:
    parts: list[_Text | _Action] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            parts.append(_Text(text))
        body = match.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            parts.append(_Action(body))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = source[pos:]
    if trim_next:
        tail = tail.lstrip()
    if "{{" in tail:
        raise TemplateError("unclosed action")
    if tail:
        parts.append(_Text(tail))
    return parts


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|()])
    | (?P<chain>\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)


def _tokens(body: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"unexpected {body[pos:].strip()[:20]!r} in action {body!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        # A field right after ")" is a chain on the parenthesized value: "(f .x).y".
        if kind == "field" and out and out[-1] == ("punct", ")") and body[match.start()] == ".":
            kind = "chain"
        out.append((kind, value))
        pos = match.end()
    return out


# -- parsing into nodes -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Operand:
    kind: str  # str, num, bool, nil, field, var, call, pipe
    value: Any
    args: tuple[Any, ...] = ()
    chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[tuple[_Operand, ...], ...]


@dataclass(frozen=True)
class _If:
    branches: tuple[tuple[_Pipeline | None, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class _Range:
    pipeline: _Pipeline
    key: str  # "$k" or ""
    value: str  # "$v" or ""
    body: tuple[Any, ...]
    empty: tuple[Any, ...]  # the {{else}} part


_RANGE_VARS = re.compile(r"^(\$[A-Za-z0-9_]+)\s*(?:,\s*(\$[A-Za-z0-9_]+)\s*)?:=\s*(.*)$", re.DOTALL)


class _Parser:
    def __init__(
        self,
        tokens: list[tuple[str, str]],
        functions: Mapping[str, Any],
        variables: frozenset[str] = frozenset(),
    ) -> None:
        self.tokens = tokens
        self.pos = 0
        self.functions = functions
        self.variables = variables

    def pipeline(self, closing: str | None = None) -> _Pipeline:
        commands: list[tuple[_Operand, ...]] = []
        current: list[_Operand] = []
        while self.pos < len(self.tokens):
            kind, value = self.tokens[self.pos]
            if kind == "punct" and value == ")":
                if closing != ")":
                    raise TemplateError("unexpected right paren")
                break
            self.pos += 1
            if kind == "punct" and value == "|":
                if not current:
                    raise TemplateError("missing value for command")
                commands.append(tuple(current))
                current = []
                continue
            current.append(self.operand(kind, value))
        if not current:
            raise TemplateError("missing value for command")
        commands.append(tuple(current))
        for command in commands[1:]:
            if command[0].kind != "ident":
                raise TemplateError("non executable command in pipeline stage")
        return _Pipeline(tuple(commands))

    def operand(self, kind: str, value: str) -> _Operand:
        if kind == "str":
            return _Operand("str", json.loads(value))
        if kind == "raw":
            return _Operand("str", value[1:-1])
        if kind == "num":
            return _Operand("num", float(value) if "." in value else int(value))
        if kind == "field":
            return _Operand("field", None, chain=tuple(p for p in value.split(".") if p))
        if kind == "var":
            name, *rest = value.split(".")
            if name != "$" and name not in self.variables:
                raise TemplateError(f"undefined variable {name!r}")
            return _Operand("var", name, chain=tuple(rest))
        if kind == "ident":
            if value in ("true", "false"):
                return _Operand("bool", value == "true")
            if value == "nil":
                return _Operand("nil", None)
            if value not in self.functions:
                raise TemplateError(f'function "{value}" not defined')
            return _Operand("ident", value)
        if kind == "punct" and value == "(":
            inner = self.pipeline(closing=")")
            if self.pos >= len(self.tokens) or self.tokens[self.pos] != ("punct", ")"):
                raise TemplateError("unclosed left paren")
            self.pos += 1
            chain: tuple[str, ...] = ()
            if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "chain":
                chain = tuple(p for p in self.tokens[self.pos][1].split(".") if p)
                self.pos += 1
            return _Operand("pipe", inner, chain=chain)
        raise TemplateError(f"unexpected {value!r}")


def _parse_pipeline(
    body: str, functions: Mapping[str, Any], variables: frozenset[str] = frozenset()
) -> _Pipeline:
    tokens = _tokens(body)
    if not tokens:
        raise TemplateError("missing value for command")
    parser = _Parser(tokens, functions, variables)
    pipeline = parser.pipeline()
    if parser.pos != len(tokens):
        raise TemplateError(f"unexpected {tokens[parser.pos][1]!r} in {body!r}")
    return pipeline


def _parse(parts: Sequence[_Text | _Action], functions: Mapping[str, Any]) -> tuple[Any, ...]:
    """Nodes: str (text), _Pipeline (print it), _If, _Range."""
    # One frame per open block: (outer nodes, "if" or "range", if-branches, the pending
    # condition or range header, the variables visible outside it).
    stack: list[tuple[list[Any], str, list[tuple[_Pipeline | None, tuple[Any, ...]]], Any,
                      frozenset[str]]] = []  # fmt: skip
    nodes: list[Any] = []
    variables: frozenset[str] = frozenset()
    for part in parts:
        if isinstance(part, _Text):
            nodes.append(part.text)
            continue
        body = part.body
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word) :].strip()
        if word == "if":
            stack.append((nodes, "if", [], _parse_pipeline(rest, functions, variables), variables))
            nodes = []
        elif word == "range":
            declared = _RANGE_VARS.match(rest)
            key = value = ""
            if declared:
                first, second, rest = declared.group(1), declared.group(2), declared.group(3)
                key, value = (first, second) if second else ("", first)
            header = (_parse_pipeline(rest, functions, variables), key, value, None)
            stack.append((nodes, "range", [], header, variables))
            variables = variables | {v for v in (key, value) if v}
            nodes = []
        elif word == "else":
            if not stack:
                raise TemplateError("unexpected {{else}}")
            outer, block, branches, cond, seen = stack.pop()
            if block == "range":
                if rest or cond[3] is not None:
                    raise TemplateError("unexpected {{else}} in range")
                stack.append((outer, block, branches, (*cond[:3], tuple(nodes)), seen))
                variables = seen
                nodes = []
                continue
            branches.append((cond, tuple(nodes)))
            nxt: Any = None
            if rest:
                head = rest.split(None, 1)[0]
                if head != "if":
                    raise TemplateError(f"unexpected {rest!r} after else")
                nxt = _parse_pipeline(rest[2:].strip(), functions, variables)
            stack.append((outer, block, branches, nxt if rest else "else", seen))
            nodes = []
        elif word == "end":
            if not stack:
                raise TemplateError("unexpected {{end}}")
            outer, block, branches, cond, seen = stack.pop()
            variables = seen
            if block == "range":
                pipeline, key, value, loop = cond
                if loop is None:
                    outer.append(_Range(pipeline, key, value, tuple(nodes), ()))
                else:
                    outer.append(_Range(pipeline, key, value, loop, tuple(nodes)))
            else:
                branches.append((None if cond == "else" else cond, tuple(nodes)))
                outer.append(_If(tuple(branches)))
            nodes = outer
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{{word}}}}} is not supported by gitsail's Go templates")
        else:
            nodes.append(_parse_pipeline(body, functions, variables))
    if stack:
        raise TemplateError(f"unexpected EOF: an {{{{{stack[-1][1]}}}}} has no {{{{end}}}}")
    return tuple(nodes)


# -- evaluation -------------------------------------------------------------------------------


class GoTemplate:
    """A parsed template: ``GoTemplate(text).render(data, missingkey="error")``."""

    def __init__(self, source: str, functions: Mapping[str, Callable[..., Any]] = FUNCTIONS):
        self.source = source
        self.functions = functions
        self.nodes = _parse(_split(source), functions)

    def render(
        self, data: Any, *, missingkey: str = "default", max_output: int = MAX_OUTPUT
    ) -> str:
        if missingkey not in ("default", "invalid", "zero", "error"):
            raise TemplateError(f"unknown missingkey option {missingkey!r}")
        out: list[str] = []
        _Eval(data, missingkey == "error", self.functions).nodes(self.nodes, out)
        text = "".join(out)
        if len(text) > max_output:
            raise TemplateError(f"the output is over {max_output} characters")
        return text


class _Eval:
    def __init__(self, data: Any, strict: bool, functions: Mapping[str, Callable[..., Any]]):
        self.data = data
        self.dot = data
        self.vars: dict[str, Any] = {}
        self.strict = strict
        self.functions = functions

    def nodes(self, nodes: Sequence[Any], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Pipeline):
                out.append(go_sprint(self.pipeline(node)))
            elif isinstance(node, _Range):
                self.range(node, out)
            else:
                for cond, body in node.branches:
                    if cond is None or _truthy(self.pipeline(cond)):
                        self.nodes(body, out)
                        break

    def range(self, node: _Range, out: list[str]) -> None:
        collection = self.pipeline(node.pipeline)
        items: list[tuple[Any, Any]]
        if collection is None:
            items = []
        elif isinstance(collection, Mapping):
            keys = sorted(collection, key=lambda k: (not isinstance(k, (int, float)), go_sprint(k)))
            items = [(k, collection[k]) for k in keys]
        elif isinstance(collection, (list, tuple)):
            items = list(enumerate(collection))
        elif isinstance(collection, int) and not isinstance(collection, bool):
            items = [(i, i) for i in range(collection)]
        else:
            raise TemplateError(f"range can't iterate over {go_sprint(collection)}")
        if not items:
            self.nodes(node.empty, out)
            return
        saved_dot, saved_vars = self.dot, dict(self.vars)
        try:
            for key, value in items:
                self.dot = value
                if node.key:
                    self.vars[node.key] = key
                if node.value:
                    self.vars[node.value] = value
                self.nodes(node.body, out)
        finally:
            self.dot, self.vars = saved_dot, saved_vars

    def pipeline(self, pipeline: _Pipeline) -> Any:
        value: Any = None
        for i, command in enumerate(pipeline.commands):
            value = self.command(command, (value,) if i else ())
        return value

    def command(self, command: tuple[_Operand, ...], piped: tuple[Any, ...]) -> Any:
        head = command[0]
        if head.kind == "ident":
            args = [self.operand(a) for a in command[1:]] + list(piped)
            try:
                return self.functions[head.value](*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError) as exc:
                raise TemplateError(f"error calling {head.value}: {exc}") from exc
        if len(command) > 1 or piped:
            raise TemplateError("can't give argument to non-function")
        return self.operand(head)

    def operand(self, op: _Operand) -> Any:
        if op.kind in ("str", "num", "bool", "nil"):
            return op.value
        if op.kind == "ident":
            return self.command((op,), ())
        if op.kind == "pipe":
            return self.fields(self.pipeline(op.value), op.chain)
        if op.kind == "var" and op.value != "$":
            return self.fields(self.vars.get(op.value), op.chain)
        if op.kind == "var":
            return self.fields(self.data, op.chain)  # $
        return self.fields(self.dot, op.chain)  # a field of .

    def fields(self, value: Any, chain: Sequence[str]) -> Any:
        for name in chain:
            if isinstance(value, Mapping):
                if name in value:
                    value = value[name]
                elif self.strict:
                    raise TemplateError(f'map has no entry for key "{name}"')
                else:
                    value = MISSING
            elif value is None or isinstance(value, _Missing):
                raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
        return value


def render_go(source: str, data: Any, *, missingkey: str = "default") -> str:
    return GoTemplate(source).render(data, missingkey=missingkey)
