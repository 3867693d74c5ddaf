"""Ownership marks: the Argo CD tracking-id annotation, in the words Argo CD callers use.

``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>`` (the core group is
empty, cluster-scoped objects have an empty namespace). An object belongs to an app only
when the annotation names the app *and* the object itself: a copied annotation (an object
created from another's YAML) does not make it ours, as in Argo CD.

``owner_of`` names the app an object belongs to by that rule, so a sync can tell an object
nobody tracks (adopted, as Argo CD does) from one another app tracks (refused: two apps
would take it from each other on every sync; reported as Argo CD's SharedResourceWarning).

These functions are ``gitsail.sync.ownership.ArgoTracking`` seen from an app's tracking
name; new code passes an ``Owner`` instead.
"""

from __future__ import annotations

from gitsail.model import Obj
from gitsail.sync.ownership import (
    TRACKING_ANNOTATION,
    ArgoTracking,
    argo_app_of,
    display_app,
    tracking_id,
)

__all__ = [
    "TRACKING_ANNOTATION",
    "display_app",
    "is_owned_by",
    "mark",
    "owner_of",
    "shared_resource_message",
    "tracking_id",
]


def mark(obj: Obj, app: str) -> Obj:
    """A copy of ``obj`` carrying the app's tracking annotation."""
    return ArgoTracking(app).mark(obj)


def is_owned_by(obj: Obj, app: str) -> bool:
    return ArgoTracking(app).owns(obj)


def owner_of(obj: Obj) -> str | None:
    """The tracking name of the app this object belongs to, or None if its annotation is
    absent or names another object (a copy)."""
    return argo_app_of(obj)


def shared_resource_message(obj: Obj, app: str, other: str) -> str:
    """Argo CD's SharedResourceWarning text: ``Kind/name is part of applications a and b``.

    ``app`` is shown as given (``argocd/b``), ``other`` is a tracking name (``team_a``)."""
    meta = obj.get("metadata") or {}
    return (
        f"{obj.get('kind', '')}/{meta.get('name', '')} is part of applications "
        f"{app} and {display_app(other)}"
    )
