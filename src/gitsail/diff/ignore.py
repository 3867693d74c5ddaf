"""ignoreDifferences: rules that take fields out of a comparison.

An Argo CD ``spec.ignoreDifferences`` entry names the objects it applies to (``group``, ``kind``,
optional ``name`` and ``namespace``; group and kind may be globs such as ``*``) and what to
ignore in them, in three ways:

- ``jsonPointers``: RFC 6901 paths, removed where present (absent paths are fine);
- ``jqPathExpressions``: jq path expressions, removed as ``del(<expr>)`` would
  (see ``gitsail.diff.jqpath`` for compile checks and the time budget);
- ``managedFieldsManagers``: every field that the named field managers own according to the
  *live* object's ``metadata.managedFields`` (``gitsail.diff.fields``). The same live field
  set is removed from both sides, so a field an HPA or an operator writes is not a difference
  whatever its value on either side.

Rules are parsed and validated once (``parse_ignore_differences``); bad entries raise
``DiffError`` naming the entry and field, and change nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gitsail.diff.errors import DiffError
from gitsail.diff.fields import managed_fields, remove_owned
from gitsail.diff.jqpath import check_expression, delete_paths
from gitsail.diff.pointer import parse_pointer, remove_pointer
from gitsail.model import Obj, ResourceKey

__all__ = ["IgnoreRule", "apply_ignore_rules", "parse_ignore_differences"]


@dataclass(frozen=True)
class IgnoreRule:
    """One ignoreDifferences entry. ``group`` ``""`` is the core group; globs allowed."""

    group: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    json_pointers: tuple[str, ...] = ()
    jq_path_expressions: tuple[str, ...] = ()
    managed_fields_managers: tuple[str, ...] = ()

    def matches(self, key: ResourceKey) -> bool:
        """Whether this rule applies to the object identified by ``key``."""
        return (
            fnmatchcase(key.group, self.group)
            and fnmatchcase(key.kind, self.kind)
            and (not self.name or self.name == key.name)
            and (not self.namespace or self.namespace == key.namespace)
        )


def _strings(entry: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = entry.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiffError(f"{where}: {field} must be a list of strings")
    return tuple(value)


def _string(entry: dict[str, Any], field: str, where: str) -> str:
    value = entry.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DiffError(f"{where}: {field} must be a string")
    return value


def parse_ignore_differences(spec: list[dict[str, Any]]) -> tuple[IgnoreRule, ...]:
    """Rules from Argo CD ``spec.ignoreDifferences``; raises DiffError on the first bad entry."""
    if not isinstance(spec, list):
        raise DiffError("ignoreDifferences must be a list")
    rules: list[IgnoreRule] = []
    for i, entry in enumerate(spec):
        where = f"ignoreDifferences[{i}]"
        if not isinstance(entry, dict):
            raise DiffError(f"{where} must be a map")
        kind = _string(entry, "kind", where)
        if not kind:
            raise DiffError(f"{where}: kind is required (use '*' for every kind)")
        pointers = _strings(entry, "jsonPointers", where)
        for pointer in pointers:
            try:
                parse_pointer(pointer)
            except DiffError as err:
                raise DiffError(f"{where}: {err}") from None
        expressions = _strings(entry, "jqPathExpressions", where)
        for expr in expressions:
            try:
                check_expression(expr)
            except DiffError as err:
                raise DiffError(f"{where}: {err}") from None
        rules.append(
            IgnoreRule(
                group=_string(entry, "group", where),
                kind=kind,
                name=_string(entry, "name", where),
                namespace=_string(entry, "namespace", where),
                json_pointers=pointers,
                jq_path_expressions=expressions,
                managed_fields_managers=_strings(entry, "managedFieldsManagers", where),
            )
        )
    return tuple(rules)


def apply_ignore_rules(
    obj: Obj,
    rules: Sequence[IgnoreRule],
    *,
    live: Obj | None = None,
    jq_budget: float | None = None,
    owned: bool = False,
) -> Obj:
    """A copy of ``obj`` without the fields the matching ``rules`` ignore.

    Expressions run in a jq worker process and block for up to ``jq_budget`` seconds each
    (default: ``Policy.jq_timeout``); call this off the event loop.
    ``live`` is the object in the cluster whose ``metadata.managedFields`` decide what the
    ``managed_fields_managers`` own; without it, ``obj``'s own managedFields are used.
    Apply the same rules with the same ``live`` to both sides of a comparison. With
    ``owned`` (``obj`` is the caller's private copy) fields are removed from ``obj`` itself.
    """
    key = ResourceKey.of(obj)
    matching = [rule for rule in rules if rule.matches(key)]
    if not matching and owned:
        return obj
    out: Obj = obj if owned else copy.deepcopy(obj)
    if not matching:
        return out
    entries = managed_fields(live if live is not None else obj)
    for rule in matching:
        for pointer in rule.json_pointers:
            remove_pointer(out, parse_pointer(pointer))
        for expr in rule.jq_path_expressions:
            result = delete_paths(out, expr, budget=jq_budget)
            out = result if isinstance(result, dict) else out
        if rule.managed_fields_managers:
            managers = set(rule.managed_fields_managers)
            for entry in entries:
                if entry.manager in managers:
                    remove_owned(out, entry.fields)
    return out
