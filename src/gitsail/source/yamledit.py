"""Edit YAML files in place, changing only the bytes of the values that change.

Why not a round-trip library (ruamel.yaml)? A round trip parses the whole file and prints it
again: it keeps comments and key order, but re-indents sequences to one style, re-quotes
strings, folds long lines and moves comments that sit between items. In a GitOps repository
every such byte is a line in the pull request. So gitsail parses with PyYAML's composer (which
it already depends on) only to *locate* nodes — every node carries its start
and end offsets in the text — and then splices new text into the original string: a tag change
is a one-line diff, whatever the file's style. Edits that need new structure (a new key, a new
``images:`` entry) are inserted as new lines in the indentation of their siblings.

What is refused, with a message, rather than guessed: flow-style collections that would need a
new key, block scalars (``|``/``>``) as values to replace, anchors/aliases on edited nodes.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "EditError",
    "Splice",
    "apply_splices",
    "compose",
    "delete_key",
    "insert_key",
    "last_index",
    "line_end",
    "lookup",
    "parse_setter_marker",
    "replace_scalar",
    "scalar_text",
    "set_key",
    "walk",
]

MAX_FILE_BYTES = 1024 * 1024


class EditError(ValueError):
    """A file that cannot be edited safely (the message names the file and line)."""


@dataclass(frozen=True)
class Splice:
    """Replace ``text[start:end]`` with ``new``."""

    start: int
    end: int
    new: str


def compose(text: str, where: str) -> list[Node]:
    """The documents of ``text`` as node trees (positions kept); EditError when invalid."""
    if len(text) > MAX_FILE_BYTES:
        raise EditError(f"{where}: larger than {MAX_FILE_BYTES} bytes; refusing to edit it")
    try:
        return [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
    except yaml.YAMLError as exc:
        raise EditError(f"{where}: not valid YAML: {exc}") from None


def apply_splices(text: str, splices: Sequence[Splice]) -> str:
    """``text`` with every splice applied (they must not overlap)."""
    ordered = sorted(splices, key=lambda s: (s.start, s.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise EditError("two edits overlap in one place; edit the file by hand")
    out: list[str] = []
    cursor = 0
    for splice in ordered:
        out.append(text[cursor : splice.start])
        out.append(splice.new)
        cursor = splice.end
    out.append(text[cursor:])
    return "".join(out)


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_end(text: str, index: int) -> int:
    """The index of the newline ending the line of ``index`` (or the end of the text)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def last_index(node: Node) -> int:
    """Where the last scalar of ``node`` ends (a collection's end mark may be far past it)."""
    if isinstance(node, ScalarNode):
        return int(node.end_mark.index)
    children: list[Node] = []
    if isinstance(node, MappingNode):
        for key, value in node.value:
            children.extend((key, value))
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    if not children:
        return int(node.end_mark.index)
    return max(last_index(child) for child in children)


def lookup(mapping: Node, key: str) -> tuple[ScalarNode, Node] | None:
    """The (key node, value node) of ``key`` in ``mapping``, or None."""
    if not isinstance(mapping, MappingNode):
        return None
    for key_node, value in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value
    return None


def walk(node: Node, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Node]]:
    """Every node with its path of keys (``-`` for a sequence item), depth first."""
    yield path, node
    if isinstance(node, MappingNode):
        for key_node, value in node.value:
            if isinstance(key_node, ScalarNode):
                yield from walk(value, (*path, str(key_node.value)))
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from walk(item, (*path, "-"))


def scalar_text(value: str, like: Node | None = None) -> str:
    """``value`` as YAML text, in the quoting style of ``like`` when that is safe."""
    style = like.style if isinstance(like, ScalarNode) else None
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"':
        return json.dumps(value)
    dumped = yaml.safe_dump(value, width=10_000, allow_unicode=True)
    dumped = dumped.removesuffix("\n").removesuffix("\n...")
    if "\n" not in dumped and not dumped.startswith(("'", '"')):
        return dumped  # plain is read back as this same string
    return json.dumps(value)


