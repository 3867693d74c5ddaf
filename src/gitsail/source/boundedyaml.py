"""Limits on YAML read from tenant input, checked on the node graph before anything is built.

A YAML anchor (``&a``) and its aliases (``*a``) compose into one shared node, so a parser
returns a small graph for a text that *expands* enormously: nine levels of ``&a [*a ×9]``
are 555 bytes, 81 alias uses and 387 million nodes once something walks them as a tree
(a copy, ``json.dumps``, a diff). Every YAML reader of gitsail that sees tenant input
(manifests, tool output, ``kustomization.yaml``, ``Chart.yaml``, values, Helm repository
indexes) therefore composes each document to its node graph first (LibYAML, which also
caps nesting at 1000 levels) and calls ``check_document`` before constructing Python data:

- ``yaml_document_bytes``: the document's text, from its first to its last character;
- ``yaml_aliases``: alias uses (an edge to a node that was already reached);
- ``yaml_alias_nodes``: nodes that alias expansion adds (tree size minus graph size);
- ``yaml_depth``: nesting depth of the expanded tree;
- a node that contains itself (``&a [*a]``) is refused outright.

``check_stream`` bounds the whole text (``render_output_bytes``) and ``count_document`` the
number of documents (``yaml_documents``). The walk is iterative and visits each distinct
node once, so checking costs no more than composing. Violations raise ``YAMLLimitError``
(a ``ValueError``) naming the source and line; each stage wraps it in its own error type.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from gitsail.policy import DEFAULT_POLICY, Policy

__all__ = [
    "YAMLLimitError",
    "check_document",
    "check_stream",
    "count_document",
    "decode_text",
    "load_document",
]

_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YAMLLimitError(ValueError):
    """A YAML text exceeds one of the operator's limits (or is not text at all)."""


def decode_text(data: bytes, source: str) -> str:
    """``data`` as UTF-8 (a BOM is allowed); YAMLLimitError naming ``source`` otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise YAMLLimitError(
            f"{source}: not UTF-8 text (invalid byte at offset {err.start}); save the file as UTF-8"
        ) from None


def check_stream(text: str, source: str, policy: Policy = DEFAULT_POLICY) -> None:
    """Refuse a YAML text larger than ``render_output_bytes`` before parsing it."""
    if len(text) > policy.render_output_bytes:
        raise YAMLLimitError(
            f"{source}: {len(text)} characters of YAML, over the limit of "
            f"{policy.render_output_bytes} (GITSAIL_RENDER_OUTPUT_BYTES)"
        )


def count_document(number: int, source: str, policy: Policy = DEFAULT_POLICY) -> None:
    """Refuse the ``number``-th document (1-based) of a stream beyond ``yaml_documents``."""
    if number > policy.yaml_documents:
        raise YAMLLimitError(
            f"{source}: more than {policy.yaml_documents} YAML documents "
            "(GITSAIL_YAML_DOCUMENTS); split the source"
        )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_document(node: Node, source: str, policy: Policy = DEFAULT_POLICY) -> None:
    """Refuse a composed document that is too large, too deep or expands too much."""
    line = node.start_mark.line + 1
    where = f"{source}:{line}"
    size = node.end_mark.index - node.start_mark.index
    if size > policy.yaml_document_bytes:
        raise YAMLLimitError(
            f"{where}: a YAML document of {size} characters, over the limit of "
            f"{policy.yaml_document_bytes} (GITSAIL_YAML_DOCUMENT_BYTES)"
        )
    # Iterative post-order over the graph: the expanded size and height of each distinct
    # node are computed once (memo), so shared subtrees cost one visit however often used.
    expanded: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    aliases = 0
    distinct = 0
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        if done:
            kids = _children(current)
            expanded[key] = 1 + sum(expanded[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if height[key] > policy.yaml_depth:
                raise YAMLLimitError(
                    f"{where}: YAML nested more than {policy.yaml_depth} levels deep "
                    "(GITSAIL_YAML_DEPTH)"
                )
            if expanded[key] - distinct > policy.yaml_alias_nodes:
                raise YAMLLimitError(
                    f"{where}: YAML aliases expand to more than {policy.yaml_alias_nodes} "
                    "extra nodes (GITSAIL_YAML_ALIAS_NODES); this looks like an alias bomb"
                )
            continue
        if key in expanded or key in on_path:
            if key in on_path:
                raise YAMLLimitError(f"{where}: a YAML alias refers to a node that contains it")
            aliases += 1
            if aliases > policy.yaml_aliases:
                raise YAMLLimitError(
                    f"{where}: more than {policy.yaml_aliases} YAML alias uses "
                    "(GITSAIL_YAML_ALIASES)"
                )
            continue
        distinct += 1
        on_path.add(key)
        stack.append((current, True))
        for child in reversed(_children(current)):
            stack.append((child, False))


def load_document(text: str | bytes, source: str, policy: Policy = DEFAULT_POLICY) -> Any:
    """One YAML document as plain data (YAML 1.1 safe types), checked before it is built.

    Raises YAMLLimitError over a limit or for bytes that are not UTF-8, and
    ``yaml.YAMLError`` for anything that is not valid YAML (including a value that does
    not fit its explicit tag, such as ``!!int abc``).
    """
    if isinstance(text, bytes):
        text = decode_text(text, source)
    check_stream(text, source, policy)
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_document(node, source, policy)
        try:
            return loader.construct_document(node)
        except (ValueError, LookupError, TypeError, OverflowError) as err:
            raise yaml.YAMLError(f"a value does not fit its tag ({type(err).__name__})") from None
    finally:
        loader.dispose()
