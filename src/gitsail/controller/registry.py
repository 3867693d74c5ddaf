"""The kinds the controller reconciles: one reconciler per API kind, keyed work, dependencies.

A ``KindReconciler`` is what the controller needs to know about one API kind (an Argo CD
``Application``, a Flux ``GitRepository`` or ``Kustomization``, ...):

- ``api``: the ``apiVersion`` and ``kind`` it watches (one watch cache per watched
  namespace);
- ``reconcile(obj, reasons)``: converge one object; returns the seconds until it should run
  again (``None``: only when something happens). It may raise ``Transient`` (retried with
  backoff, or after ``retry_after``) or ``Stalled`` (not retried: a spec or source change
  wakes it) from ``gitsail.kinds.status``; anything else is retried with backoff too;
- ``finalize(obj)``: an object being deleted (``deletionTimestamp`` set); same return;
- ``forget(key)``: the object is gone, drop what is remembered about it;
- ``keys_for_managed(obj)``: the objects of this kind that own a managed object (from the
  marks ``gitsail.sync.ownership.owners_of`` reads), so a change to a Deployment wakes the
  Application or the Kustomization that applied it;
- ``wakes(old, new)``: whether an update of one of its own objects is news (its own status
  write is not: a status that changes on every reconcile would loop);
- ``ready(obj)``: whether the object counts as Ready for objects that depend on it.

``KindDefaults`` gives every method but ``api`` and ``reconcile`` a default (no finalizer,
owners by the kind's name, kstatus ``Ready``), so a kind writes only what differs.

Work is keyed by ``ObjectKey(kind, namespace, name)``; kind names are unique in a registry
(the kinds gitsail serves do not collide).

Dependencies of any kind on any kind (Flux ``dependsOn``, a Kustomization waiting for an
Application) go through ``DependencyIndex``: a reconciler says "``dependent`` waits for
``on``" (``KindRegistry.depends_on``) and the controller, seeing ``on`` become Ready, wakes
``dependent`` at once instead of at its next retry. The index is the reverse of what each
dependent declared, replaced whole on every declaration, so a dependency removed from a
spec stops waking it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from gitsail import codec
from gitsail.kinds.status import READY
from gitsail.model import Obj
from gitsail.sync.ownership import ArgoTracking, FluxLabels, owners_of

if TYPE_CHECKING:
    from gitsail.app.engine import AppEngine
    from gitsail.controller.events import EventRecorder
    from gitsail.controller.metrics import Metrics
    from gitsail.controller.reconciler import ReconcileSettings
    from gitsail.kube import Kube, WatchCache
    from gitsail.source.artifacts import ArtifactStore

__all__ = [
    "DependencyIndex",
    "KindAPI",
    "KindContext",
    "KindDefaults",
    "KindFactory",
    "KindReconciler",
    "KindRegistry",
    "ObjectKey",
    "SharedCache",
    "kstatus_ready",
    "own_status_write",
    "owner_keys",
]

log = logging.getLogger(__name__)

APPLICATION = "Application"
KUSTOMIZATION = "Kustomization"


class ObjectKey(NamedTuple):
    """One object the controller reconciles: its kind, namespace and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Obj) -> ObjectKey:
        meta = obj.get("metadata") or {}
        return cls(
            str(obj.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name"))
        )


@dataclass(frozen=True)
class KindAPI:
    """The API a reconciler watches: ``argoproj.io/v1alpha1`` ``Application``."""

    api_version: str
    kind: str


@runtime_checkable
class KindReconciler(Protocol):
    """One API kind's reconciler, as the controller drives it (see the module docstring)."""

    @property
    def api(self) -> KindAPI: ...

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None: ...

    async def finalize(self, obj: Obj) -> float | None: ...

    def forget(self, key: ObjectKey) -> None: ...

    def keys_for_managed(self, obj: Obj) -> list[ObjectKey]: ...

    def wakes(self, old: Obj, new: Obj) -> bool: ...

    def ready(self, obj: Obj) -> bool: ...


class KindDefaults:
    """Defaults for a ``KindReconciler``: subclass and set ``api`` and ``field_manager``."""

    api: KindAPI
    field_manager: str = "gitsail"
    control_namespace: str = "argocd"

    async def finalize(self, obj: Obj) -> float | None:
        return None  # no finalizer: nothing to do before the object goes

    def forget(self, key: ObjectKey) -> None:
        return None

    def keys_for_managed(self, obj: Obj) -> list[ObjectKey]:
        return [k for k in owner_keys(obj, self.control_namespace) if k.kind == self.api.kind]

    def wakes(self, old: Obj, new: Obj) -> bool:
        return not own_status_write(old, new, self.field_manager)

    def ready(self, obj: Obj) -> bool:
        return kstatus_ready(obj)


def owner_keys(obj: Obj, control_namespace: str) -> list[ObjectKey]:
    """The objects whose marks ``obj`` carries: an Argo CD tracking id names an
    ``Application`` (``ns_name`` outside the control namespace), Flux's owner labels a
    ``Kustomization``."""
    keys: list[ObjectKey] = []
    for owner in owners_of(obj):
        if isinstance(owner, ArgoTracking):
            namespace, sep, name = owner.app.partition("_")
            if not sep:
                namespace, name = control_namespace, owner.app
            keys.append(ObjectKey(APPLICATION, namespace, name))
        elif isinstance(owner, FluxLabels):
            keys.append(ObjectKey(KUSTOMIZATION, owner.namespace, owner.name))
    return keys


def kstatus_ready(obj: Obj) -> bool:
    """``Ready=True`` for the object's current generation, as kstatus reads it."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    for condition in status.get("conditions") or []:
        if not isinstance(condition, dict) or condition.get("type") != READY:
            continue
        if condition.get("status") != "True":
            return False
        seen = condition.get("observedGeneration", observed)
        return generation is None or seen is None or seen == generation
    return False


# -- the predicate for own status writes -------------------------------------------------


def own_status_write(old: Obj, new: Obj, manager: str) -> bool:
    """Whether ``new`` differs from ``old`` only by a status write of ``manager``.

    Only ``status`` and the fields the server moves with any write (``resourceVersion``,
    ``generation``, ``managedFields``) may differ, and every ``managedFields`` entry that
    changed must be ``manager``'s: a status written by anyone else (a user, another tool)
    still wakes the object. Works with and without a ``/status`` subresource.
    """
    if _without_status(old) != _without_status(new):
        return False
    before = _managers(old)
    return all(m[0] == manager for m, entry in _managers(new).items() if before.get(m) != entry)


def _without_status(obj: Obj) -> Obj:
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("resourceVersion", "generation", "managedFields")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _managers(obj: Obj) -> dict[tuple[str, str, str, str], str]:
    """managedFields entries by (manager, operation, subresource, apiVersion)."""
    entries: dict[tuple[str, str, str, str], str] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, dict):
            continue
        key = (
            str(entry.get("manager") or ""),
            str(entry.get("operation") or ""),
            str(entry.get("subresource") or ""),
            str(entry.get("apiVersion") or ""),
        )
        entries[key] = codec.digest([entry.get("time"), entry.get("fieldsV1")])
    return entries


# -- dependencies ------------------------------------------------------------------------


class DependencyIndex:
    """Who waits for whom: ``declare(b, [a])`` then ``waiting_for(a) == {b}``."""

    def __init__(self) -> None:
        self._on: dict[ObjectKey, frozenset[ObjectKey]] = {}  # dependent -> what it waits for
        self._waiting: dict[ObjectKey, set[ObjectKey]] = {}  # dependency -> its dependents

    def declare(self, dependent: ObjectKey, on: Iterable[ObjectKey]) -> None:
        """``dependent`` now waits for exactly ``on`` (what it declared before is replaced)."""
        wanted = frozenset(k for k in on if k != dependent)
        self._drop(dependent)
        if wanted:
            self._on[dependent] = wanted
            for key in wanted:
                self._waiting.setdefault(key, set()).add(dependent)

    def forget(self, dependent: ObjectKey) -> None:
        """``dependent`` is gone or waits for nothing any more."""
        self._drop(dependent)

    def waiting_for(self, key: ObjectKey) -> frozenset[ObjectKey]:
        """The objects that declared they wait for ``key``."""
        return frozenset(self._waiting.get(key, ()))

    def dependencies(self, dependent: ObjectKey) -> frozenset[ObjectKey]:
        return self._on.get(dependent, frozenset())

    def __len__(self) -> int:
        return len(self._on)

    def _drop(self, dependent: ObjectKey) -> None:
        for key in self._on.pop(dependent, frozenset()):
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(dependent)
                if not waiting:
                    del self._waiting[key]


# -- the registry ------------------------------------------------------------------------


class KindRegistry:
    """The reconcilers of one controller, by kind, and the dependencies between objects."""

    def __init__(self, reconcilers: Iterable[KindReconciler] = ()) -> None:
        self._by_kind: dict[str, KindReconciler] = {}
        self.dependencies = DependencyIndex()
        for reconciler in reconcilers:
            self.register(reconciler)

    def register(self, reconciler: KindReconciler) -> None:
        kind = reconciler.api.kind
        if kind in self._by_kind:
            raise ValueError(f"two reconcilers for the kind {kind!r}: one kind, one reconciler")
        self._by_kind[kind] = reconciler

    def __getitem__(self, kind: str) -> KindReconciler:
        return self._by_kind[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __iter__(self) -> Iterator[KindReconciler]:
        return iter(self._by_kind.values())

    def __len__(self) -> int:
        return len(self._by_kind)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)

    def keys_for_managed(self, obj: Obj) -> list[ObjectKey]:
        """Every registered object that owns the managed object ``obj``."""
        keys: list[ObjectKey] = []
        for reconciler in self._by_kind.values():
            keys += [k for k in reconciler.keys_for_managed(obj) if k not in keys]
        return keys

    def depends_on(self, dependent: ObjectKey, on: Iterable[ObjectKey]) -> None:
        """Wake ``dependent`` when any of ``on`` becomes Ready (replaces what it said)."""
        self.dependencies.declare(dependent, on)

    def forget(self, key: ObjectKey) -> None:
        """``key`` is gone: its reconciler forgets it, and it waits for nothing."""
        self.dependencies.forget(key)
        reconciler = self._by_kind.get(key.kind)
        if reconciler is not None:
            reconciler.forget(key)

    def became_ready(self, key: ObjectKey, old: Obj | None, new: Obj) -> frozenset[ObjectKey]:
        """The dependents to wake because ``key`` went from not Ready to Ready, or, Ready,
        published a new artifact (a source's consumers build the new revision at once)."""
        reconciler = self._by_kind.get(key.kind)
        if reconciler is None or not reconciler.ready(new):
            return frozenset()
        if old is not None and reconciler.ready(old) and _artifact(old) == _artifact(new):
            return frozenset()
        return self.dependencies.waiting_for(key)


def _artifact(obj: Obj) -> object:
    artifact = (obj.get("status") or {}).get("artifact")
    return (
        artifact.get("digest") or artifact.get("revision") if isinstance(artifact, dict) else None
    )


@dataclass(frozen=True)
class KindContext:
    """What a kind's reconciler is built from when this replica starts leading."""

    kube: Kube
    engine: AppEngine
    settings: ReconcileSettings
    metrics: Metrics
    events: EventRecorder
    registry: KindRegistry  # ``depends_on`` for dependencies between objects
    live: LiveGet  # the shared watch caches of managed objects (GET when not watchable)
    read: ReadObject  # an object of a registered kind: watch cache, or the server when fresh
    artifacts: ArtifactStore  # where Flux sources store their artifacts (served over HTTP)
    # Queue an object now (a kind that watches something of its own, e.g. cluster Secrets).
    enqueue: Callable[[ObjectKey, str], None] | None = None
    # The watched namespaces, and whether this replica owns an object's shard (namespace,
    # name): what a kind that watches objects of other kinds needs (notifications).
    namespaces: tuple[str, ...] = ()
    owns: Callable[[str, str], bool] | None = None
    # The controller's own watch cache of a registered kind in a namespace, once this
    # replica leads (None: not watched), so a kind reading others' objects keeps no copy.
    shared_cache: SharedCache | None = None


LiveGet = Callable[[str, str, str, "str | None"], Awaitable["Obj | None"]]
ReadObject = Callable[[ObjectKey, bool], Awaitable["Obj | None"]]
KindFactory = Callable[[KindContext], KindReconciler]
SharedCache = Callable[[str, str], Awaitable["WatchCache | None"]]
