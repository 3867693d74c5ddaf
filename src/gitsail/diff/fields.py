"""FieldsV1: the field sets in ``metadata.managedFields``, and what they say about an object.

Each managedFields entry records which fields one field manager owns, as a tree whose keys
are path elements:

- ``f:<name>``  a field of a map or struct (``f:spec``, ``f:replicas``);
- ``k:<json>``  an item of a list keyed by merge keys (``k:{"name":"app"}``,
  ``k:{"containerPort":80,"protocol":"TCP"}``): the item whose key fields equal these;
- ``v:<json>``  an item of a set-like list of scalars, by value (``v:"example.com/finalizer"``);
- ``i:<n>``     an item of a list by index;
- ``.``         the node itself is owned (used when it also has owned children).

A leaf ``{}`` means the manager owns the whole value at that path (atomically, children
included); a node with children owns only those children (plus itself if it has ``.``).

Two walks live here. ``remove_owned`` removes a field set from an object as structured-merge-diff
``RemoveItems`` does: a path that is itself a member of the set (a leaf, or a node with ``.``)
is removed whole; a node with only children is descended into. So a sidecar container that an
injector added (``k:{"name":"istio-proxy"}: {".": {}, ...}``) disappears entirely rather than
leaving an empty item behind. ``owns`` answers whether a set covers a concrete JSON-pointer path
of the object. ``covers`` answers whether every path of a set is present in a value (a
manifest that still sets every field its applier owns).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from gitsail.model import Obj

__all__ = [
    "ManagedFieldsEntry",
    "covers",
    "item_node",
    "managed_fields",
    "owns",
    "remove_owned",
]

FieldSet = dict[str, Any]


class ManagedFieldsEntry:
    """One ``metadata.managedFields`` item: manager, operation, subresource, time, fields."""

    __slots__ = ("fields", "manager", "operation", "subresource", "time")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.manager = str(raw.get("manager") or "")
        self.operation = str(raw.get("operation") or "")
        self.subresource = str(raw.get("subresource") or "")
        self.time = str(raw.get("time") or "")
        fields = raw.get("fieldsV1") if raw.get("fieldsType", "FieldsV1") == "FieldsV1" else None
        self.fields: FieldSet = fields if isinstance(fields, dict) else {}


def managed_fields(obj: Obj | None) -> list[ManagedFieldsEntry]:
    """The managedFields entries of ``obj`` (none for ``None`` or objects without them)."""
    if obj is None:
        return []
    meta = obj.get("metadata")
    raw = meta.get("managedFields") if isinstance(meta, dict) else None
    if not isinstance(raw, list):
        return []
    return [ManagedFieldsEntry(entry) for entry in raw if isinstance(entry, dict)]


def _is_member(node: Any) -> bool:
    """Whether the path of ``node`` itself is in the set (a leaf, or marked with ``.``)."""
    return not isinstance(node, dict) or not node or "." in node


def _item_matches(element: str, index: int, item: Any) -> bool:
    """Whether the list element key ``element`` (k:/v:/i:) designates ``item`` at ``index``."""
    prefix, payload = element[:2], element[2:]
    try:
        if prefix == "i:":
            return int(payload) == index
        if prefix == "v:":
            return bool(json.loads(payload) == item)
        if prefix == "k:":
            keys = json.loads(payload)
            return (
                isinstance(keys, dict)
                and isinstance(item, dict)
                and all(k in item and item[k] == v for k, v in keys.items())
            )
    except ValueError:
        return False
    return False


def item_node(fs: FieldSet, index: int, item: Any) -> Any:
    """The node of ``fs`` for the list item ``item`` at ``index`` (by its ``k:`` key,
    ``v:`` value or ``i:`` index), or None."""
    for element, node in fs.items():
        if element[:2] in ("k:", "v:", "i:") and _item_matches(element, index, item):
            return node
    return None


def remove_owned(value: Any, fs: FieldSet) -> None:
    """Remove from ``value`` (in place) every field the set ``fs`` owns."""
    if isinstance(value, dict):
        for name in list(value):
            node = fs.get("f:" + name)
            if node is None:
                continue
            if _is_member(node):
                del value[name]
            else:
                remove_owned(value[name], node)
    elif isinstance(value, list):
        for index in range(len(value) - 1, -1, -1):
            node = item_node(fs, index, value[index])
            if node is None:
                continue
            if _is_member(node):
                del value[index]
            else:
                remove_owned(value[index], node)


def _walk(obj: Any, fs: FieldSet, tokens: Sequence[str]) -> Iterator[FieldSet]:
    """The set nodes along ``tokens``; stops early where the set or the object ends."""
    value: Any = obj
    node: Any = fs
    for token in tokens:
        if isinstance(value, dict) and token in value:
            node = node.get("f:" + token)
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            index = int(token)
            node = item_node(node, index, value[index])
            value = value[index]
        else:
            return
        if not isinstance(node, dict):
            return
        yield node
        if not node:
            return  # a leaf: owned atomically, descendants included


def owns(fs: FieldSet, obj: Obj, tokens: Sequence[str]) -> bool:
    """Whether the set ``fs`` owns the value at ``tokens`` in ``obj`` (or something inside it).

    Owned means: the set reaches that exact path (as a leaf, a ``.`` node, or a node with
    owned children), or it holds an ancestor of the path atomically (a leaf ``{}`` above it).
    A path that does not exist in ``obj`` is owned only through such an atomic ancestor.
    """
    if not tokens:
        return False
    reached = 0
    for node in _walk(obj, fs, tokens):
        reached += 1
        if not node:
            return True
    return reached == len(tokens)


def covers(manifest: Any, fs: FieldSet, live: Any) -> bool:
    """Whether every path of the set ``fs`` (a field set of ``live``) is present in
    ``manifest``: each ``f:`` field, and each list item that a ``k:`` key, ``v:`` value or
    ``i:`` index names. Applied, ``manifest`` would then release none of the fields ``fs``
    owns. List items are found in ``live`` (a ``k:`` key holds the server's defaults, such
    as a port's ``protocol``, which a manifest may leave out) and taken from ``manifest`` at
    the same index: for a ``manifest`` whose lists are, item by item, within ``live``'s
    (the caller checks). A set it cannot read (a key that is not JSON, an element it does
    not know, an item found twice or not at all) does not cover: callers then ask the
    server."""
    for element, node in fs.items():
        if element == ".":
            continue
        prefix, payload = element[:2], element[2:]
        if prefix == "f:":
            if not isinstance(manifest, dict) or payload not in manifest:
                return False
            child = manifest[payload]
            live_child = live.get(payload) if isinstance(live, dict) else None
        elif prefix in ("k:", "v:", "i:"):
            if not isinstance(manifest, list) or not isinstance(live, list):
                return False
            found = [i for i, item in enumerate(live) if _item_matches(element, i, item)]
            if len(found) != 1 or found[0] >= len(manifest):
                return False
            child, live_child = manifest[found[0]], live[found[0]]
        else:
            return False
        if not isinstance(node, dict) or (node and not covers(child, node, live_child)):
            return False
    return True
