"""Read and write manifests the way Kubernetes does.

Kubernetes decodes YAML with ``sigs.k8s.io/yaml``, which is go-yaml v2: YAML 1.1 scalars.
PyYAML is also YAML 1.1, so its LibYAML (C) parser does the heavy lifting; what differs is
which plain scalars resolve to which type. ``_K8sLoader`` replaces PyYAML's implicit
resolvers with go-yaml v2's table:

- booleans: ``y/Y/yes/Yes/YES/n/N/no/No/NO/true/…/on/On/ON/off/Off/OFF``;
- integers: decimal, ``0b…``, ``0x…``, ``0…`` and ``0o…`` octal (``0644`` is 420), ``_`` allowed;
  no sexagesimal (``12:30`` stays a string, as in go-yaml);
- floats: go-yaml's ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`` (so ``1e3`` is
  1000.0), ``.inf``, ``.nan``;
- no timestamps: ``2024-01-01`` stays a string, as it does for unstructured objects.

Duplicate mapping keys are an error naming the file and line (``YAMLToJSONStrict``'s rule,
stricter than kubectl's last-wins). Mapping keys are made strings the way sigs.k8s.io/yaml
does when it converts to JSON (``80: x`` → ``"80"``), so every object is JSON-clean.

Every document is bounded before it is built (``gitsail.source.boundedyaml``): the text's
size, the number of documents, each document's size, nesting depth, alias uses and the nodes
alias expansion adds, with the limits of ``gitsail.policy.Policy``. An alias bomb is refused
from its node graph, before anything walks it as a tree.

The dumper quotes any string some YAML 1.1 reader could take for another type (``'yes'``,
``'0644'``, ``'1e3'``, ``'2024-01-01'``), so dumped manifests read back unchanged, by us
and by kubectl.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render._errors import RenderError
from gitsail.source.boundedyaml import (
    YAMLLimitError,
    check_document,
    check_stream,
    count_document,
    decode_text,
)

__all__ = ["compose_yaml", "dump_yaml", "load_manifests", "load_yaml_documents", "read_yaml_file"]

_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"

_GO_BOOL = re.compile(
    r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
)
_GO_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_GO_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0o[0-7_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)"
    r"|[-+]?0x[0-9a-fA-F_]+)$"
)
_GO_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_GO_MERGE = re.compile(r"^(?:<<)$")

_ResolverTable = dict[Any, list[tuple[str, re.Pattern[str]]]]


def _go_yaml_resolvers() -> _ResolverTable:
    table: _ResolverTable = {}

    def add(tag: str, regexp: re.Pattern[str], first: Iterable[str | None]) -> None:
        for ch in first:
            table.setdefault(ch, []).append((tag, regexp))

    add(_BOOL, _GO_BOOL, "yYnNtTfFoO")
    add(_NULL, _GO_NULL, ["~", "n", "N", ""])
    add(_INT, _GO_INT, "-+0123456789")
    add(_FLOAT, _GO_FLOAT, "-+0123456789.")
    add(_MERGE, _GO_MERGE, "<")
    return table


def _dump_resolvers() -> _ResolverTable:
    # Union of go-yaml's table and PyYAML's (which has timestamps and sexagesimals): a string
    # that any of them would read as something else gets quoted.
    table = {k: list(v) for k, v in _go_yaml_resolvers().items()}
    for first, entries in yaml.resolver.Resolver.yaml_implicit_resolvers.items():
        table.setdefault(first, []).extend(entries)
    return table


_LoaderBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DumperBase: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _DuplicateKeyError(ConstructorError):
    pass


def _json_key(key: Any, node: Node) -> str:
    """Map keys become strings, as sigs.k8s.io/yaml makes them on the way to JSON."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        if key != key:
            return ".nan"
        if key in (float("inf"), float("-inf")):
            return ".inf" if key > 0 else "-.inf"
        return f"{key:g}"
    raise ConstructorError(
        None,
        None,
        f"unsupported mapping key (a {type(key).__name__}); keys must be scalars",
        node.start_mark,
    )


