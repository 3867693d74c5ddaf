"""Bitnami's ``SealedSecret`` (``bitnami.com/v1alpha1``): unseal it into the Secret it owns.

What one pass does, as the Bitnami controller does it (``docs/secrets.md``):

1. decrypt ``spec.encryptedData`` (or the legacy ``spec.data`` blob) with every active key,
   under the label of the SealedSecret's *own* name, namespace and scope annotations; render
   ``spec.template.data``; when no key fits, list the keys again once (one may just have
   been added) before failing with ``no key could decrypt secret``;
2. GET the Secret of the same name: create it when absent; refuse, leaving it untouched, when
   it is neither controlled by this SealedSecret nor annotated
   ``sealedsecrets.bitnami.com/managed: "true"`` or ``patch: "true"``; otherwise replace its
   data, labels, annotations and owner reference (``patch``: merge data, labels and
   annotations, and take ownership only when also ``managed``); ``type`` is always set;
   nothing is written when nothing changes;
3. write ``status`` in one merge patch: ``observedGeneration`` and the ``Synced`` condition
   (``lastTransitionTime`` moves only when its status flips; nothing is written when the
   status is unchanged), and an Event on failure (``ErrUnsealFailed``/``ErrUpdateFailed``)
   or on a Secret written (``Unsealed``).

Secret values never reach a log, an event, the status or an error: messages name the
object and the key, and the errors raised by the crypto layer carry no plaintext.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from gitsail.kube import KubeError
from gitsail.model import Obj
from gitsail.secrets.keys import KeyRing
from gitsail.secrets.sealedsecret import (
    ANNOTATION_MANAGED,
    ANNOTATION_PATCH,
    API_VERSION,
    KIND,
    unseal,
)
from gitsail.secrets.sealing import DecryptError, SealingError

__all__ = [
    "API_VERSION",
    "KIND",
    "RETRY_AFTER",
    "SealedSecretReconciler",
    "synced_status",
]

RETRY_AFTER = 30.0
SYNCED = "Synced"


class SecretClient(Protocol):
    """The part of ``gitsail.kube.Kube`` the reconciler uses."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    async def create(self, obj: Obj) -> Obj: ...

    async def replace(self, obj: Obj) -> Obj: ...

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj: ...


KeyRingSource = Callable[[bool], Awaitable[KeyRing]]  # fresh -> the active keys
EventSink = Callable[[Obj, str, str, str], Awaitable[None]]  # obj, type, reason, message


