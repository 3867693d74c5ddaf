"""Ownership marks: the Argo CD tracking-id annotation.

``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>`` (the core group is
empty, cluster-scoped objects have an empty namespace). An object belongs to an app only
when the annotation names the app *and* the object itself: a copied annotation (an object
created from another's YAML) does not make it ours, as in Argo CD.
"""

from __future__ import annotations

import copy

from gitsail.model import Obj, ResourceKey

__all__ = ["TRACKING_ANNOTATION", "is_owned_by", "mark", "tracking_id"]

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"


def tracking_id(app: str, key: ResourceKey) -> str:
    return f"{app}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


def mark(obj: Obj, app: str) -> Obj:
    """A copy of ``obj`` carrying the app's tracking annotation."""
    marked = copy.deepcopy(obj)
    meta = marked.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations[TRACKING_ANNOTATION] = tracking_id(app, ResourceKey.of(marked))
    meta["annotations"] = annotations
    return marked


def is_owned_by(obj: Obj, app: str) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(TRACKING_ANNOTATION) == tracking_id(app, ResourceKey.of(obj))