class _K8sLoader(_LoaderBase):  # type: ignore[misc]
    yaml_implicit_resolvers = _go_yaml_resolvers()
    bool_values: ClassVar[dict[str, bool]] = {
        **yaml.constructor.SafeConstructor.bool_values,
        "y": True,
        "n": False,
    }

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None,
                None,
                f"expected a mapping, but found a {type(node).__name__}",
                node.start_mark,
            )
        own = [pair for pair in node.value if pair[0].tag != _MERGE]
        if len(own) != len(node.value):
            self.flatten_mapping(node)  # merged pairs first, then own pairs
        merged_count = len(node.value) - len(own)
        mapping: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = _json_key(self.construct_object(key_node, deep=True), key_node)
            if index >= merged_count:
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise _DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {key!r} (first set on line {first_line[key]})",
                        key_node.start_mark,
                    )
                first_line[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_binary(self, node: Node) -> str:
        # go-yaml decodes !!binary into a string, not bytes; keep objects JSON-clean.
        try:
            raw = base64.decodebytes(str(self.construct_scalar(node)).encode("ascii"))
        except (binascii.Error, UnicodeEncodeError) as err:
            raise ConstructorError(
                None, None, f"failed to decode base64 data: {err}", node.start_mark
            ) from err
        return raw.decode("utf-8", "replace")


_K8sLoader.add_constructor("tag:yaml.org,2002:binary", _K8sLoader.construct_yaml_binary)
_K8sLoader.add_constructor(_TIMESTAMP, _K8sLoader.construct_yaml_str)
_K8sLoader.add_constructor("tag:yaml.org,2002:set", _K8sLoader.construct_yaml_map)


class _K8sDumper(_DumperBase):  # type: ignore[misc]
    yaml_implicit_resolvers = _dump_resolvers()


def _position(err: yaml.MarkedYAMLError, source: str) -> str:
    mark = err.problem_mark or err.context_mark
    return f"{source}:{mark.line + 1}" if mark is not None else source


def load_yaml_documents(
    text: str, *, source: str = "<string>", policy: Policy = DEFAULT_POLICY
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, data)`` per YAML document, with the Kubernetes scalar rules.

    Raises RenderError naming ``source`` and the line for syntax errors, duplicate keys and
    documents over the ``policy``'s limits (checked before a document is built).
    """
    try:
        check_stream(text, source, policy)
    except YAMLLimitError as err:
        raise RenderError(str(err)) from None
    loader = _K8sLoader(text)
    try:
        number = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            number += 1
            count_document(number, source, policy)
            check_document(node, source, policy)
            line = node.start_mark.line + 1
            try:
                data = loader.construct_document(node)
            except (ValueError, LookupError, TypeError, OverflowError) as err:
                # ``!!int abc``, ``!!bool maybe``: an explicit tag the value does not fit.
                raise RenderError(
                    f"{source}: document {number} (line {line}): a value does not fit its "
                    f"explicit tag (such as !!int or !!bool): {type(err).__name__}"
                ) from None
            yield line, data
    except YAMLLimitError as err:
        raise RenderError(str(err)) from None
    except yaml.MarkedYAMLError as err:
        problem = err.problem or err.context or "invalid YAML"
        raise RenderError(f"{_position(err, source)}: {problem}") from None
    except yaml.YAMLError as err:
        raise RenderError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def compose_yaml(text: str, *, source: str, policy: Policy = DEFAULT_POLICY) -> Node | None:
    """The node tree of a single-document YAML text (None when empty), within the limits."""
    try:
        check_stream(text, source, policy)
        node = yaml.compose(text, Loader=_K8sLoader)
        if node is not None:
            check_document(node, source, policy)
    except YAMLLimitError as err:
        raise RenderError(str(err)) from None
    except yaml.MarkedYAMLError as err:
        raise RenderError(f"{_position(err, source)}: {err.problem or 'invalid YAML'}") from None
    except yaml.YAMLError as err:
        raise RenderError(f"{source}: invalid YAML: {err}") from None
    return node


def read_yaml_file(path: Path, *, source: str) -> str:
    """The text of a YAML file; RenderError naming ``source`` if unreadable or not UTF-8."""
    try:
        return decode_text(path.read_bytes(), source)
    except YAMLLimitError as err:
        raise RenderError(str(err)) from None
    except OSError as err:
        raise RenderError(f"{source}: cannot read: {err.strerror or err}") from None


class _JSONDuplicateKeyError(ValueError):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONDuplicateKeyError(key)
        out[key] = value
    return out


def _json_depth(data: Any) -> int:
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def _load_json_documents(text: str, source: str, policy: Policy) -> list[tuple[int, Any]]:
    try:
        check_stream(text, source, policy)
    except YAMLLimitError as err:
        raise RenderError(str(err)) from None
    too_deep = RenderError(
        f"{source}: JSON nested more than {policy.yaml_depth} levels deep (GITSAIL_YAML_DEPTH)"
    )
    try:
        data = json.loads(text, object_pairs_hook=_json_pairs) if text.strip() else None
    except _JSONDuplicateKeyError as err:
        # Let the YAML reader (JSON is YAML) find the line; fall back to the key alone.
        list(load_yaml_documents(text, source=source, policy=policy))
        raise RenderError(f"{source}: duplicate key {err.args[0]!r}") from None
    except json.JSONDecodeError as err:
        raise RenderError(f"{source}:{err.lineno}: invalid JSON: {err.msg}") from None
    except RecursionError:
        raise too_deep from None
    if _json_depth(data) > policy.yaml_depth:
        raise too_deep
    if isinstance(data, list):
        if len(data) > policy.yaml_documents:
            raise RenderError(
                f"{source}: more than {policy.yaml_documents} objects (GITSAIL_YAML_DOCUMENTS)"
            )
        return [(1, item) for item in data]
    return [(1, data)]


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        missing = [k for k in ("apiVersion", "kind") if not data.get(k)]
        return "a mapping without " + " and ".join(missing)
    return f"a {type(data).__name__}"


def _is_object(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("apiVersion"), str)
        and bool(data["apiVersion"])
        and isinstance(data.get("kind"), str)
        and bool(data["kind"])
    )


def _is_list(obj: Obj) -> bool:
    kind = str(obj["kind"])
    return kind == "List" or (kind.endswith("List") and isinstance(obj.get("items"), list))


def load_manifests(
    text: str, *, source: str = "<string>", policy: Policy = DEFAULT_POLICY
) -> list[Obj]:
    """Parse manifests (multi-document YAML, or JSON when ``source`` ends in ``.json``).

    Empty documents are skipped; ``kind: List`` (and ``*List`` kinds with ``items``) are
    expanded in place. A document that is not a mapping with ``apiVersion`` and ``kind`` is
    a RenderError naming ``source``, the document number (1-based) and its line.
    """
    if source.endswith(".json"):
        documents: Iterable[tuple[int, Any]] = _load_json_documents(text, source, policy)
    else:
        documents = load_yaml_documents(text, source=source, policy=policy)
    objs: list[Obj] = []
    for number, (line, data) in enumerate(documents, start=1):
        if data is None or data == {}:
            continue
        if not _is_object(data):
            raise RenderError(
                f"{source}: document {number} (line {line}) is not a Kubernetes object: "
                f"expected a mapping with apiVersion and kind, got {_describe(data)}"
            )
        if not _is_list(data):
            objs.append(data)
            continue
        for i, item in enumerate(data.get("items") or []):
            if not _is_object(item):
                raise RenderError(
                    f"{source}: document {number} (line {line}), {data['kind']} item {i}, "
                    f"is not a Kubernetes object: expected a mapping with apiVersion and "
                    f"kind, got {_describe(item)}"
                )
            objs.append(item)
    return objs


def dump_yaml(objs: Obj | Iterable[Obj]) -> str:
    """Multi-document YAML, keys in their original order, ambiguous strings quoted."""
    docs = [objs] if isinstance(objs, dict) else list(objs)
    return str(
        yaml.dump_all(
            docs, Dumper=_K8sDumper, sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    )