class _Unmanaged(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def synced_status(
    obj: Obj, error: str | None, now: str, *, generation: int | None
) -> dict[str, Any]:
    """The status of a pass: ``observedGeneration`` and the ``Synced`` condition."""
    current = [
        c
        for c in ((obj.get("status") or {}).get("conditions") or [])
        if isinstance(c, dict) and c.get("type") == SYNCED
    ]
    previous = current[0] if current else {}
    status = "False" if error else "True"
    message = error or ""
    same = previous.get("status") == status and (previous.get("message") or "") == message
    condition: dict[str, Any] = {
        "type": SYNCED,
        "status": status,
        "lastUpdateTime": previous.get("lastUpdateTime") if same else now,
        "lastTransitionTime": (
            previous.get("lastTransitionTime") if previous.get("status") == status else now
        ),
    }
    if message:
        condition["message"] = message
    out: dict[str, Any] = {"conditions": [condition]}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


class SealedSecretReconciler:
    """Reconciles one SealedSecret per call; see the module docstring.

    ``keys(fresh)`` gives the active keys (``KeyStore.ring``); ``events`` records an Event.
    The result: ``resync`` seconds after success (a deleted Secret is recreated then),
    ``RETRY_AFTER`` after an API failure, ``None`` when only a new spec or key can help.
    """

    api_version = API_VERSION
    kind = KIND

    def __init__(
        self,
        kube: SecretClient,
        keys: KeyRingSource,
        *,
        events: EventSink | None = None,
        clock: Callable[[], datetime] = _now,
        field_manager: str = "gitsail",
        accept_v1_data: bool = True,
        resync: float | None = 600.0,
    ) -> None:
        self.kube = kube
        self.keys = keys
        self.events = events
        self.clock = clock
        self.field_manager = field_manager
        self.accept_v1_data = accept_v1_data
        self.resync = resync

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # the Secret goes with it (garbage collection of the owner ref)
        error: str | None = None
        event: tuple[str, str, str] | None = None
        delay = self.resync
        try:
            secret = await self._unseal(obj)
        except SealingError as exc:
            error = str(exc)
            event = ("Warning", "ErrUnsealFailed", f"Failed to unseal: {exc}")
            delay = None
        else:
            try:
                written = await self._write(obj, secret)
            except _Unmanaged as exc:
                error = str(exc)
                event = ("Warning", "ErrUpdateFailed", error)
                delay = None
            except KubeError as exc:
                error = f"cannot write Secret {meta.get('namespace')}/{meta.get('name')}: {exc}"
                event = ("Warning", "ErrUpdateFailed", error)
                delay = RETRY_AFTER
            else:
                if written:
                    event = ("Normal", "Unsealed", "SealedSecret unsealed successfully")
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = meta.get("generation")
        status = synced_status(obj, error, now, generation=generation)
        if (obj.get("status") or {}) != status:
            await self.kube.merge_patch(
                API_VERSION,
                KIND,
                str(meta.get("name")),
                {"status": status},
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=self.field_manager,
            )
        if event is not None and self.events is not None:
            await self.events(obj, *event)
        return delay

    async def _unseal(self, obj: Obj) -> Obj:
        ring = await self.keys(False)
        try:
            return unseal(obj, ring.private_keys(), accept_v1_data=self.accept_v1_data)
        except DecryptError:
            ring = await self.keys(True)  # a key may have been added since the last list
            return unseal(obj, ring.private_keys(), accept_v1_data=self.accept_v1_data)

    async def _write(self, obj: Obj, secret: Obj) -> bool:
        """Create or update the Secret; True when something was written."""
        meta = secret["metadata"]
        existing = await self.kube.get("v1", "Secret", meta["name"], meta["namespace"])
        if existing is None:
            await self.kube.create(secret)
            return True
        updated = merged_secret(obj, existing, secret)
        if updated == existing:
            return False
        await self.kube.replace(updated)
        return True


def _controlled_by(secret: Obj, owner: Obj) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs: Sequence[dict[str, Any]] = (secret.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == uid and uid for r in refs)


def merged_secret(owner: Obj, existing: Obj, desired: Obj) -> Obj:
    """The existing Secret updated as the Bitnami controller does (module docstring, step 2)."""
    meta = existing.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    managed = annotations.get(ANNOTATION_MANAGED) == "true"
    patch = annotations.get(ANNOTATION_PATCH) == "true"
    if not (_controlled_by(existing, owner) or managed or patch):
        raise _Unmanaged(
            f'Resource "{meta.get("name")}" already exists and is not managed by SealedSecret'
        )
    updated = copy.deepcopy(existing)
    umeta = updated.setdefault("metadata", {})
    dmeta = desired.get("metadata") or {}
    if patch:
        updated["data"] = {**(existing.get("data") or {}), **(desired.get("data") or {})}
        for field in ("labels", "annotations"):
            merged = {**(meta.get(field) or {}), **(dmeta.get(field) or {})}
            if merged:
                umeta[field] = merged
        if managed and dmeta.get("ownerReferences"):
            umeta["ownerReferences"] = dmeta["ownerReferences"]
    else:
        updated["data"] = desired.get("data") or {}
        for field in ("labels", "annotations", "ownerReferences"):
            if dmeta.get(field):
                umeta[field] = dmeta[field]
            else:
                umeta.pop(field, None)
    updated["type"] = desired.get("type") or "Opaque"
    if "immutable" in desired:
        updated["immutable"] = desired["immutable"]
    updated.pop("stringData", None)
    return updated
