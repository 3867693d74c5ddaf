"""``ExternalSecret`` (``external-secrets.io/v1``, ``v1beta1``): values from a store into a
Secret, as ESO's controller does, with one fetch per (store, key, version) for everybody.

One pass:

1. read the spec (``externalsecret_spec``; ESO's defaults applied here); a bad spec is
   ``Ready=False`` ``SecretSyncedError`` and waits for a change;
2. decide whether to refresh, as ESO does: the spec or the object's labels/annotations
   changed since the last sync (``status.syncedResourceVersion`` = ``<generation>-<hash>``;
   ESO's ``force-sync`` annotation works through it and also bypasses the cache), the target
   Secret is missing or its data no longer matches ``reconcile.external-secrets.io/data-hash``,
   or the interval has passed (``Periodic``; ``0`` = once; ``CreatedOnce``; ``OnChange``);
3. resolve the store (a ClusterSecretStore must admit the namespace), fetch every
   ``data[]`` and ``dataFrom[]`` key through the shared ``FetchCache``, pick properties,
   decode, convert and rewrite keys, render the template;
4. write the Secret per ``creationPolicy`` (Owner: controller reference and
   ``reconcile.external-secrets.io/created-by``; Orphan; Merge: only into an existing Secret;
   None: nothing), ``immutable``, and the managed label and data-hash annotation;
5. when the data changed and a Deployment or StatefulSet of the namespace using that
   Secret is annotated ``gitsail.dev/restart-on-secret-change: "true"``, stamp its pod
   template with ``gitsail.dev/secret-hash-<secret>`` (a rollout);
6. one status patch: ``Ready`` (``SecretSynced`` / ``SecretSyncedError`` / ``SecretDeleted``
   / ``SecretMissing``), ``refreshTime``, ``syncedResourceVersion``, ``binding``; an Event
   (``Created``/``Updated``, or Warning ``UpdateFailed``).

A store that fails (down, refusing, a missing key) leaves the Secret exactly as it was:
``Ready=False`` says why, and the pass is retried with backoff. The next refresh is aligned
on the moment the shared cache last checked the object's keys (plus a little jitter), so the
objects reading one key refresh together and cost the store one check per interval.

No secret value reaches a log, an Event, the status, an error or a metric: messages name
keys and stores; every message is also scrubbed of the values fetched in the pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gitsail.kinds.errors import SpecError
from gitsail.kinds.externalsecret_spec import (
    DataFrom,
    ExternalSecretSpec,
    RemoteRef,
    parse_external_secret,
)
from gitsail.kinds.externalsecret_template import render_template
from gitsail.kinds.gotemplate import TemplateError
from gitsail.kube import KubeError
from gitsail.model import Obj
from gitsail.secrets.external.cache import CacheKey, FetchCache
from gitsail.secrets.external.provider import Provider, ProviderError, RemoteNotFound
from gitsail.secrets.external.values import (
    ValueProblem,
    convert_key,
    data_hash,
    decode,
    json_map,
    pick_property,
    rewrite_keys,
)

__all__ = [
    "ANNOTATION_DATA_HASH",
    "ANNOTATION_FORCE_SYNC",
    "ANNOTATION_RESTART",
    "KIND",
    "LABEL_MANAGED",
    "ExternalSecretReconciler",
    "ResolvedStore",
    "synced_resource_version",
]

log = logging.getLogger(__name__)

KIND = "ExternalSecret"
API_VERSION = "external-secrets.io/v1"
LABEL_MANAGED = "reconcile.external-secrets.io/managed"
LABEL_CREATED_BY = "reconcile.external-secrets.io/created-by"
ANNOTATION_DATA_HASH = "reconcile.external-secrets.io/data-hash"
ANNOTATION_FORCE_SYNC = "force-sync"  # any change of annotations forces a sync, as in ESO
ANNOTATION_RESTART = "gitsail.dev/restart-on-secret-change"
RESTART_STAMP = "gitsail.dev/secret-hash-"
READY = "Ready"
MSG_ERROR = "could not get secret data from provider"
BACKOFF = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIELD_MANAGER = "externalsecrets.external-secrets.io"


class ESClient(Protocol):
    """The part of ``gitsail.kube.Kube`` the reconciler uses."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]: ...

    async def create(self, obj: Obj) -> Obj: ...

    async def replace(self, obj: Obj) -> Obj: ...

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool: ...

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