def _editable(node: Node, where: str, text: str) -> ScalarNode:
    line = node.start_mark.line + 1
    if not isinstance(node, ScalarNode):
        raise EditError(f"{where}:{line}: expected a single value here, found a collection")
    if node.style in ("|", ">"):
        raise EditError(f"{where}:{line}: a block scalar; edit it by hand")
    if text[node.start_mark.index : node.start_mark.index + 1] in ("&", "*", "!"):
        raise EditError(f"{where}:{line}: an anchor, alias or tag on the value; edit it by hand")
    return node


def replace_scalar(text: str, node: Node, value: str, where: str) -> Splice:
    """Replace a scalar value's text, keeping its quoting style."""
    scalar = _editable(node, where, text)
    if scalar.tag != "tag:yaml.org,2002:str" and scalar.style is None:
        new = scalar_text(value)  # was a number or bool: now a string, quoted when needed
    else:
        new = scalar_text(value, scalar)
    if scalar.start_mark.index == scalar.end_mark.index:  # `key:` with no value
        return Splice(scalar.start_mark.index, scalar.end_mark.index, " " + new)
    return Splice(scalar.start_mark.index, scalar.end_mark.index, new)


def insert_key(text: str, mapping: Node, key: str, value: str, where: str) -> Splice:
    """A new ``key: value`` line after the last line of a block mapping."""
    line = mapping.start_mark.line + 1
    if not isinstance(mapping, MappingNode) or mapping.flow_style:
        raise EditError(f"{where}:{line}: a flow-style or non-mapping value; edit it by hand")
    column = mapping.start_mark.column
    at = line_end(text, last_index(mapping))
    return Splice(at, at, "\n" + " " * column + f"{key}: {scalar_text(value)}")


def set_key(text: str, mapping: Node, key: str, value: str, where: str) -> Splice | None:
    """Replace ``key``'s value, or insert it; None when it already has that value."""
    found = lookup(mapping, key)
    if found is None:
        return insert_key(text, mapping, key, value, where)
    _, node = found
    if isinstance(node, ScalarNode) and node.value == value:
        return None
    return replace_scalar(text, node, value, where)


def delete_key(text: str, mapping: Node, key: str, where: str) -> Splice | None:
    """Remove ``key`` and its value from a block mapping (None when absent)."""
    if not isinstance(mapping, MappingNode):
        return None
    pairs = list(mapping.value)
    for i, (key_node, value) in enumerate(pairs):
        if not (isinstance(key_node, ScalarNode) and key_node.value == key):
            continue
        if mapping.flow_style:
            raise EditError(f"{where}:{key_node.start_mark.line + 1}: flow style; edit by hand")
        if i + 1 < len(pairs):  # up to the next key: keeps a "- " that precedes this key
            return Splice(key_node.start_mark.index, pairs[i + 1][0].start_mark.index, "")
        start = line_start(text, key_node.start_mark.index)
        if text[start : key_node.start_mark.index].strip():
            raise EditError(f"{where}:{key_node.start_mark.line + 1}: cannot remove the only key")
        end = line_end(text, last_index(value))
        return Splice(start, min(end + 1, len(text)), "")
    return None


SETTER_MARKER = re.compile(r'#\s*(\{\s*"\$imagepolicy"\s*:\s*"[^"]*"\s*\})')


def parse_setter_marker(text: str, node: Node) -> tuple[str, str] | None:
    """(policy ``ns:name``, field ``""``/``tag``/``name``/``digest``) of the Flux setter
    comment (``# {"$imagepolicy": "ns:name[:field]"}``) on ``node``'s last line, if any."""
    end = line_end(text, int(node.end_mark.index))
    match = SETTER_MARKER.search(text, int(node.end_mark.index), end)
    if match is None:
        return None
    try:
        ref = str(json.loads(match.group(1))["$imagepolicy"])
    except (ValueError, KeyError, TypeError):
        return None
    parts = ref.split(":")
    if len(parts) == 2 and all(parts):
        return ref, ""
    if len(parts) == 3 and all(parts[:2]) and parts[2] in ("tag", "name", "digest"):
        return ":".join(parts[:2]), parts[2]
    return None
