"""A HelmRelease's own object: its status (one merge patch of ``/status`` per pass, none
when nothing changed) and its finalizer, written with helm-controller's field manager."""

from __future__ import annotations

from typing import Any

from gitsail.kinds.flux_helmrelease import API_VERSIONS, KIND
from gitsail.kinds.flux_helmrelease_chart import FIELD_MANAGER
from gitsail.kinds.status import Transient
from gitsail.kube import Conflict, Kube
from gitsail.model import Obj

__all__ = ["FINALIZER", "add_finalizer", "remove_finalizer", "write_status"]

API_VERSION = API_VERSIONS[0]
FINALIZER = "finalizers.fluxcd.io"


async def write_status(kube: Kube, obj: Obj, status: dict[str, Any]) -> None:
    """One merge patch of ``/status``; nothing when it did not change."""
    current = obj.get("status") or {}
    if status == current:
        return
    patch: dict[str, Any] = dict(status)
    for key in current:
        if key not in status:
            patch[key] = None
    meta = obj.get("metadata") or {}
    await kube.merge_patch(
        str(obj.get("apiVersion") or API_VERSION),
        KIND,
        str(meta.get("name")),
        {"status": patch},
        str(meta.get("namespace")),
        subresource="status",
        field_manager=FIELD_MANAGER,
    )


async def add_finalizer(kube: Kube, obj: Obj) -> Obj:
    """Add ``finalizers.fluxcd.io`` (at the resourceVersion read)."""
    meta = obj.get("metadata") or {}
    return await kube.merge_patch(
        str(obj.get("apiVersion") or API_VERSION),
        KIND,
        str(meta.get("name")),
        {
            "metadata": {
                "finalizers": [*(meta.get("finalizers") or []), FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),
            }
        },
        str(meta.get("namespace")),
        field_manager=FIELD_MANAGER,
    )


async def remove_finalizer(kube: Kube, obj: Obj) -> None:
    """Drop our finalizer at the resourceVersion read (re-read on a conflict, so the
    finalizers of others are kept)."""
    api_version = str(obj.get("apiVersion") or API_VERSION)
    for _ in range(5):
        meta = obj.get("metadata") or {}
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        patch = {
            "metadata": {
                "finalizers": [f for f in meta.get("finalizers") or [] if f != FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            await kube.merge_patch(
                api_version,
                KIND,
                str(meta.get("name")),
                patch,
                str(meta.get("namespace")),
                field_manager=FIELD_MANAGER,
            )
            return
        except Conflict:
            fresh = await kube.get(
                api_version, KIND, str(meta.get("name")), str(meta.get("namespace"))
            )
            if fresh is None:
                return
            obj = fresh
    raise Transient("ReconcileError", "the finalizer could not be removed: conflicts")
