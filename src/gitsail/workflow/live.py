"""The head render of an app against the live cluster (``gitsail preview --live``).

Each rendered object is sent as a server-side apply **dry run** (nothing is persisted; the
apiserver fills defaults and runs admission, so defaults never show as differences) and
compared with the live object by ``gitsail.diff.diff_resource`` (normalized, Secrets
redacted). A namespaced object without a namespace gets the app's destination namespace.
A dry run the server refuses (e.g. its namespace does not exist yet) is compared as rendered.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from gitsail.diff import diff_resource
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.workflow.rendered import ObjectDiff

__all__ = ["live_diffs"]

FIELD_MANAGER = "gitsail-preview"


async def live_diffs(kube: Kube, objs: Sequence[Obj], namespace: str) -> list[ObjectDiff]:
    """The objects of ``objs`` that differ from the cluster (missing ones included)."""
    out: list[ObjectDiff] = []
    for rendered in objs:
        obj = copy.deepcopy(rendered)
        api, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        meta = obj.setdefault("metadata", {})
        info = await kube.resource_for(api, kind)
        if info.namespaced and not meta.get("namespace"):
            meta["namespace"] = namespace or "default"
        ns = meta.get("namespace") if info.namespaced else None
        live = await kube.get(api, kind, str(meta.get("name") or ""), ns)
        try:
            desired = await kube.apply(obj, field_manager=FIELD_MANAGER, force=True, dry_run=True)
        except KubeError:
            desired = obj
        diff = diff_resource(desired, live)
        if diff.status == "Synced":
            continue
        change = "missing" if diff.missing else "changed"
        out.append(
            ObjectDiff(kind, str(ns or ""), str(meta.get("name") or ""), change, diff.unified)
        )
    return out
