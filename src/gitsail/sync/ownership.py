"""Ownership as data: how a delivery marks the objects it applies and recognises its own.

An ``Owner`` is handed to the sync stage with the request; sync never knows which API kind
asked. It marks every object it applies (``mark``), prunes and replaces only what it
``owns``, and refuses to touch an object another owner has marked (``claimant``): two
deliveries that both write one object would take it from each other on every sync, and
one of them would eventually prune what the other still wants.

Two marks are known, and every owner recognises both, so the refusal holds across kinds
(an Argo CD Application never applies over or prunes a Flux Kustomization's object, nor the
other way round):

- ``ArgoTracking(app)``: Argo CD's ``argocd.argoproj.io/tracking-id`` annotation,
  ``<app>:<group>/<kind>:<namespace>/<name>``. It names the object itself, so a copied
  annotation (an object created from another's YAML) marks nobody, as in Argo CD.
- ``FluxLabels(name, namespace)``: kustomize-controller's labels
  ``kustomize.toolkit.fluxcd.io/name`` and ``kustomize.toolkit.fluxcd.io/namespace``.
  Flux matches them as a label selector (both must be equal), and they carry no object
  identity: a copy of a labelled object counts as the Kustomization's, as it does for Flux.
  What keeps Flux from pruning such a copy is the inventory: only entries the last sync
  recorded are ever pruned (``gitsail.sync.inventory``).

``owners_of(obj)`` lists the owners an object's marks name; ``Owner.claimant`` is the first
of them that is not this owner.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gitsail.model import Obj, ResourceKey

__all__ = [
    "FLUX_NAMESPACE_LABEL",
    "FLUX_NAME_LABEL",
    "TRACKING_ANNOTATION",
    "ArgoTracking",
    "FluxLabels",
    "Owner",
    "argo_app_of",
    "display_app",
    "owners_of",
    "shared_resource_warning",
    "tracking_id",
]

FLUX_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
FLUX_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"


def tracking_id(app: str, key: ResourceKey) -> str:
    """``<app>:<group>/<kind>:<namespace>/<name>`` (core group and cluster scope empty)."""
    return f"{app}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


def argo_app_of(obj: Obj) -> str | None:
    """The tracking name in ``obj``'s tracking id, or None if the annotation is absent or
    names another object (a copy)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRACKING_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str) or ":" not in value:
        return None
    app = value.split(":", 1)[0]
    return app if app and value == tracking_id(app, ResourceKey.of(obj)) else None


def display_app(instance: str) -> str:
    """``ns/name`` for a tracking name ``ns_name`` (apps outside the control namespace)."""
    return instance.replace("_", "/")


@runtime_checkable
class Owner(Protocol):
    """How one delivery (an Application, a Kustomization) marks and recognises its objects.

    Implementations are small frozen records: equal owners are the same delivery.
    """

    def mark(self, obj: Obj) -> Obj:
        """A copy of ``obj`` carrying this owner's mark (``obj`` is not changed)."""
        ...

    def owns(self, obj: Obj) -> bool:
        """Whether ``obj`` (as read live) carries this owner's mark."""
        ...

    def claimant(self, obj: Obj) -> str | None:
        """Who else marked ``obj`` (``describe()`` of that owner), or None."""
        ...

    def describe(self) -> str:
        """The owner as messages name it: ``application argocd/guestbook``."""
        ...


def _labels(obj: Obj) -> dict[str, object]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


@dataclass(frozen=True)
class ArgoTracking:
    """Argo CD's annotation tracking for the app whose tracking name is ``app``.

    ``app`` is ``<name>`` for an Application in the control-plane namespace and
    ``<namespace>_<name>`` elsewhere (what Argo CD writes). ``display`` is how messages name
    the app (``argocd/guestbook``); it defaults to ``app`` with ``_`` read as ``/`` and does
    not take part in equality.
    """

    app: str
    display: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.app or ":" in self.app:
            raise ValueError(
                f"an Argo CD tracking name must be non-empty without ':': {self.app!r}"
            )

    @property
    def shown(self) -> str:
        return self.display or display_app(self.app)

    def mark(self, obj: Obj) -> Obj:
        marked = copy.deepcopy(obj)
        meta = marked.setdefault("metadata", {})
        annotations = dict(meta.get("annotations") or {})
        annotations[TRACKING_ANNOTATION] = tracking_id(self.app, ResourceKey.of(marked))
        meta["annotations"] = annotations
        return marked

    def owns(self, obj: Obj) -> bool:
        return argo_app_of(obj) == self.app

    def claimant(self, obj: Obj) -> str | None:
        return _claimant(self, obj)

    def describe(self) -> str:
        return f"application {self.shown}"


@dataclass(frozen=True)
class FluxLabels:
    """kustomize-controller's owner labels for the Kustomization ``namespace/name``."""

    name: str
    namespace: str

    def __post_init__(self) -> None:
        if not self.name or not self.namespace:
            raise ValueError(
                f"a Kustomization owner needs a name and a namespace: {self.namespace!r}/"
                f"{self.name!r}"
            )

    def mark(self, obj: Obj) -> Obj:
        marked = copy.deepcopy(obj)
        meta = marked.setdefault("metadata", {})
        labels = dict(meta.get("labels") or {})
        labels[FLUX_NAME_LABEL] = self.name
        labels[FLUX_NAMESPACE_LABEL] = self.namespace
        meta["labels"] = labels
        return marked

    def owns(self, obj: Obj) -> bool:
        labels = _labels(obj)
        return (
            labels.get(FLUX_NAME_LABEL) == self.name
            and labels.get(FLUX_NAMESPACE_LABEL) == self.namespace
        )

    def claimant(self, obj: Obj) -> str | None:
        return _claimant(self, obj)

    def describe(self) -> str:
        return f"Kustomization {self.namespace}/{self.name}"


def owners_of(obj: Obj) -> tuple[Owner, ...]:
    """Every owner whose mark ``obj`` carries: a self-referencing Argo CD tracking id, and
    both Flux owner labels (one alone is no selector match, so no claim)."""
    found: list[Owner] = []
    app = argo_app_of(obj)
    if app is not None:
        found.append(ArgoTracking(app))
    labels = _labels(obj)
    name, namespace = labels.get(FLUX_NAME_LABEL), labels.get(FLUX_NAMESPACE_LABEL)
    if isinstance(name, str) and isinstance(namespace, str) and name and namespace:
        found.append(FluxLabels(name, namespace))
    return tuple(found)


def _claimant(owner: Owner, obj: Obj) -> str | None:
    for other in owners_of(obj):
        if other != owner:
            return other.describe()
    return None


def shared_resource_warning(obj: Obj, owner: Owner) -> str | None:
    """Why ``owner`` must not take ``obj``: None if nobody else marked it.

    Between two Argo CD apps this is Argo CD's SharedResourceWarning text
    (``Kind/name is part of applications a and b``); otherwise it names both owners.
    """
    claimant = owner.claimant(obj)
    if claimant is None:
        return None
    meta = obj.get("metadata") or {}
    what = f"{obj.get('kind', '')}/{meta.get('name', '')}"
    other_app = argo_app_of(obj)
    if isinstance(owner, ArgoTracking) and other_app is not None and other_app != owner.app:
        return f"{what} is part of applications {owner.shown} and {display_app(other_app)}"
    return f"{what} is part of {owner.describe()} and {claimant}"
