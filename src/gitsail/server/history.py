"""What the history and the diff pages show beyond the live diff: the diff between two
deployed revisions, who changed a drifted field, and hook Pods' logs.

- ``revision_diff``: the rendered objects of two history entries (each rendered from the
  entry's own source and revision), compared resource by resource. Secrets are masked with
  one mask table for both sides (``gitsail.diff``): a changed value shows as changed, its
  value never shows.
- ``drift_rows``: for each out-of-sync field of the live diff, the field managers other
  than gitsail's own that own it, with the time of their write (``managedFields``,
  ``gitsail.diff.attribute_drift``), next to what the controller last reported in
  ``status.drift``.
- ``tree_pod``: a Pod may have its logs read only when it is in the app's resource tree (a
  hook Job's Pod, a Deployment's Pod...): a name the tree does not hold is refused before
  any request is built from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml

from gitsail.diff import attribute_drift, diff_resource
from gitsail.model import Obj, ResourceKey

__all__ = ["drift_rows", "revision_diff", "tree_pod"]

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MAX_ROWS = 500


def _lines(obj: Obj | None) -> list[str]:
    if obj is None:
        return []
    text: str = yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False)
    return text.splitlines()


def _key(obj: Obj, namespace: str) -> ResourceKey:
    key = ResourceKey.of(obj)
    return key if key.namespace else ResourceKey(key.group, key.kind, namespace, key.name)


def revision_diff(
    old: Sequence[Obj], new: Sequence[Obj], old_label: str, new_label: str, namespace: str
) -> list[dict[str, Any]]:
    """The resources that differ between two renders (``old`` → ``new``), each with its
    unified diff; objects without a namespace are taken to be in ``namespace``."""
    before = {_key(o, namespace): o for o in old}
    after = {_key(o, namespace): o for o in new}
    rows = []
    for key in sorted(set(before) | set(after), key=str):
        # diff_resource's "live" is the old side, its "desired" the new one.
        d = diff_resource(after.get(key), before.get(key))
        if d.synced:
            continue
        change = "added" if d.missing else "removed" if d.requires_pruning else "changed"
        unified = "\n".join(
            difflib.unified_diff(
                _lines(d.live),
                _lines(d.desired),
                fromfile=f"{old_label} {key}",
                tofile=f"{new_label} {key}",
                lineterm="",
            )
        )
        rows.append(
            {
                "group": key.group,
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "change": change,
                "paths": list(d.changed_paths),
                "diff": unified,
            }
        )
        if len(rows) >= MAX_ROWS:
            break
    return rows


def drift_rows(
    diffs: Sequence[Any], live: dict[ResourceKey, Obj], ours: str
) -> list[dict[str, str]]:
    """Who changed each out-of-sync field (``ResourceDiff``s of a comparison)."""
    rows: list[dict[str, str]] = []
    for d in diffs:
        if d.status != "OutOfSync" or d.live is None or d.requires_pruning:
            continue
        obj = live.get(d.key)
        if obj is None:
            continue
        for who in attribute_drift(obj, d.changed_paths, ours=ours, compared=d.live):
            rows.append(
                {
                    "resource": str(d.key),
                    "field": who.path,
                    "manager": who.manager,
                    "operation": f"{who.operation} {who.subresource}".strip(),
                    "time": who.time,
                }
            )
            if len(rows) >= MAX_ROWS:
                return rows
    return rows


def tree_pod(nodes: Sequence[dict[str, Any]], namespace: str, name: str) -> dict[str, Any] | None:
    """The Pod node of the tree with that namespace and name (None: not this app's)."""
    for node in nodes:
        if (
            node.get("kind") == "Pod"
            and node.get("group") == ""
            and node.get("namespace") == namespace
            and node.get("name") == name
        ):
            return node
    return None
