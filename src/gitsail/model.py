"""Records shared by every pipeline stage: how a Kubernetes object is named, what a source
hands to a renderer. Frozen dataclasses only; stages hand these on and never mutate them.

Objects themselves stay plain dicts (``Obj``): gitsail works "unstructured", as
kubectl and gitops-engine do, so any CRD is handled like a core kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Artifact", "Obj", "ResourceKey", "split_api_version"]

Obj = dict[str, Any]


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True, order=True)
class ResourceKey:
    """Identity of an object regardless of API version: group, kind, namespace, name.

    ``namespace`` is ``""`` for cluster-scoped objects (and for namespaced objects whose
    namespace is not known yet; the sync stage fills it from the destination).
    """

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Obj) -> ResourceKey:
        group, _ = split_api_version(str(obj.get("apiVersion", "")))
        meta = obj.get("metadata") or {}
        return cls(
            group=group,
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )

    @classmethod
    def from_ref(cls, ref: Mapping[str, Any]) -> ResourceKey:
        """From a ``{group, kind, namespace, name}`` mapping (status and operation rows)."""
        return cls(
            group=str(ref.get("group") or ""),
            kind=str(ref.get("kind") or ""),
            namespace=str(ref.get("namespace") or ""),
            name=str(ref.get("name") or ""),
        )

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        group = f"{self.group}/" if self.group else ""
        return f"{group}{self.kind} {ns}{self.name}"


@dataclass(frozen=True)
class Artifact:
    """A source materialized at one revision: what a renderer reads.

    ``root`` is a read-only checkout of the whole repository (or an unpacked chart);
    ``path`` is the app's directory inside it. ``digest`` is ``sha256:<hex>`` over exactly
    the files the render of ``path`` reads (see ``gitsail.source.inputs``), so two revisions
    that do not touch an app's inputs share a digest and the render is reused.
    """

    url: str
    revision: str
    requested: str
    root: Path
    path: str
    digest: str
    kind: str = "git"  # "git" | "helm" (a chart from a Helm repository)
    chart: str = ""  # for kind "helm": the chart name; the chart is at root / path

    @property
    def directory(self) -> Path:
        return self.root / self.path if self.path not in ("", ".") else self.root