@dataclass(frozen=True)
class ResolvedStore:
    """A store as one ExternalSecret reads through it: its identity for the cache (kind,
    namespace, name, config digest) and its client."""

    identity: Hashable
    provider: Provider


# (store kind, store name, reader namespace) -> the resolved store; raises ProviderError
StoreResolver = Callable[[str, str, str], Awaitable[ResolvedStore]]
EventSink = Callable[[Obj, str, str, str], Awaitable[None]]  # obj, type, reason, message


@dataclass
class Outcome:
    """What one pass did, for metrics and tests."""

    synced: bool = False
    error: str = ""
    reason: str = ""
    written: str = ""  # "", "Created", "Updated", "Deleted"
    restarted: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def _meta_hash(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    text = json.dumps(
        {"annotations": meta.get("annotations") or {}, "labels": meta.get("labels") or {}},
        sort_keys=True,
    )
    return hashlib.sha3_224(text.encode()).hexdigest()


def synced_resource_version(obj: Obj) -> str:
    """``<generation>-<hash of labels and annotations>``, as ESO records it."""
    generation = (obj.get("metadata") or {}).get("generation") or 0
    return f"{generation}-{_meta_hash(obj)}"


def _created_by(namespace: str, name: str) -> str:
    return hashlib.sha3_224(f"{namespace}/{name}".encode()).hexdigest()


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _scrub(message: str, values: Mapping[str, bytes]) -> str:
    """The message with every fetched value of four characters or more masked."""
    for value in sorted(values.values(), key=len, reverse=True):
        text = value.decode(errors="ignore")
        if len(text) >= 4 and text in message:
            message = message.replace(text, "***")
    return message


class _NoData(Exception):
    """Every key the spec asks for is missing in the store."""


class ExternalSecretReconciler:
    """Reconciles one ExternalSecret per call; see the module docstring."""

    def __init__(
        self,
        kube: ESClient,
        stores: StoreResolver,
        cache: FetchCache,
        *,
        events: EventSink | None = None,
        clock: Callable[[], datetime] = _now,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: float = 0.1,
        max_jitter: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.kube = kube
        self.stores = stores
        self.cache = cache
        self.events = events
        self.clock = clock
        self.monotonic = monotonic
        self.jitter = jitter
        self.max_jitter = max_jitter
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.failures: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], Outcome] = {}

    # -- the pass ----------------------------------------------------------------------------

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        meta = obj.get("metadata") or {}
        ident = (str(meta.get("namespace")), str(meta.get("name")))
        if meta.get("deletionTimestamp"):
            return None  # an owned Secret goes with it (garbage collection)
        status = obj.get("status") or {}
        now = self.clock()
        try:
            spec = parse_external_secret(obj)
        except SpecError as exc:
            await self._finish(obj, None, Outcome(error=str(exc), reason="SecretSyncedError"), now)
            return None
        rv = synced_resource_version(obj)
        previous_rv = str(status.get("syncedResourceVersion") or "")
        refreshed_at = _parse_time(status.get("refreshTime"))
        changed = previous_rv != rv
        forced = changed and previous_rv.split("-", 1)[0] == rv.split("-", 1)[0]
        due = self._due(spec, refreshed_at, now.timestamp(), changed)
        if not due and await self._target_valid(spec):
            if spec.refresh_policy != "Periodic" or spec.refresh_interval <= 0:
                return None
            if refreshed_at is None:  # not due means it synced once; be safe anyway
                return spec.refresh_interval
            return max(1.0, refreshed_at + spec.refresh_interval - now.timestamp())
        outcome = Outcome()
        values: dict[str, bytes] = {}
        oldest_check: float | None = None
        try:
            store = await self.stores(spec.store_kind, spec.store_name, spec.namespace)
            values, oldest_check = await self._fetch(spec, store, forced)
            data = self._render(spec, values)
            await self._write(obj, spec, data, outcome)
            outcome.synced = True
        except _NoData:
            await self._no_data(obj, spec, outcome)
        except (ProviderError, ValueProblem, TemplateError, _Refused) as exc:
            outcome.error = f"{MSG_ERROR}: {exc}" if isinstance(exc, ProviderError) else str(exc)
            outcome.reason = outcome.reason or "SecretSyncedError"
        except KubeError as exc:
            outcome.error = f"cannot write Secret {spec.namespace}/{spec.target_name}: {exc}"
            outcome.reason = "SecretSyncedError"
        outcome.error = _scrub(outcome.error, values)
        self.last[ident] = outcome
        await self._finish(obj, spec, outcome, now, rv=rv)
        if outcome.error:
            n = self.failures.get(ident, 0)
            self.failures[ident] = n + 1
            delay = BACKOFF[min(n, len(BACKOFF) - 1)]
            if spec.refresh_interval > 0:
                delay = min(delay, spec.refresh_interval)
            return delay
        self.failures.pop(ident, None)
        if spec.refresh_policy != "Periodic" or spec.refresh_interval <= 0:
            return None
        return self._next(spec.refresh_interval, oldest_check)

    def _due(
        self, spec: ExternalSecretSpec, refreshed_at: float | None, now: float, changed: bool
    ) -> bool:
        if spec.refresh_policy == "CreatedOnce":
            return refreshed_at is None
        if changed or refreshed_at is None:
            return True
        if spec.refresh_policy == "OnChange" or spec.refresh_interval <= 0:
            return False
        # Refreshes are aligned on the shared cache's checks, up to one jitter spread early;
        # refreshTime has whole seconds. Within that allowance the pass is due.
        allowance = min(spec.refresh_interval * self.jitter, self.max_jitter) + 1.0
        return refreshed_at > now or refreshed_at + spec.refresh_interval - allowance <= now

    def _next(self, interval: float, oldest_check: float | None) -> float:
        """Seconds to the next refresh: one interval after the oldest cache check of this
        object's keys, plus jitter (so objects sharing keys refresh together, one checks)."""
        spread = self.rng.uniform(0, min(interval * self.jitter, self.max_jitter))
        if oldest_check is None:
            return max(1.0, interval - spread)
        return max(1.0, oldest_check + interval - self.monotonic() + spread)

    async def _target_valid(self, spec: ExternalSecretSpec) -> bool:
        if spec.creation in ("None", "Orphan"):
            return True
        secret = await self.kube.get("v1", "Secret", spec.target_name, spec.namespace)
        if secret is None:
            return False
        meta = secret.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL_MANAGED) != "true":
            return spec.creation == "Merge"
        return (meta.get("annotations") or {}).get(ANNOTATION_DATA_HASH) == data_hash(
            _decoded(secret)
        )

    # -- fetching ----------------------------------------------------------------------------

    async def _get(
        self, store: ResolvedStore, ref: RemoteRef, max_age: float, force: bool
    ) -> tuple[bytes, float]:
        key = CacheKey(store.identity, ref.key, ref.version, ref.metadata)
        remote = await self.cache.get(key, store.provider, max_age=max_age, force=force)
        return remote.value, self.cache.checked(key)

    async def _fetch(
        self, spec: ExternalSecretSpec, store: ResolvedStore, force: bool
    ) -> tuple[dict[str, bytes], float | None]:
        max_age = spec.refresh_interval if spec.refresh_interval > 0 else 3600.0
        out: dict[str, bytes] = {}
        checks: list[float] = []
        checked: float | None
        missing = 0
        for item in spec.data:
            try:
                raw, checked = await self._get(store, item.ref, max_age, force)
            except RemoteNotFound:
                missing += 1
                continue
            checks.append(checked)
            value = (
                pick_property(raw, item.ref.property, key=item.ref.key)
                if item.ref.property
                else raw
            )
            out[item.secret_key] = decode(value, item.ref.decoding, key=item.ref.key)
        for source in spec.data_from:
            try:
                found, checked = await self._from(store, source, max_age, force)
            except RemoteNotFound:
                missing += 1
                continue
            if checked is not None:
                checks.append(checked)
            out.update(found)
        wanted = len(spec.data) + len(spec.data_from)
        if wanted and missing == wanted:
            raise _NoData()
        if missing:
            raise ProviderError(
                f"{missing} of {wanted} keys not found in the store", reason="NotFound"
            )
        return out, (min(checks) if checks else None)

    async def _from(
        self, store: ResolvedStore, source: DataFrom, max_age: float, force: bool
    ) -> tuple[dict[str, bytes], float | None]:
        checked: float | None = None
        if source.extract is not None:
            ref = source.extract
            raw, checked = await self._get(store, ref, max_age, force)
            if ref.property:
                raw = pick_property(raw, ref.property, key=ref.key)
            entries = json_map(raw, key=ref.key)
        else:
            if source.find is None:
                raise ValueProblem("dataFrom needs extract or find")
            found = await store.provider.find(source.find)
            entries = {}
            for name, raw in found.items():
                entries[name.replace("/", "_")] = raw
        decoded = {k: decode(v, source.decoding, key=k) for k, v in entries.items()}
        for i, rw in enumerate(source.rewrite):
            where = f"dataFrom rewrite[{i}]"
            if rw.template:
                decoded = {
                    k: render_template(rw.template, {"value": v}, where=where)
                    for k, v in decoded.items()
                }
            else:
                decoded = rewrite_keys(decoded, rw.source, rw.target, where=where)
        return {convert_key(k, source.conversion): v for k, v in decoded.items()}, checked

    @staticmethod
    def _render(spec: ExternalSecretSpec, values: dict[str, bytes]) -> dict[str, bytes]:
        if spec.template is None or not spec.template.data:
            return values
        rendered = {
            k: render_template(text, values, where=f"spec.target.template.data.{k}")
            for k, text in spec.template.data
        }
        if spec.template.merge_policy == "Merge":
            return {**values, **rendered}
        return rendered

    # -- writing -----------------------------------------------------------------------------

    def _desired(self, obj: Obj, spec: ExternalSecretSpec, data: dict[str, bytes]) -> Obj:
        meta = obj.get("metadata") or {}
        labels = {LABEL_MANAGED: "true"}
        annotations = {ANNOTATION_DATA_HASH: data_hash(data)}
        if spec.template is not None:
            labels = {**dict(spec.template.labels), **labels}
            annotations = {**dict(spec.template.annotations), **annotations}
        smeta: dict[str, Any] = {
            "name": spec.target_name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": annotations,
        }
        if spec.creation == "Owner":
            labels[LABEL_CREATED_BY] = _created_by(spec.namespace, spec.name)
            smeta["ownerReferences"] = [
                {
                    "apiVersion": str(obj.get("apiVersion") or API_VERSION),
                    "kind": KIND,
                    "name": spec.name,
                    "uid": str(meta.get("uid") or ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": smeta,
            "type": (spec.template.type if spec.template and spec.template.type else "Opaque"),
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())},
        }
        if spec.immutable:
            secret["immutable"] = True
        return secret

    async def _write(
        self, obj: Obj, spec: ExternalSecretSpec, data: dict[str, bytes], outcome: Outcome
    ) -> None:
        if spec.creation == "None":
            return
        desired = self._desired(obj, spec, data)
        existing = await self.kube.get("v1", "Secret", spec.target_name, spec.namespace)
        if existing is None:
            if spec.creation == "Merge":
                outcome.reason = "SecretMissing"
                raise _Refused("secret will not be created due to CreationPolicy=Merge")
            await self.kube.create(desired)
            outcome.written = "Created"
            return
        updated = self._merged(obj, spec, existing, desired)
        if updated == existing:
            return
        if existing.get("immutable") and existing.get("data") != updated.get("data"):
            raise _Refused(
                f"Secret {spec.namespace}/{spec.target_name} is immutable and its data changed; "
                "delete it to let a new one be created"
            )
        await self.kube.replace(updated)
        outcome.written = "Updated"
        if _decoded(existing) != data or spec.creation == "Merge":
            before = data_hash(_decoded(existing))
            after = data_hash(_decoded(updated))
            if before != after:
                outcome.restarted = await self._restart(spec, after)

    def _merged(self, obj: Obj, spec: ExternalSecretSpec, existing: Obj, desired: Obj) -> Obj:
        uid = (obj.get("metadata") or {}).get("uid")
        emeta = existing.get("metadata") or {}
        owners = emeta.get("ownerReferences") or []
        other = [r for r in owners if r.get("controller") and r.get("uid") != uid]
        if other and spec.creation == "Owner":
            ref = other[0]
            raise _Refused(
                f"Secret {spec.namespace}/{spec.target_name} is controlled by "
                f"{ref.get('kind')} {ref.get('name')}, not by this ExternalSecret"
            )
        updated: Obj = json.loads(json.dumps(existing))
        umeta = updated.setdefault("metadata", {})
        dmeta = desired["metadata"]
        if spec.creation == "Merge":
            merged = {**(existing.get("data") or {}), **desired["data"]}
            updated["data"] = merged
            umeta["labels"] = {
                **(emeta.get("labels") or {}),
                **dict(spec.template.labels if spec.template else ()),
            }
            annotations = {
                **(emeta.get("annotations") or {}),
                **dict(spec.template.annotations if spec.template else ()),
            }
            annotations[ANNOTATION_DATA_HASH] = data_hash(_decoded(updated))
            umeta["annotations"] = annotations
            return updated
        updated["data"] = desired["data"]
        updated["type"] = existing.get("type") or desired["type"]
        if spec.template is not None and spec.template.type:
            updated["type"] = desired["type"]
        umeta["labels"] = {**(emeta.get("labels") or {}), **dmeta["labels"]}
        umeta["annotations"] = {**(emeta.get("annotations") or {}), **dmeta["annotations"]}
        if "ownerReferences" in dmeta:
            keep = [r for r in owners if not r.get("controller")]
            umeta["ownerReferences"] = keep + dmeta["ownerReferences"]
        if desired.get("immutable"):
            updated["immutable"] = True
        return updated

    async def _no_data(self, obj: Obj, spec: ExternalSecretSpec, outcome: Outcome) -> None:
        if spec.deletion == "Delete":
            if spec.creation != "Owner":
                outcome.error = "deletionPolicy Delete needs creationPolicy Owner"
                outcome.reason = "SecretSyncedError"
                return
            existing = await self.kube.get("v1", "Secret", spec.target_name, spec.namespace)
            if existing is not None and _controlled(existing, obj):
                await self.kube.delete("v1", "Secret", spec.target_name, spec.namespace)
                outcome.written = "Deleted"
            outcome.synced = True
            outcome.reason = "SecretDeleted"
            return
        if spec.deletion == "Merge":
            existing = await self.kube.get("v1", "Secret", spec.target_name, spec.namespace)
            if existing is not None:
                managed = {i.secret_key for i in spec.data}
                data = {k: v for k, v in (existing.get("data") or {}).items() if k not in managed}
                if data != (existing.get("data") or {}):
                    updated = {**existing, "data": data}
                    await self.kube.replace(updated)
                    outcome.written = "Updated"
            outcome.synced = True
            return
        outcome.synced = True
        outcome.reason = "SecretRetained"

    async def _restart(self, spec: ExternalSecretSpec, digest: str) -> list[str]:
        """Stamp the pod templates of annotated workloads that use the Secret."""
        restarted = []
        for kind in ("Deployment", "StatefulSet"):
            try:
                items = await self.kube.list("apps/v1", kind, spec.namespace)
            except KubeError as exc:
                log.warning("listing %ss in %s for a restart: %s", kind, spec.namespace, exc)
                continue
            for item in items:
                meta = item.get("metadata") or {}
                if (meta.get("annotations") or {}).get(ANNOTATION_RESTART) != "true":
                    continue
                pod = ((item.get("spec") or {}).get("template") or {}).get("spec") or {}
                if spec.target_name not in secrets_used(pod):
                    continue
                stamp = f"{RESTART_STAMP}{spec.target_name}"[:63]
                try:
                    await self.kube.merge_patch(
                        "apps/v1",
                        kind,
                        str(meta.get("name")),
                        {"spec": {"template": {"metadata": {"annotations": {stamp: digest[:16]}}}}},
                        namespace=spec.namespace,
                        field_manager="gitsail-externalsecrets",
                    )
                    restarted.append(f"{kind} {meta.get('name')}")
                except KubeError as exc:
                    log.warning(
                        "restarting %s %s/%s: %s", kind, spec.namespace, meta.get("name"), exc
                    )
        return restarted

    # -- status ------------------------------------------------------------------------------

    async def _finish(
        self,
        obj: Obj,
        spec: ExternalSecretSpec | None,
        outcome: Outcome,
        now: datetime,
        *,
        rv: str | None = None,
    ) -> None:
        meta = obj.get("metadata") or {}
        old = obj.get("status") or {}
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if outcome.error:
            status_value, reason, message = (
                "False",
                outcome.reason or "SecretSyncedError",
                outcome.error,
            )
        elif outcome.reason == "SecretDeleted":
            status_value, reason, message = (
                "False",
                "SecretDeleted",
                "secret deleted due to DeletionPolicy=Delete",
            )
        elif outcome.reason == "SecretRetained":
            status_value, reason, message = (
                "True",
                "SecretSynced",
                "secret retained due to DeletionPolicy=Retain",
            )
        else:
            status_value, reason, message = "True", "SecretSynced", "secret synced"
        if outcome.reason == "SecretMissing":
            status_value, reason = "False", "SecretMissing"
        previous = next(
            (
                c
                for c in old.get("conditions") or []
                if isinstance(c, dict) and c.get("type") == READY
            ),
            {},
        )
        condition = {
            "type": READY,
            "status": status_value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": (
                previous.get("lastTransitionTime")
                if previous.get("status") == status_value and previous.get("lastTransitionTime")
                else stamp
            ),
        }
        status: dict[str, Any] = {**old, "conditions": [condition]}
        if outcome.synced and rv is not None:
            status["refreshTime"] = stamp
            status["syncedResourceVersion"] = rv
        if spec is not None and spec.creation != "None":
            status["binding"] = {"name": spec.target_name}
        if status != old:
            await self.kube.merge_patch(
                str(obj.get("apiVersion") or API_VERSION),
                KIND,
                str(meta.get("name")),
                {"status": status},
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=FIELD_MANAGER,
            )
        if self.events is None:
            return
        if outcome.error:
            await self.events(obj, "Warning", "UpdateFailed", message)
        elif outcome.written:
            await self.events(
                obj,
                "Normal",
                outcome.written,
                f"{outcome.written} Secret {spec.target_name if spec else ''}",
            )
        for workload in outcome.restarted:
            await self.events(
                obj, "Normal", "RolloutRestart", f"restarted {workload}: Secret data changed"
            )


class _Refused(Exception):
    """A write gitsail refuses (the message says why); the Secret is left as it is."""


def _controlled(secret: Obj, owner: Obj) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(r.get("controller") and r.get("uid") == uid for r in refs)


def _decoded(secret: Obj) -> dict[str, bytes]:
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(str(v))
        except ValueError:
            out[str(k)] = b""
    return out


def secrets_used(pod: Mapping[str, Any]) -> set[str]:
    """The Secret names a pod spec reads: env, envFrom, volumes (incl. projected)."""
    names: set[str] = set()
    containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
    for c in containers:
        for env in c.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref:
                names.add(str(ref))
        for env in c.get("envFrom") or []:
            ref = (env.get("secretRef") or {}).get("name")
            if ref:
                names.add(str(ref))
    for volume in pod.get("volumes") or []:
        ref = (volume.get("secret") or {}).get("secretName")
        if ref:
            names.add(str(ref))
        for source in (volume.get("projected") or {}).get("sources") or []:
            ref = (source.get("secret") or {}).get("name")
            if ref:
                names.add(str(ref))
    return names
