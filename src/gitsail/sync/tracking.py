"""Ownership marks: the Argo CD tracking-id annotation.

``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>`` (the core group is
empty, cluster-scoped objects have an empty namespace). An object belongs to an app only
when the annotation names the app *and* the object itself: a copied annotation (an object
created from another's YAML) does not make it ours, as in Argo CD.

``owner_of`` names the app an object belongs to by that rule, so a sync can tell an object
nobody tracks (adopted, as Argo CD does) from one another app tracks (refused: two apps
would take it from each other on every sync; reported as Argo CD's SharedResourceWarning).
"""

from __future__ import annotations

import copy

from gitsail.model import Obj, ResourceKey

__all__ = [
    "TRACKING_ANNOTATION",
    "display_app",
    "is_owned_by",
    "mark",
    "owner_of",
    "shared_resource_message",
    "tracking_id",
]

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


def owner_of(obj: Obj) -> str | None:
    """The tracking name of the app this object belongs to, or None if its annotation is
    absent or names another object (a copy)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRACKING_ANNOTATION)
    if not isinstance(value, str) or ":" not in value:
        return None
    app = value.split(":", 1)[0]
    return app if app and value == tracking_id(app, ResourceKey.of(obj)) else None


def display_app(instance: str) -> str:
    """``ns/name`` for a tracking name ``ns_name`` (apps outside the control namespace)."""
    return instance.replace("_", "/")


def shared_resource_message(obj: Obj, app: str, other: str) -> str:
    """Argo CD's SharedResourceWarning text: ``Kind/name is part of applications a and b``."""
    meta = obj.get("metadata") or {}
    return (
        f"{obj.get('kind', '')}/{meta.get('name', '')} is part of applications "
        f"{app} and {display_app(other)}"
    )
