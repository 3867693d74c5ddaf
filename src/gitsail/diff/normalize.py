"""Normalization: drop from an object everything that is never a difference.

Both sides of a comparison pass through ``normalize`` first. What goes:

- server bookkeeping in ``metadata``: managedFields, resourceVersion, uid, generation,
  creationTimestamp, selfLink, deletionTimestamp, deletionGracePeriodSeconds
  (ownerReferences, finalizers, labels and annotations stay: they are real state);
- the annotation ``kubectl.kubernetes.io/last-applied-configuration`` (a copy of the object,
  and for Secrets a copy of its values);
- ``status`` (Argo CD 3.x ignores status for every kind by default; the desired side has none);
- ``null`` values, and empty lists and empty maps the apiserver omits when it serializes
  (``labels: {}``, ``env: []``). Empty objects that *mean* something, such as
  ``emptyDir: {}``, are kept: only keys known to hold plain maps are pruned when empty.

A Secret's ``stringData`` is merged into ``data`` (base64), as the apiserver does on write,
so a manifest using ``stringData`` compares equal to the stored Secret.
"""

from __future__ import annotations

import base64
from typing import Any

from gitsail.model import Obj, split_api_version

__all__ = ["LAST_APPLIED", "normalize", "prune_empty"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

# Keys whose values are free-form string maps in the core API: empty means absent.
_MAP_KEYS = frozenset(
    {
        "labels",
        "annotations",
        "data",
        "binaryData",
        "stringData",
        "matchLabels",
        "nodeSelector",
        "selector",
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "parameters",
    }
)


def prune_empty(value: Any) -> Any:
    """``value`` without nulls, empty lists, and empty plain maps (see module docstring)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            item = prune_empty(item)
            if item is None or (isinstance(item, list) and not item):
                continue
            if isinstance(item, dict) and not item and key in _MAP_KEYS:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [prune_empty(item) for item in value if item is not None]
    return value


def _merge_string_data(obj: Obj) -> None:
    string_data = obj.pop("stringData", None)
    if not isinstance(string_data, dict) or not string_data:
        return
    data = obj.get("data")
    if not isinstance(data, dict):
        data = obj["data"] = {}
    for key, value in string_data.items():
        if isinstance(value, str):
            data[key] = base64.b64encode(value.encode()).decode()


def is_core_secret(obj: Obj) -> bool:
    group, _ = split_api_version(str(obj.get("apiVersion") or ""))
    return group == "" and obj.get("kind") == "Secret"


def normalize(obj: Obj) -> Obj:
    """A deep copy of ``obj`` without what is never a difference (see module docstring).

    Only what is left out is copied shallowly first (``status`` and the server's metadata,
    often most of a live object, are never copied); ``prune_empty`` then builds every map
    and list of the result anew, so nothing in it is shared with ``obj``."""
    out: Obj = {k: v for k, v in obj.items() if k != "status"}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = out["metadata"] = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    if is_core_secret(out):
        data = out.get("data")
        if isinstance(data, dict):
            out["data"] = dict(data)  # stringData is merged into a copy
        _merge_string_data(out)
    pruned: Obj = prune_empty(out)
    return pruned
