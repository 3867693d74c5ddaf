"""The sync operation: make the cluster match the desired objects, in order, safely.

One ``run_sync`` call is one operation, in these steps:

1. **Prepare.** Every desired object gets its namespace (namespaced kinds without one get the
   destination namespace; cluster-scoped kinds lose any namespace) and the owner's mark
   (``SyncRequest.owner``: Argo CD's tracking annotation, or Flux's owner labels). A kind
   the cluster does not serve is an error, unless a CRD in the same desired set defines it.
   A name or namespace Kubernetes would refuse (``.``, ``..``, ``a/b``: see
   ``gitsail.kube.check_names``) is an error: nothing is done.
2. **Validate.** Every object to apply *and every hook* is read live and sent as a *dry
   run*. An object another owner marked (another app's tracking annotation, or a Flux
   Kustomization's labels, whichever kind this sync is for) is refused (Argo CD's
   SharedResourceWarning, failing as with ``FailOnSharedResource``); a named hook whose
   object exists but is not a hook of this owner is refused (a hook never replaces what
   it does not own). A hook that is created anew (``generateName``, or a previous run that
   ``BeforeHookCreation`` deletes) is validated as a create. If anything is refused, the
   operation fails here and nothing is applied, deleted or pruned.
3. **Namespace.** ``CreateNamespace=true`` creates the destination namespace (with
   ``managedNamespaceMetadata``); it is not tracked, so it is never pruned.
4. **Phases.** PreSync hooks, then the Sync phase wave by wave (objects and Sync hooks),
   then prunes, then PostSync hooks. Before a later wave or phase starts, everything
   applied so far must be healthy; a Degraded object or a failed hook fails the operation,
   and SyncFail hooks run.

Prune deletes only what the inventory diff names: entries of ``SyncRequest.inventory`` (what
the last sync applied) that the desired set no longer holds, whose live object (as the
caller read it, ``owned_live``) still carries the owner's mark and no other owner's. It is
skipped unless asked for, per object with ``Prune=false``, and never happens after a failed
validation. ``SyncResult.inventory`` is what the owner holds afterwards: the objects applied,
plus stale entries that are still its own and were kept.

**Waiting** (health between waves, hooks to complete, a hook's previous run to go) reads
live objects through ``lookup`` and sleeps until ``changes`` says a watched object changed:
in the controller both are its shared watch caches, so a wait costs no API request; a cached
view older than what the operation itself wrote (another uid, an older generation) is
checked with one GET, since the cache may lag its own writes. Without them (the CLI) each
wait reads with a GET every ``poll_interval``.

**Resuming.** ``checkpoint`` is given an ``OperationProgress`` (``gitsail.sync.progress``)
where resuming differs from running again: when a hook starts and ends, and when a health
wait begins (a later step follows it); the caller records it in ``operationState``. A
step (phase, wave) that merely starts is not recorded: applying it again is what a resume
does anyway, so a sync without hooks whose objects need no wait (one wave) writes no
checkpoint at all; its final status carries the result. A caller restarted in the middle
passes the last record back as ``SyncRequest.resume``: completed tasks of earlier steps
are carried over, not run again; a succeeded hook never runs twice, a running one is
waited on; the recorded step and what follows it are applied again.

**Reading live objects to validate.** An object to apply is checked for another owner's
mark on its cached view (``lookup``), and the view is trusted only as far as the dry run
confirms it: the dry run answers with the object's live ``resourceVersion`` (none when
it does not exist yet), and a cached view at another version (behind, or missing an
object created meanwhile) is read again with one GET. A new object, or one the cache
holds current, costs no GET. Hooks, and callers without a ``lookup``, read with a GET.

Every DELETE is conditional (``preconditions``): a prune re-reads the object, checks it is
still ours and still the object compared (same uid), and deletes only that uid at that
resourceVersion; a hook's previous run is deleted at the uid and resourceVersion read when
its ownership was checked; hook cleanup deletes only the uid the hook was created with. If
the object changed in between, the server deletes nothing and the task says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gitsail.health import HealthStatus, resource_health
from gitsail.kube import (
    InvalidName,
    Kube,
    KubeError,
    NotFound,
    NotFoundKind,
    PreconditionFailed,
    check_names,
)
from gitsail.model import Obj, ResourceKey, split_api_version
from gitsail.sync.inventory import Inventory, InventoryEntry
from gitsail.sync.ownership import ArgoTracking, Owner, shared_resource_warning
from gitsail.sync.plan import (
    PRUNE_LAST_WAVE,
    HookDeletePolicy,
    Phase,
    SyncOptions,
    SyncTask,
    TaskAction,
    hook_types,
    plan_tasks,
    waves,
)
from gitsail.sync.predictions import Predictions, applies_as_is
from gitsail.sync.progress import OperationProgress, ResourceResult, object_ref

__all__ = [
    "TERMINATED_MESSAGE",
    "Changes",
    "Checkpoint",
    "LiveLookup",
    "OperationProgress",
    "ResourceResult",
    "SyncError",
    "SyncRequest",
    "SyncResult",
    "Terminated",
    "run_sync",
]


class SyncError(Exception):
    """The operation could not start (bad input); nothing was changed."""


@dataclass(frozen=True)
class SyncRequest:
    """One sync operation, as data.

    ``owner`` marks what is applied and decides what may be replaced or pruned.
    ``inventory`` is what the last sync applied; the prune candidates are its entries the
    desired set no longer holds. ``owned_live`` are the live objects of those entries as
    the caller read them (an entry without one is taken as gone: nothing to prune). Without
    an ``inventory``, the entries of ``owned_live`` are the inventory.

    ``app`` is the older spelling of ``owner=ArgoTracking(app)``.
    """

    destination_namespace: str
    desired: tuple[Obj, ...]
    owner: Owner | None = None
    inventory: Inventory | None = None
    owned_live: tuple[Obj, ...] = ()
    options: SyncOptions = field(default_factory=SyncOptions)
    prune: bool = False
    dry_run: bool = False
    resources: frozenset[ResourceKey] | None = None  # selective sync: only these
    in_sync: frozenset[ResourceKey] = frozenset()  # skipped with ApplyOutOfSyncOnly=true
    hooks: bool = True
    managed_namespace_metadata: dict[str, Any] | None = None
    field_manager: str = "gitsail"
    wave_timeout: float = 300.0
    poll_interval: float = 0.5  # without watch events: how often live objects are read
    recheck_interval: float = 10.0  # with watch events: read again at least this often
    resume: OperationProgress | None = None  # what an interrupted run of it recorded
    app: str = ""

    def __post_init__(self) -> None:
        if self.owner is None:
            if not self.app:
                raise ValueError("a SyncRequest needs an owner (or an Argo CD app name)")
            object.__setattr__(self, "owner", ArgoTracking(self.app))

    @property
    def marker(self) -> Owner:
        """``owner``, never None once constructed."""
        assert self.owner is not None  # set by __post_init__
        return self.owner

    @property
    def last_inventory(self) -> Inventory:
        return self.inventory if self.inventory is not None else Inventory.of(self.owned_live)


@dataclass(frozen=True)
class SyncResult:
    phase: str  # Succeeded | Failed | Error
    message: str
    resources: tuple[ResourceResult, ...] = ()
    inventory: Inventory | None = None  # what the owner holds now (None: unchanged)
    terminated: bool = False  # stopped on request (Argo CD's "Operation terminated")


Progress = Callable[[ResourceResult], None]
LiveLookup = Callable[[str, str, str, str | None], Awaitable[Obj | None]]
Checkpoint = Callable[[OperationProgress], Awaitable[None]]
Terminated = Callable[[], Awaitable[bool]]
TERMINATED_MESSAGE = "Operation terminated"


class Changes(Protocol):
    """Tells a waiting operation that watched objects changed (the controller's watch caches).

    ``seen()`` is a token for "now", taken *before* reading; ``after(token)`` returns once
    anything changed since then. Taking the token first means a change that lands while the
    operation reads is never missed.
    """

    def seen(self) -> int: ...

    async def after(self, token: int) -> None: ...


class _Failed(Exception):
    pass


class _Terminated(Exception):
    """The operation was asked to stop: raised between steps and while waiting."""


def _behind(live: Obj | None, written: Obj) -> bool:
    """Whether a cached ``live`` is older than what this operation ``written``: another
    object (uid), none yet, or an older generation. Such a view is not trusted for health."""
    if live is None:
        return True
    meta, mine = live.get("metadata") or {}, written.get("metadata") or {}
    if mine.get("uid") and meta.get("uid") != mine.get("uid"):
        return True
    try:
        return int(meta.get("generation") or 0) < int(mine.get("generation") or 0)
    except (TypeError, ValueError):
        return False


def _resource_version(obj: Obj | None) -> str:
    """``metadata.resourceVersion``; "" for no object, or a dry run's answer for an object
    that does not exist yet (the server gives a version only to what it has stored)."""
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _namespaced_crd_kinds(desired: Sequence[Obj]) -> dict[tuple[str, str], bool]:
    """(group, kind) → namespaced, for CRDs defined in the desired set."""
    kinds: dict[tuple[str, str], bool] = {}
    for obj in desired:
        if obj.get("kind") == "CustomResourceDefinition":
            spec = obj.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind", ""))
            kinds[(str(spec.get("group", "")), kind)] = spec.get("scope") != "Cluster"
    return kinds


@dataclass(frozen=True)
class _Seams:
    lookup: LiveLookup | None
    changes: Changes | None
    checkpoint: Checkpoint | None
    clock: Callable[[], float]
    terminated: Terminated | None = None
    predictions: Predictions | None = None


class _Operation:
    def __init__(self, kube: Kube, request: SyncRequest, progress: Progress, seams: _Seams) -> None:
        self.kube = kube
        self.req = request
        self.owner = request.marker
        self.progress = progress
        self.seams = seams
        self.clock = seams.clock
        self.results: dict[tuple[str, ResourceKey], ResourceResult] = {}
        # (apiVersion, key, object as written) applied and awaiting health
        self.applied: list[tuple[str, ResourceKey, Obj]] = []
        self.crd_kinds = _namespaced_crd_kinds(request.desired)
        self.pending_crd: set[tuple[str, str]] = set()
        self.namespace_exists: bool | None = None  # the destination's (CreateNamespace)
        # Resuming: the results an interrupted run recorded, not yet carried over.
        self.prior: list[ResourceResult] = list(request.resume.results) if request.resume else []
        self.step: tuple[Phase, int] | None = (
            (request.resume.phase, request.resume.wave) if request.resume else None
        )

    def record(self, result: ResourceResult) -> None:
        self.results[(result.sync_phase + result.hook_type, result.key)] = result
        self.progress(result)

    # -- reading live objects and waiting for them to change ------------------------------

    async def read(
        self, api_version: str, key: ResourceKey, written: Obj | None = None
    ) -> Obj | None:
        """The live object, from the watch cache when there is one. A cached view older
        than what this operation ``written`` is checked with a GET (the cache lags)."""
        ns = key.namespace or None
        if self.seams.lookup is None:
            return await self.kube.get(api_version, key.kind, key.name, ns)
        live = await self.seams.lookup(api_version, key.kind, key.name, ns)
        if written is not None and _behind(live, written):
            live = await self.kube.get(api_version, key.kind, key.name, ns)
        return live

    def token(self) -> int:
        return self.seams.changes.seen() if self.seams.changes is not None else 0

    async def stop_if_terminated(self) -> None:
        """Raise ``_Terminated`` when the operation was asked to stop (checked before each
        step and on each pause of a wait, so a termination ends a long health wait too)."""
        if self.seams.terminated is not None and await self.seams.terminated():
            raise _Terminated(TERMINATED_MESSAGE)

    async def stop_running_hooks(self) -> None:
        """On termination, delete the hook objects this operation started that still run
        (as Argo CD does): only the object it created (its uid), in the background."""
        for result in list(self.results.values()):
            if not result.hook_type or result.hook_phase != "Running" or not result.uid:
                continue
            key = result.key
            api_version = f"{key.group}/{result.version}" if key.group else result.version
            message = "terminated"
            try:
                await self.kube.delete(
                    api_version,
                    key.kind,
                    key.name,
                    key.namespace or None,
                    propagation="Background",
                    preconditions={"uid": result.uid},
                )
            except KubeError as exc:  # gone, or another object now: nothing of ours to stop
                message = f"terminated; not deleted: {exc.message}"
            self.record(replace(result, hook_phase="Failed", message=message))

    async def pause(self, token: int, deadline: float, interval: float | None = None) -> None:
        """Until something changed since ``token`` (at most ``recheck_interval``), or the
        poll interval without watch events; never past ``deadline``."""
        await self.stop_if_terminated()
        remaining = max(0.0, deadline - self.clock())
        changes = self.seams.changes
        if changes is None or interval is not None:
            await asyncio.sleep(min(interval or self.req.poll_interval, remaining))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                changes.after(token), timeout=min(self.req.recheck_interval, remaining)
            )

    # -- progress, for a restarted controller ---------------------------------------------

    async def save(self, message: str) -> None:
        """Record the step reached and the results so far (a bounded number of writes:
        when a hook starts or ends, a health wait begins, a failure's SyncFail hooks start)."""
        if self.seams.checkpoint is None or self.req.dry_run or self.step is None:
            return
        phase, wave = self.step
        await self.seams.checkpoint(
            OperationProgress(phase, wave, message, tuple(self.results.values()))
        )

    def enter(self, phase: Phase, wave: int) -> None:
        """Step (``phase``, ``wave``) starts. Not saved by itself: the next checkpoint (a
        hook, a health wait) records it; until then a resume applies it again, as a fresh
        run would."""
        self.step = (phase, wave)

    def earlier(self, phase: Phase, wave: int) -> bool:
        """A step an interrupted run of this operation had finished."""
        resume = self.req.resume
        return resume is not None and resume.before(phase, wave)

    def carry_over(self, task: SyncTask) -> bool:
        """Record the completed result an interrupted run left for ``task`` (of a finished
        step); False (to run it) when there is none."""
        if not self.earlier(
            task.phase, task.wave if task.action is not TaskAction.prune else PRUNE_LAST_WAVE + 1
        ):
            return False
        for result in self.prior:
            if (
                result.key == task.key
                and not result.hook_type
                and result.sync_phase == str(task.phase)
                and result.completed
            ):
                self.prior.remove(result)
                self.record(result)
                return True
        return False

    def prior_hook(self, task: SyncTask) -> ResourceResult | None:
        """The result an interrupted run recorded for hook ``task`` (its object's name, or
        a name generated from its ``generateName``), taken so it matches once."""
        generate = str((task.obj or {}).get("metadata", {}).get("generateName") or "")
        for result in self.prior:
            if (
                result.hook_type != task.hook_type
                or result.sync_phase != str(task.phase)
                or (result.key.group, result.key.kind, result.key.namespace)
                != (task.key.group, task.key.kind, task.key.namespace)
            ):
                continue
            if (task.key.name and result.key.name == task.key.name) or (
                not task.key.name and generate and result.key.name.startswith(generate)
            ):
                self.prior.remove(result)
                return result
        return None

    # -- preparation -------------------------------------------------------------------

    async def prepare(self, obj: Obj) -> Obj:
        api_version = str(obj.get("apiVersion", ""))
        kind = str(obj.get("kind", ""))
        group, _ = split_api_version(api_version)
        try:
            info = await self.kube.resource_for(api_version, kind)
            namespaced = info.namespaced
        except NotFoundKind as exc:
            if (group, kind) not in self.crd_kinds:
                name = (obj.get("metadata") or {}).get("name", "")
                raise SyncError(
                    f"{api_version} {kind} {name}: the cluster does not serve this kind "
                    "(is its CRD installed?)"
                ) from exc
            namespaced = self.crd_kinds[(group, kind)]
            self.pending_crd.add((group, kind))
        prepared = copy.deepcopy(obj)
        meta = prepared.setdefault("metadata", {})
        if namespaced:
            meta["namespace"] = meta.get("namespace") or self.req.destination_namespace
            if not meta["namespace"]:
                raise SyncError(
                    f"{kind} {meta.get('name', '')}: namespaced, but neither the manifest nor "
                    "the destination names a namespace"
                )
        else:
            meta.pop("namespace", None)
        name = meta.get("name")
        try:
            check_names(group, kind, str(name) if name else None, meta.get("namespace") or None)
        except InvalidName as exc:
            raise SyncError(f"{api_version} {kind} {name or ''}: {exc.message}") from exc
        return self.owner.mark(prepared)

    # -- steps -------------------------------------------------------------------------

    def _selected(self, task: SyncTask) -> bool:
        if self.req.resources is not None and task.key not in self.req.resources:
            return False
        return not (
            task.action is TaskAction.apply
            and task.options.flag("ApplyOutOfSyncOnly")
            and task.key in self.req.in_sync
        )

    async def validate(self, tasks: Sequence[SyncTask]) -> list[str]:
        """Ownership checks and a dry run of every apply and hook task; the refusals."""
        errors: list[str] = []
        missing_ns = await self._destination_namespace_missing()
        for task in tasks:
            if task.action is TaskAction.prune or task.obj is None:
                continue
            pending = (task.key.group, task.key.kind) in self.pending_crd
            # Objects to apply are read from the watch cache, checked against the dry run.
            cached = self.seams.lookup is not None and task.action is TaskAction.apply
            try:
                live = None
                if not pending and task.key.name:
                    live = await (self._cached(task) if cached else self._live(task))
                problem = self._ownership_problem(task, live)
                if problem and cached:  # a refusal is the server's word: the cache may lag
                    live, cached = await self._live(task), False
                    problem = self._ownership_problem(task, live)
                if problem:
                    errors.append(f"{task.key}: {problem}")
                    continue
                if pending:
                    continue
                if task.options.flag("SkipDryRunOnMissingResource"):
                    if cached and (
                        problem := self._ownership_problem(task, await self._live(task))
                    ):
                        errors.append(f"{task.key}: {problem}")
                    continue
                if missing_ns and task.key.namespace == self.req.destination_namespace:
                    continue  # the namespace is created by this sync (CreateNamespace)
                if self._known(task, live):
                    continue  # the server accepted this apply onto this very object
                predicted = await self._dry_run(task, live)
                # A cache behind the server (or without an object created since): the
                # server's object decides.
                behind = cached and _resource_version(predicted) != _resource_version(live)
                if behind and (problem := self._ownership_problem(task, await self._live(task))):
                    errors.append(f"{task.key}: {problem}")
            except NotFound as exc:
                if missing_ns or task.key.namespace in self._desired_namespaces():
                    continue
                errors.append(f"{task.key}: {exc.message}")
            except KubeError as exc:
                errors.append(f"{task.key}: {exc.message}")
        return errors

    def _validation(self, task: SyncTask) -> str:
        return "Ignore" if task.options.get("Validate") == "false" else "Strict"

    def _known(self, task: SyncTask, live: Obj | None) -> bool:
        """Whether a server-side apply of ``task`` onto ``live`` was answered before
        (``Predictions``): an apply task that is not a Replace, onto an existing object."""
        predictions = self.seams.predictions
        if predictions is None or task.obj is None or live is None:
            return False
        if task.action is not TaskAction.apply or task.options.flag("Replace"):
            return False
        if applies_as_is(task.obj, live, field_manager=self.req.field_manager):
            return True  # (a field the server does not know is never in ``live``)
        known = predictions.get(
            task.obj, live, field_manager=self.req.field_manager, validation=self._validation(task)
        )
        return known is not None

    async def _cached(self, task: SyncTask) -> Obj | None:
        """The watch cache's view of ``task``'s object (``lookup`` is set)."""
        assert self.seams.lookup is not None
        return await self.seams.lookup(
            task.api_version, task.key.kind, task.key.name, task.key.namespace or None
        )

    async def _live(self, task: SyncTask) -> Obj | None:
        return await self.kube.get(
            task.api_version, task.key.kind, task.key.name, task.key.namespace or None
        )

    def _ownership_problem(self, task: SyncTask, live: Obj | None) -> str:
        """Why ``task`` may not write over ``live``: "" if it may."""
        if live is None:
            return ""
        shared = shared_resource_warning(live, self.owner)
        if shared is not None:
            return (
                f"Shared resource found: {shared}; not applied over the object of "
                f"{self.owner.claimant(live)}: remove it from one of the two"
            )
        if task.action is TaskAction.hook and not self.owner.owns(live):
            return (
                f"a {task.key.kind} named {task.key.name!r} exists and is not a hook of this "
                f"{self.owner.describe()} (it has no mark of it); a hook never replaces an object "
                "it does not own: nothing was deleted. Rename the hook, or delete that object "
                "yourself if it is unused"
            )
        return ""

    async def _dry_run(self, task: SyncTask, live: Obj | None) -> Obj:
        assert task.obj is not None
        recreated = live is not None and HookDeletePolicy.BeforeHookCreation in task.delete_policies
        if task.action is TaskAction.hook and (not task.key.name or recreated):
            # Created anew (its previous run is deleted first): validate a create. The name
            # was checked in prepare; the server checks the rest as for a generated name.
            meta = dict(task.obj.get("metadata") or {})
            if task.key.name:
                meta["generateName"] = meta.pop("name")
            validation = self._validation(task)
            return await self.kube.create(
                {**task.obj, "metadata": meta},
                dry_run=True,
                field_manager=self.req.field_manager,
                field_validation=validation,
            )
        return await self._apply(task, dry_run=True)

    def _desired_namespaces(self) -> set[str]:
        return {
            str((o.get("metadata") or {}).get("name"))
            for o in self.req.desired
            if o.get("kind") == "Namespace"
        }

    async def _destination_namespace_exists(self) -> bool:
        """Whether the destination namespace exists: the watch cache's word (the lookup
        seam) when there is one, else the server's. Asked once per operation: validation
        and ``ensure_namespace`` share the answer. Only ``CreateNamespace`` asks, so a
        namespace created a moment ago and not cached yet costs one idempotent apply of
        it, not a GET for every sync of every app."""
        if self.namespace_exists is None:
            ns = self.req.destination_namespace
            if self.seams.lookup is not None:
                found = await self.seams.lookup("v1", "Namespace", ns, None)
            else:
                found = await self.kube.get("v1", "Namespace", ns)
            self.namespace_exists = found is not None
        return self.namespace_exists

    async def _destination_namespace_missing(self) -> bool:
        ns = self.req.destination_namespace
        if not ns or not self.req.options.flag("CreateNamespace"):
            return False
        return not await self._destination_namespace_exists()

    async def ensure_namespace(self) -> None:
        ns = self.req.destination_namespace
        if not ns or not self.req.options.flag("CreateNamespace"):
            return
        metadata = self.req.managed_namespace_metadata or {}
        if not metadata and await self._destination_namespace_exists():
            return
        body: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for part in ("labels", "annotations"):
            if metadata.get(part):
                body["metadata"][part] = dict(metadata[part])
        await self.kube.apply(body, field_manager=self.req.field_manager, force=True)
        self.namespace_exists = True

    async def _apply(self, task: SyncTask, *, dry_run: bool) -> Obj:
        assert task.obj is not None
        validation = self._validation(task)
        if task.options.flag("Replace"):
            return await self._put(task, dry_run=dry_run, validation=validation)
        try:
            # Git is the source of truth for the fields it sets: conflicts with other
            # managers (kubectl edit/scale) are forced, as Argo CD's server-side apply and
            # Flux do.
            return await self.kube.apply(
                task.obj,
                field_manager=self.req.field_manager,
                force=True,
                dry_run=dry_run,
                field_validation=validation,
            )
        except KubeError as exc:
            # Server-side apply needs every field in the schema, whatever fieldValidation
            # says. Validate=false asks for kubectl's lenient behaviour: write the object
            # with create/update, which lets the server drop the unknown fields.
            if validation == "Ignore" and "not declared in schema" in exc.message:
                return await self._put(task, dry_run=dry_run, validation=validation)
            raise

    async def _put(self, task: SyncTask, *, dry_run: bool, validation: str) -> Obj:
        assert task.obj is not None
        existing = await self.kube.get(
            task.api_version, task.key.kind, task.key.name, task.key.namespace or None
        )
        write = self.kube.create if existing is None else self.kube.replace
        return await write(
            task.obj,
            dry_run=dry_run,
            field_manager=self.req.field_manager,
            field_validation=validation,
        )

    async def apply(self, task: SyncTask) -> None:
        try:
            written = await self._apply(task, dry_run=False)
        except KubeError as exc:
            self.record(self._result(task, "SyncFailed", exc.message))
            raise _Failed(f"{task.key}: {exc.message}") from exc
        predictions = self.seams.predictions
        if predictions is not None and task.obj is not None and not task.options.flag("Replace"):
            predictions.applied(
                task.obj,
                written,
                field_manager=self.req.field_manager,
                validation=self._validation(task),
            )
        if task.key.kind == "CustomResourceDefinition":
            await self._wait_established(task)
        self.applied.append((task.api_version, task.key, written))
        self.record(self._result(task, "Synced", "applied (server-side)"))

    async def _wait_established(self, task: SyncTask) -> None:
        """Custom resources of a CRD applied in this sync can be applied once it is served."""
        deadline = self.clock() + self.req.wave_timeout
        while True:
            live = await self.kube.get(task.api_version, task.key.kind, task.key.name)
            health = resource_health(live)
            if health is not None and health.status is HealthStatus.Healthy:  # Established
                break
            if self.clock() >= deadline:
                raise _Failed(f"{task.key} was not Established in {self.req.wave_timeout:.0f}s")
            await self.pause(0, deadline, interval=self.req.poll_interval / 5)
        # Established is not yet served: the apiserver's discovery catches up a moment later
        # (seconds on a loaded server), and the custom resources that follow need it.
        spec = (task.obj or {}).get("spec") or {}
        group = str(spec.get("group") or "")
        kind = str((spec.get("names") or {}).get("kind") or "")
        versions = [str(v.get("name")) for v in spec.get("versions") or [] if isinstance(v, dict)]
        while True:
            await self.kube.discover(refresh=True)
            if not (group and kind and versions) or self._served(f"{group}/{versions[0]}", kind):
                return
            if self.clock() >= deadline:
                raise _Failed(f"{task.key} is Established but not served in discovery")
            await self.pause(0, deadline, interval=self.req.poll_interval / 5)

    def _served(self, api_version: str, kind: str) -> bool:
        try:
            self.kube.mapper.resource_for(api_version, kind)
        except NotFoundKind:
            return False
        return True

    def _not_prunable(self, live: Obj) -> str:
        """Why ``live`` is not this owner's to prune: "" if it is."""
        if not self.owner.owns(live):
            return f"no longer carries the mark of {self.owner.describe()}: kept"
        claimant = self.owner.claimant(live)
        if claimant is not None:
            return f"also marked by {claimant}: kept"
        return ""

    async def prune(self, task: SyncTask) -> None:
        live = next((o for o in self.req.owned_live if ResourceKey.of(o) == task.key), None)
        if live is None:
            self.record(self._result(task, "PruneSkipped", "not read as this owner's: kept"))
            return
        if problem := self._not_prunable(live):
            self.record(self._result(task, "PruneSkipped", problem))
            return
        prune_option = task.options.get("Prune", "true").lower()
        if prune_option == "false":
            self.record(self._result(task, "PruneSkipped", "ignored (Prune=false)"))
            return
        if prune_option == "confirm":
            self.record(self._result(task, "PruneSkipped", "waiting for prune confirmation"))
            return
        if not self.req.prune:
            self.record(self._result(task, "PruneSkipped", "ignored (requires pruning)"))
            return
        policy = task.options.get("PrunePropagationPolicy", "foreground").capitalize()
        uid = str((live.get("metadata") or {}).get("uid") or "")
        try:
            # Read again: the object must still be ours and still the one compared.
            current = await self._live(task)
            if current is None:
                self.record(self._result(task, "Pruned", "pruned (already gone)"))
                return
            meta = current.get("metadata") or {}
            if uid and meta.get("uid") != uid:
                self.record(
                    self._result(
                        task, "PruneSkipped", "replaced since it was compared (new uid): kept"
                    )
                )
                return
            if problem := self._not_prunable(current):
                self.record(self._result(task, "PruneSkipped", problem))
                return
            await self.kube.delete(
                task.api_version,
                task.key.kind,
                task.key.name,
                task.key.namespace or None,
                propagation=policy,
                preconditions={
                    "uid": str(meta.get("uid") or ""),
                    "resourceVersion": str(meta.get("resourceVersion") or ""),
                },
            )
        except PreconditionFailed as exc:
            message = f"changed while being pruned, kept (the next sync looks again): {exc.message}"
            self.record(self._result(task, "PruneSkipped", message))
            return
        except KubeError as exc:
            self.record(self._result(task, "SyncFailed", f"prune failed: {exc.message}"))
            raise _Failed(f"{task.key}: prune failed: {exc.message}") from exc
        self.record(self._result(task, "Pruned", "pruned"))

    async def run_hook(self, task: SyncTask) -> None:
        """Run one hook and wait for it. Resuming, a hook that succeeded is not run again and
        one still running (its object has the recorded uid) is waited on, not recreated."""
        assert task.obj is not None
        prior = self.prior_hook(task) if self.req.resume is not None else None
        if prior is not None and prior.completed:
            self.record(prior)
            return
        if task.phase is not Phase.SyncFail:  # (that step was entered with its reason)
            self.enter(task.phase, task.wave)
        running = await self._still_running(task, prior) if prior is not None else None
        created = running if running is not None else await self._start_hook(task)
        name = str(created["metadata"]["name"])
        uid = str(created["metadata"].get("uid") or "")
        key = replace(task.key, name=name)
        hook_task = replace(task, key=key)
        ref = object_ref(key.group, key.kind, name)
        self.record(
            self._result(hook_task, "Synced", "hook started", hook_phase="Running", uid=uid)
        )
        await self.save(f"waiting for completion of hook {ref}")
        status, message = await self._wait_hook(task.api_version, key, created)
        succeeded = status == "Succeeded"
        result = self._result(
            hook_task, "Synced" if succeeded else "SyncFailed", message, hook_phase=status, uid=uid
        )
        # Saved before the cleanup: a restart in between leaves the object, never runs the
        # hook twice.
        self.record(result)
        await self.save(f"{task.hook_type} hook {ref} {status.lower()}")
        policy = HookDeletePolicy.HookSucceeded if succeeded else HookDeletePolicy.HookFailed
        if policy in task.delete_policies:
            # Only the object this hook created (its uid); its status changes as it runs.
            try:
                await self.kube.delete(
                    task.api_version,
                    key.kind,
                    key.name,
                    key.namespace or None,
                    propagation="Background",
                    preconditions={"uid": uid},
                )
            except PreconditionFailed as exc:
                self.record(replace(result, message=f"{message}; not cleaned up: {exc.message}"))
        if not succeeded:
            raise _Failed(f"{task.hook_type} hook {key} failed: {message}")

    async def _still_running(self, task: SyncTask, prior: ResourceResult) -> Obj | None:
        """The object of a hook an interrupted run started, if it is still that object."""
        if prior.hook_phase != "Running" or not prior.uid:
            return None
        live = await self.kube.get(
            task.api_version, prior.key.kind, prior.key.name, prior.key.namespace or None
        )
        if live is None or str((live.get("metadata") or {}).get("uid") or "") != prior.uid:
            return None
        return live

    async def _start_hook(self, task: SyncTask) -> Obj:
        """Create the hook's object (after deleting its previous run, if asked to)."""
        assert task.obj is not None
        generated = not task.key.name and bool((task.obj.get("metadata") or {}).get("generateName"))
        if not generated:
            # Checked again here: a PostSync hook runs long after validation.
            live = await self._live(task)
            problem = self._ownership_problem(task, live)
            if problem:
                self.record(self._result(task, "SyncFailed", problem, hook_phase="Failed"))
                raise _Failed(f"{task.hook_type} hook {task.key}: {problem}")
            if live is not None and HookDeletePolicy.BeforeHookCreation in task.delete_policies:
                await self._delete_and_wait(task, live)
        try:
            if generated:
                return await self.kube.create(task.obj, field_manager=self.req.field_manager)
            return await self.kube.apply(task.obj, field_manager=self.req.field_manager, force=True)
        except KubeError as exc:
            self.record(self._result(task, "SyncFailed", exc.message, hook_phase="Failed"))
            raise _Failed(f"{task.hook_type} hook {task.key}: {exc.message}") from exc

    async def _wait_hook(self, api_version: str, key: ResourceKey, created: Obj) -> tuple[str, str]:
        deadline = self.clock() + self.req.wave_timeout
        while True:
            token = self.token()
            live = await self.read(api_version, key, written=created)
            health = resource_health(live)
            if health is None or health.status is HealthStatus.Healthy:
                return "Succeeded", (health.message if health else "") or "hook succeeded"
            if health.status is HealthStatus.Degraded:
                return "Failed", health.message or "hook failed"
            if self.clock() >= deadline:
                return "Failed", f"timed out after {self.req.wave_timeout:.0f}s"
            await self.pause(token, deadline)

    async def _delete_and_wait(self, task: SyncTask, live: Obj) -> None:
        """Delete the previous run of a hook (``live``, checked to be this app's) and wait
        until it is gone; only that object, as it was read (uid and resourceVersion)."""
        meta = live.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        try:
            deleted = await self.kube.delete(
                task.api_version,
                task.key.kind,
                task.key.name,
                task.key.namespace or None,
                propagation="Background",
                preconditions={
                    "uid": uid,
                    "resourceVersion": str(meta.get("resourceVersion") or ""),
                },
            )
        except PreconditionFailed as exc:
            message = f"previous hook object not deleted: {exc.message}"
            self.record(self._result(task, "SyncFailed", message, hook_phase="Failed"))
            raise _Failed(f"{task.hook_type} hook {task.key}: {message}") from exc
        if not deleted:
            return
        deadline = self.clock() + self.req.wave_timeout
        while True:
            token = self.token()
            current = await self.read(task.api_version, task.key)
            if current is None and self.seams.lookup is not None:
                # "Gone" from a cache that may never have seen it: the server decides.
                current = await self.kube.get(
                    task.api_version, task.key.kind, task.key.name, task.key.namespace or None
                )
            if current is None:
                return
            if str((current.get("metadata") or {}).get("uid") or "") != uid:
                problem = self._ownership_problem(task, current)
                if problem:
                    self.record(self._result(task, "SyncFailed", problem, hook_phase="Failed"))
                    raise _Failed(f"{task.hook_type} hook {task.key}: {problem}")
                return
            if self.clock() >= deadline:
                raise _Failed(f"{task.key}: the previous hook object is still being deleted")
            await self.pause(token, deadline)

    async def wait_healthy(self) -> None:
        """Wait until everything applied so far is healthy; Degraded fails the operation."""
        deadline = self.clock() + self.req.wave_timeout
        pending = list(self.applied)
        told = False
        while pending:
            token = self.token()
            still: list[tuple[str, ResourceKey, Obj]] = []
            for api_version, key, written in pending:
                live = await self.read(api_version, key, written=written)
                health = resource_health(live)
                if health is None or health.status in (
                    HealthStatus.Healthy,
                    HealthStatus.Suspended,
                ):
                    continue
                if health.status is HealthStatus.Degraded:
                    raise _Failed(f"{key} is Degraded: {health.message}")
                still.append((api_version, key, written))
            pending = still
            if not pending:
                break
            if self.clock() >= deadline:
                names = ", ".join(str(k) for _, k, _ in pending)
                raise _Failed(f"timed out waiting for healthy state of {names}")
            if not told:  # once per wait: the first object still waited for
                _, first, _ = pending[0]
                await self.save(
                    "waiting for healthy state of "
                    + object_ref(first.group, first.kind, first.name)
                )
                told = True
            await self.pause(token, deadline)
        self.applied.clear()

    def _result(
        self, task: SyncTask, status: str, message: str, *, hook_phase: str = "", uid: str = ""
    ) -> ResourceResult:
        _, version = split_api_version(task.api_version)
        return ResourceResult(
            key=task.key,
            version=version,
            status=status,
            message=message,
            sync_phase=str(task.phase),
            hook_type=task.hook_type,
            hook_phase=hook_phase,
            uid=uid,
        )


async def run_sync(
    kube: Kube,
    request: SyncRequest,
    progress: Progress = lambda _r: None,
    *,
    lookup: LiveLookup | None = None,
    changes: Changes | None = None,
    checkpoint: Checkpoint | None = None,
    clock: Callable[[], float] = time.monotonic,
    terminated: Terminated | None = None,
    predictions: Predictions | None = None,
) -> SyncResult:
    """Run one sync operation; never raises for cluster errors (they become the result).

    ``lookup`` reads live objects while waiting for health (the controller's watch caches;
    default a GET each time) and ``changes`` wakes the waits when watched objects change
    (default: read again every ``poll_interval``). ``checkpoint`` is told the progress when
    a step starts, a hook starts or ends and a health wait begins, so that a restarted
    caller can pass it back as ``SyncRequest.resume``. ``clock`` measures the timeouts.
    ``terminated`` says whether the operation was asked to stop: it is asked before each
    step (a wave, the prunes of a phase) and on each pause of a wait; once it says yes, no
    further step starts and the result is Failed, "Operation terminated" (no SyncFail hooks:
    stopping was asked for, nothing failed). ``predictions`` are the dry-run answers the
    caller already has (``gitsail.sync.predictions``): validation skips those, and every
    apply adds its result.
    """
    seams = _Seams(lookup, changes, checkpoint, clock, terminated, predictions)
    op = _Operation(kube, request, progress, seams)
    try:
        await kube.discover()
        desired = [await op.prepare(obj) for obj in request.desired]
    except (SyncError, KubeError) as exc:
        return SyncResult("Error", str(exc), inventory=request.last_inventory)
    last = request.last_inventory
    stale = last.diff(Inventory.of(desired))
    live_by_key = {ResourceKey.of(o): o for o in request.owned_live}
    prune_candidates = [
        live_by_key[e.key]
        for e in stale
        if e.key in live_by_key and not op._not_prunable(live_by_key[e.key])
    ]
    # Stale entries that are gone, or not (only) this owner's, leave the inventory.
    dropped = {e.key for e in stale} - {ResourceKey.of(o) for o in prune_candidates}
    tasks = [
        t
        for t in plan_tasks(
            desired, prune_candidates, app_options=request.options, hooks=request.hooks
        )
        if op._selected(t)
    ]
    try:
        errors = await op.validate(tasks)
    except KubeError as exc:  # e.g. the destination namespace could not be read
        return SyncResult(
            "Error", f"validation could not run, nothing was applied: {exc}", inventory=last
        )
    if errors:
        return SyncResult(
            "Failed",
            "dry run failed, nothing was applied: " + "; ".join(errors),
            tuple(
                ResourceResult(t.key, split_api_version(t.api_version)[1], "SyncFailed", e)
                for t, e in _match_errors(tasks, errors)
            ),
            inventory=last,
        )
    if request.dry_run:
        for task in tasks:
            status = "Pruned" if task.action is TaskAction.prune else "Synced"
            op.record(op._result(task, status, f"{task.action} (dry run)"))
        return SyncResult(
            "Succeeded", "dry run: nothing was changed", tuple(op.results.values()), last
        )
    try:
        resume = request.resume
        if resume is not None and resume.phase is Phase.SyncFail:
            # It had failed already: carry its results over, finish its SyncFail hooks.
            for result in [r for r in op.prior if r.sync_phase != str(Phase.SyncFail)]:
                op.prior.remove(result)
                op.record(result)
            raise _Failed(resume.message)
        await op.ensure_namespace()
        await _run_phases(op, tasks)
    except _Terminated:
        await op.stop_running_hooks()
        results = tuple(op.results.values())
        return SyncResult(
            "Failed", TERMINATED_MESSAGE, results, _held(last, desired, op, dropped), True
        )
    except _Failed as exc:
        # Asked to stop while its SyncFail hooks ran: the failure stands.
        with contextlib.suppress(_Terminated):
            await _run_sync_fail_hooks(op, desired, str(exc))
        results = tuple(op.results.values())
        return SyncResult("Failed", str(exc), results, _held(last, desired, op, dropped))
    except KubeError as exc:
        results = tuple(op.results.values())
        return SyncResult("Error", str(exc), results, _held(last, desired, op, dropped))
    return SyncResult(
        "Succeeded",
        "successfully synced (all tasks run)",
        tuple(op.results.values()),
        _held(last, desired, op, dropped),
    )


def _held(
    last: Inventory, desired: Sequence[Obj], op: _Operation, dropped: set[ResourceKey]
) -> Inventory:
    """The owner's inventory after the operation: the objects applied (or skipped as in
    sync), first and at their new version, then what the last inventory still holds: kept
    stale entries (Prune=false, not asked to prune, failed or changed while pruning) and
    entries this operation did not select. Pruned entries and those gone or not (only)
    this owner's are left out."""
    done = {
        key
        for (phase, key), r in op.results.items()
        if phase == str(Phase.Sync) and r.status == "Synced"
    }
    pruned = {key for (_, key), r in op.results.items() if r.status == "Pruned"}
    applied = Inventory(
        tuple(
            InventoryEntry.of(o)
            for o in desired
            if not hook_types(o)
            and (ResourceKey.of(o) in done or ResourceKey.of(o) in op.req.in_sync)
        )
    )
    return applied.merge(last.without(pruned | dropped))


def _match_errors(tasks: Sequence[SyncTask], errors: Sequence[str]) -> list[tuple[SyncTask, str]]:
    matched = []
    for task in tasks:
        for error in errors:
            if error.startswith(f"{task.key}:"):
                matched.append((task, error.split(": ", 1)[-1]))
    return matched


async def _run_phases(op: _Operation, tasks: Sequence[SyncTask]) -> None:
    phases = [Phase.PreSync, Phase.Sync, Phase.PostSync]
    for index, phase in enumerate(phases):
        applies = [t for t in tasks if t.phase is phase and t.action is not TaskAction.prune]
        prunes = [t for t in tasks if t.phase is phase and t.action is TaskAction.prune]
        prune_last = [t for t in prunes if t.options.flag("PruneLast")]
        later_work = any(
            t.phase in phases[index + 1 :] and t.action is not TaskAction.prune for t in tasks
        )
        grouped = waves(applies, phase)
        for position, (wave, wave_tasks) in enumerate(grouped):
            await op.stop_if_terminated()
            for task in wave_tasks:
                if task.action is TaskAction.hook:
                    await op.run_hook(task)
                elif not op.carry_over(task):
                    op.enter(phase, wave)
                    await op.apply(task)
            # Health gates only what comes after: a later wave, phase or PruneLast prunes.
            if position + 1 < len(grouped) or later_work or prune_last:
                await op.wait_healthy()
        if prunes:
            await op.stop_if_terminated()
        for task in prunes:
            if not task.options.flag("PruneLast") and not op.carry_over(task):
                await op.prune(task)
        if prune_last:
            await op.wait_healthy()
            for task in prune_last:
                if not op.carry_over(task):
                    await op.prune(task)


async def _run_sync_fail_hooks(op: _Operation, desired: Sequence[Obj], reason: str) -> None:
    fail_hooks = [
        t
        for t in plan_tasks(desired, (), app_options=op.req.options, hooks=op.req.hooks)
        if t.phase is Phase.SyncFail
    ]
    if not fail_hooks:
        return
    if op.step != (Phase.SyncFail, 0):  # (a resumed failure was recorded already)
        op.enter(Phase.SyncFail, 0)
        with contextlib.suppress(KubeError):
            await op.save(reason)  # a restart finishes the failure
    for task in fail_hooks:
        try:
            await op.run_hook(task)
        except (_Failed, KubeError):
            continue
