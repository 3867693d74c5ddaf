"""One status write per reconcile: the steps of a reconcile say what they want, and what
they want is sent once at the end, or not at all when it changes nothing.

A ``StatusPatch`` starts from the object as the reconcile read it (the base). Each step
adds a merge-patch fragment of ``status`` (``update``) or one condition (``put_condition``,
``drop_conditions``); later fragments win field by field, as merge patches compose
(``None`` deletes a field; lists, such as ``conditions``, are replaced whole). ``send``
applies what was collected to the base: when the result is the base, nothing is sent (no
write, so no watch event and no new reconcile); otherwise one JSON merge patch goes out,
to the ``/status`` subresource when the kind's CRD has one (Flux kinds) or to the object
itself when it has none (Argo CD's Application, as Argo CD patches it). This is how
kustomize-controller finishes a reconcile: status computed on the way, patched once in a
deferred step.

A patch is sent at most once (``send`` then leaves nothing pending); a reconcile that must
write before handing over to a flow with its own writes (an Argo CD operation records
``operationState`` as it runs) calls ``send`` there and collects nothing more.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

from gitsail.controller.registry import KindAPI
from gitsail.model import Obj

__all__ = ["StatusPatch", "apply_merge_patch", "compose_merge_patches"]


class _Patcher(Protocol):
    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj: ...


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``target`` with the merge patch ``patch`` applied (neither is changed)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


def compose_merge_patches(first: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch doing ``first`` then ``then`` (mappings merge, anything else is
    replaced by the later value)."""
    out = dict(first)
    for key, value in then.items():
        before = out.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            out[key] = compose_merge_patches(before, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class StatusPatch:
    """The status changes of one reconcile of ``obj``, sent as at most one patch."""

    def __init__(self, obj: Obj, api: KindAPI, *, subresource: bool = False) -> None:
        self.base = obj
        self.api = api
        self.subresource = subresource
        self._status: dict[str, Any] = {}
        self.sent = 0  # patches sent (0 or 1 for a reconcile)

    # -- collecting ------------------------------------------------------------------------

    def update(self, fragment: Mapping[str, Any]) -> None:
        """Merge a ``status`` merge-patch fragment into what will be sent."""
        self._status = compose_merge_patches(self._status, fragment)

    @property
    def status(self) -> dict[str, Any]:
        """The status as it will be once sent."""
        result = apply_merge_patch(self.base.get("status") or {}, self._status)
        return result if isinstance(result, dict) else {}

    @property
    def pending(self) -> dict[str, Any]:
        return copy.deepcopy(self._status)

    def put_condition(self, ctype: str, message: str, *, at: str) -> None:
        """Argo CD's condition shape: replace any condition of ``ctype``; a condition with
        the same message stays as it is (with its time)."""
        current = [c for c in self.status.get("conditions") or [] if isinstance(c, dict)]
        if any(c.get("type") == ctype and c.get("message") == message for c in current):
            return
        kept = [c for c in current if c.get("type") != ctype]
        kept.append({"type": ctype, "message": message, "lastTransitionTime": at})
        self.update({"conditions": kept})

    def drop_conditions(self, *ctypes: str) -> None:
        """Clear the conditions of these types (their cause is gone)."""
        current = [c for c in self.status.get("conditions") or [] if isinstance(c, dict)]
        kept = [c for c in current if c.get("type") not in ctypes]
        if len(kept) != len(current):
            self.update({"conditions": kept or None})

    def rebase(self, obj: Obj) -> None:
        """Compare with (and compute conditions from) a fresher read of the object."""
        self.base = obj

    def discard(self) -> None:
        self._status = {}

    # -- sending ---------------------------------------------------------------------------

    def body(self) -> Obj | None:
        """The patch to send, or None when it would change nothing."""
        if not self._status:
            return None
        before = self.base.get("status") or {}
        if apply_merge_patch(before, self._status) == before:
            return None
        return {"status": copy.deepcopy(self._status)}

    async def send(self, kube: _Patcher) -> Obj | None:
        """Send the patch (at most once); the object as written, or None when unchanged."""
        body = self.body()
        self._status = {}
        if body is None:
            return None
        meta = self.base.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), meta.get("namespace")
        if self.subresource:
            written = await kube.merge_patch(
                self.api.api_version,
                self.api.kind,
                name,
                body,
                namespace=namespace,
                subresource="status",
            )
        else:
            written = await kube.merge_patch(
                self.api.api_version, self.api.kind, name, body, namespace=namespace
            )
        self.sent += 1
        self.base = written
        return written
