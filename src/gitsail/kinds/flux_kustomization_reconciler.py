"""The Flux ``Kustomization`` reconciler (kustomize-controller's job, on gitsail's stages).

One ``reconcile(obj, reasons)`` call is one pass, in kustomize-controller's order:

1. **Deletion.** An object being deleted is finalized (``finalize``) and not reconciled.
2. **Spec.** ``parse_kustomization``; a malformed or unsupported spec is ``Stalled``.
   CEL expressions (``healthCheckExprs``, ``dependsOn[].readyExpr``: ``flux_cel``) are
   compiled; one that does not compile stalls.
3. **Finalizer.** ``finalizers.fluxcd.io`` is added (a metadata patch), so deleting the
   object later prunes what it applied.
4. **Suspend.** ``spec.suspend`` stops here: nothing is read or written; ``None`` is returned.
5. **Source and dependencies.** The source GitRepository needs an artifact (``ArtifactFailed``
   otherwise). Each ``dependsOn`` item must be ready: a Kustomization ``Ready=True`` for its
   current generation (and, when it reads the same source, at the same revision); beyond
   Flux, an Argo CD ``Application`` that is ``Healthy`` and ``Synced``. Otherwise
   ``DependencyNotReady``, retried after ``retryInterval``.
6. **Build** (``flux_kustomization_build``): fetch, ignore rules, generated kustomization,
   kustomize edits, ``kustomize build``, post-build substitution, ``commonMetadata``; the
   last build is reused when its inputs are unchanged (``BuildCache``).
7. **Apply** with the sync stage: owner ``FluxLabels(name, namespace)``, the inventory read
   from ``status.inventory``, ``prune: spec.prune``. Every object applied is validated by a
   server-side dry run before anything is written (a failed build, fetch or dry run never
   prunes). An object this process applied, with the same digest, whose live
   ``resourceVersion`` (read this pass) is still the one its apply returned, is not applied
   again (``SyncRequest.in_sync``): nobody wrote it since. A manual edit, a deletion, a
   changed build, another owner's mark, a new ``requestedAt`` apply it as before.
   Per-object annotations (label or annotation, as in Flux):
   ``kustomize.toolkit.fluxcd.io/reconcile: disabled`` and ``…/ssa: Ignore`` skip the object
   (an existing one stays in the inventory, so it is not pruned either); ``…/ssa:
   IfNotPresent`` creates it only when it does not exist; a live object with ``…/prune:
   disabled`` (or ``…/reconcile: disabled``) is never pruned (it leaves the inventory).
   ``…/ssa: Merge`` and the default ``Override`` both apply with forced conflicts; fields
   that other managers own are kept (Flux's Override also strips ``kubectl`` edits).
   With ``spec.force`` (or ``…/force: enabled`` on the object), an object whose dry run
   fails on an immutable field is deleted and created again.
   With ``spec.serviceAccountName`` everything done on the target cluster (inventory reads,
   dry run, apply, prune, health checks, and the prune on deletion) impersonates
   ``system:serviceaccount:<Kustomization namespace>:<name>`` (``Kube.impersonating``), as
   kustomize-controller does; reading the source and dependencies and writing the status stay
   on the controller's own identity. What the ServiceAccount may not do (``Forbidden``) is
   ``ReconciliationFailed`` naming it; the dry run fails first, so nothing is applied.
8. **Health.** With ``wait: true`` every applied object, else the ``healthChecks`` list, must
   be healthy (``gitsail.health``: kstatus and the built-in workload checks) within
   ``spec.timeout``; a failed object or the timeout is ``HealthCheckFailed`` naming them.
9. **Status**, as kustomize-controller writes it, in ONE merge patch of ``/status`` at the
   end (none when nothing changed): ``conditions`` (``Ready``, ``Reconciling``/``Stalled``
   as kstatus expects, ``Healthy`` when health checks run), ``inventory``,
   ``lastAttemptedRevision``, ``lastAppliedRevision`` (after health passed),
   ``observedGeneration`` (on success, or when stalled), ``lastHandledReconcileAt`` and
   ``history`` (Flux's last 5 outcomes by digest of the built objects; a pass that changes
   nothing does not touch it, so it writes nothing).

The return value is the seconds until the next pass: ``spec.interval`` after success,
``spec.retryInterval`` after a failure, ``None`` when suspended or the spec is unreadable.

Field manager: ``kustomize-controller``, the one Flux uses, so a cluster moved from Flux to
gitsail (or back) keeps one owner for every field: fields removed from Git are removed by
server-side apply, and neither controller fights the other over conflicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from gitsail.app.targets import TargetUnavailable
from gitsail.health import HealthStatus, resource_health
from gitsail.kinds.argo_cluster import ClusterConfigError, RemoteCluster, read_kubeconfig_secret
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_cel import HealthExpressions, compile_expression, ready_by_expression
from gitsail.kinds.flux_kustomization import API_VERSIONS, Kustomization, parse_kustomization
from gitsail.kinds.flux_kustomization_build import (
    BUILD_FAILED,
    Build,
    BuildCache,
    build,
    objects_digest,
    read_source,
)
from gitsail.kinds.records import DeletionPolicy, Dependency
from gitsail.kinds.status import (
    Condition,
    ReconcileError,
    Stalled,
    Transient,
    failure_conditions,
    put_condition,
    ready_conditions,
)
from gitsail.kube import (
    ConfigError,
    Conflict,
    Forbidden,
    Kube,
    KubeError,
    NotFoundKind,
    PreconditionFailed,
    service_account_user,
)
from gitsail.model import Obj, ResourceKey
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render import Renderer
from gitsail.source import GitSource
from gitsail.source.artifacts import ArtifactStore
from gitsail.sync import FluxLabels, Inventory, SyncOptions, SyncRequest, SyncResult, run_sync

if TYPE_CHECKING:
    import cel  # imported on first use: its package loads a CLI and prompt_toolkit

__all__ = [
    "API_VERSION",
    "DEPENDENCY_NOT_READY",
    "FIELD_MANAGER",
    "FINALIZER",
    "HEALTH_CHECK_FAILED",
    "RECONCILIATION_FAILED",
    "RECONCILIATION_SUCCEEDED",
    "KustomizationReconciler",
    "if_not_present",
    "prune_disabled",
    "skipped",
]

API_VERSION = API_VERSIONS[0]
FINALIZER = "finalizers.fluxcd.io"
HISTORY_LIMIT = 5
FIELD_MANAGER = "kustomize-controller"
APPLICATION_API_VERSION = "argoproj.io/v1alpha1"

# Reads an object (api_version, kind, name, namespace) from a watch cache: None if absent.
LiveGet = Callable[[str, str, str, str | None], Awaitable[Obj | None]]

RECONCILIATION_SUCCEEDED = "ReconciliationSucceeded"
RECONCILIATION_FAILED = "ReconciliationFailed"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
DEPENDENCY_NOT_READY = "DependencyNotReady"

_PREFIX = "kustomize.toolkit.fluxcd.io/"
RECONCILE_KEY = _PREFIX + "reconcile"
SSA_KEY = _PREFIX + "ssa"
PRUNE_KEY = _PREFIX + "prune"
FORCE_KEY = _PREFIX + "force"
# kustomize-controller garbage-collects with background propagation.
_FLUX_SYNC = SyncOptions({"PrunePropagationPolicy": "background"})
# The same, skipping the objects a pass found unchanged (SyncRequest.in_sync).
_FLUX_SYNC_CHANGED_ONLY = SyncOptions(
    {"PrunePropagationPolicy": "background", "ApplyOutOfSyncOnly": "true"}
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metadata_value(obj: Obj | None, key: str) -> str:
    """A Flux control key from the object's annotations, else its labels (lower case)."""
    meta = (obj or {}).get("metadata") or {}
    for field in ("annotations", "labels"):
        values = meta.get(field)
        if isinstance(values, Mapping) and key in values:
            return str(values[key]).lower()
    return ""


def skipped(obj: Obj | None) -> bool:
    """``…/reconcile: disabled`` or ``…/ssa: Ignore``: never applied."""
    return _metadata_value(obj, RECONCILE_KEY) == "disabled" or (
        _metadata_value(obj, SSA_KEY) == "ignore"
    )


def if_not_present(obj: Obj) -> bool:
    """``…/ssa: IfNotPresent``: created when absent, never updated."""
    return _metadata_value(obj, SSA_KEY) == "ifnotpresent"


def prune_disabled(live: Obj) -> bool:
    """``…/prune: disabled``, or ``…/reconcile: disabled`` (neither applied nor pruned)."""
    return (
        _metadata_value(live, PRUNE_KEY) == "disabled"
        or _metadata_value(live, RECONCILE_KEY) == "disabled"
    )


def _shown(key: ResourceKey) -> str:
    return f"{key.kind}/{key.namespace}/{key.name}" if key.namespace else f"{key.kind}/{key.name}"


@dataclass
class _Pass:
    """What one pass learnt that its status needs: when it started, what it built."""

    started: float
    digest: str | None = None  # sha256 of the built objects, once built
    revision: str = ""


@dataclass(frozen=True)
class _Target:
    api_version: str
    key: ResourceKey


@dataclass
class _Applied:
    """What this process last applied for one Kustomization: per object, the digest of the
    object as built and the ``resourceVersion`` the API server answered the apply with.

    ``context`` is what else the apply depended on (the identity it ran as, the target
    namespace, the last ``requestedAt``): when it changes, every object is applied again."""

    context: str
    objects: dict[ResourceKey, tuple[str, str]] = dataclasses.field(default_factory=dict)


class _Recording:
    """A ``Kube`` that notes the ``resourceVersion`` of every object it server-side applies
    for real (dry runs are not noted); everything else goes to ``inner`` unchanged."""

    def __init__(self, inner: Kube) -> None:
        self._inner = inner
        self.applied: dict[ResourceKey, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def apply(self, obj: Obj, *args: Any, **kwargs: Any) -> Obj:
        written = await self._inner.apply(obj, *args, **kwargs)
        if not kwargs.get("dry_run"):
            version = str((written.get("metadata") or {}).get("resourceVersion") or "")
            if version:
                self.applied[ResourceKey.of(written)] = version
        return written


class KustomizationReconciler:
    """Reconciles ``kustomize.toolkit.fluxcd.io`` Kustomizations (see the module docstring).

    ``kube`` is the control plane (the Kustomization, its source, ConfigMaps, Secrets,
    dependencies); ``target`` the cluster objects are applied to (default: the same).
    ``target_live`` reads the target's objects from watch caches (the controller's shared
    ones); without it, or with ``serviceAccountName`` (whose reads must be its own), the
    inventory is read with GETs. Only the objects still desired are read from it (to find
    those unchanged, see ``_unchanged``); prune candidates are always read from the server.
    ``now``, ``monotonic`` and ``sleep`` are the clock (tests pass a fake one).
    """

    api_version = API_VERSION
    kind = "Kustomization"

    def __init__(
        self,
        kube: Kube,
        *,
        git: GitSource,
        renderer: Renderer,
        policy: Policy = DEFAULT_POLICY,
        artifacts: ArtifactStore | None = None,
        target: Kube | None = None,
        poll_interval: float = 1.0,
        now: Callable[[], str] = _now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        builds: BuildCache | None = None,
        max_applied: int = 10_000,
        target_live: LiveGet | None = None,
        remote: RemoteCluster | None = None,
    ) -> None:
        self.kube = kube
        self.target = target if target is not None else kube
        self.git = git
        self.renderer = renderer
        self.policy = policy
        self.artifacts = artifacts  # where OCIRepository sources' archives are
        self.poll_interval = poll_interval
        self._now = now
        self._monotonic = monotonic
        self._sleep = sleep
        self.builds = builds if builds is not None else BuildCache()
        # What was last applied, per Kustomization (namespace, name, uid); bounded, least
        # recently used dropped first (its next pass then applies everything again).
        self._applied: OrderedDict[tuple[str, str, str], _Applied] = OrderedDict()
        self.max_applied = max_applied
        self.target_live = target_live
        # spec.kubeConfig clusters: the controller's pool, else clients kept here
        self.remote = remote
        self._remotes: dict[str, Kube] = {}

    # -- entry points ------------------------------------------------------------------

    async def reconcile(self, obj: Obj, reasons: Iterable[object] = ()) -> float | None:
        """One reconcile pass; the seconds until the next one (None: do not requeue)."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        try:
            ks = parse_kustomization(obj)
        except SpecError as exc:
            error = Stalled(RECONCILIATION_FAILED, str(exc))
            await self._write_status(obj, self._failed(obj, None, error))
            return None
        if FINALIZER not in (meta.get("finalizers") or []):
            obj = await self._add_finalizer(obj)
        if ks.sync.suspend:
            return None
        status = self._base_status(obj, ks)
        run = _Pass(started=self._monotonic())
        try:
            await self._run(ks, obj, status, run)
        except ReconcileError as error:
            failed = self._failed(obj, ks, error, status)
            await self._write_status(obj, self._with_history(obj, failed, run, error.reason))
            return ks.sync.retry_interval
        status = self._with_history(obj, status, run, RECONCILIATION_SUCCEEDED)
        await self._write_status(obj, status)
        return ks.sync.interval

    async def finalize(self, obj: Obj) -> None:
        """On deletion: prune the inventory as ``deletionPolicy`` says, then drop the
        finalizer. Raises ``Transient`` when objects could not be deleted (retry)."""
        meta = obj.get("metadata") or {}
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        try:
            ks: Kustomization | None = parse_kustomization(obj)
        except SpecError:
            ks = None  # unreadable: orphan what it applied rather than guess
        if ks is not None and _deletes(ks):
            await self._delete_inventory(ks, obj)
        await self._remove_finalizer(obj)
        self._forget(obj)

    # -- the pass ------------------------------------------------------------------------

    async def _run(self, ks: Kustomization, obj: Obj, status: dict[str, Any], run: _Pass) -> None:
        exprs = HealthExpressions(ks.health_check_exprs)
        source = await read_source(self.kube, ks)
        status["lastAttemptedRevision"] = source[1]
        await self._check_dependencies(ks, obj)
        built = await build(
            self.kube,
            ks,
            git=self.git,
            renderer=self.renderer,
            policy=self.policy,
            artifacts=self.artifacts,
            cache=self.builds,
            source=source,
        )
        run.digest, run.revision = built.digest or objects_digest(built.objects), built.revision
        inventory = _inventory_of(obj)
        target = await self._target_for(ks)
        try:
            result, applied, fresh = await self._apply(ks, target, built, inventory, obj)
            if result.inventory is not None:
                status["inventory"] = result.inventory.to_flux()
            if result.phase != "Succeeded":
                _raise_if_denied(ks, target, result.message)
                raise Transient(RECONCILIATION_FAILED, result.message)
            checks = self._health_targets(ks, applied)
            if checks is not None:
                await self._wait_healthy(ks, checks, exprs, kube=target, known=fresh)
        except Forbidden as exc:
            _raise_if_denied(ks, target, str(exc))
            raise Transient(RECONCILIATION_FAILED, str(exc)) from exc
        conditions = list(status.get("conditions") or [])
        if checks is not None:
            conditions = put_condition(
                conditions,
                Condition("Healthy", "True", "Succeeded", "Health check passed", ks.generation),
                self._now(),
            )
        else:
            conditions = [c for c in conditions if c.get("type") != "Healthy"]
        status["conditions"] = ready_conditions(
            conditions,
            reason=RECONCILIATION_SUCCEEDED,
            message=f"Applied revision: {built.revision}",
            generation=ks.generation,
            now=self._now(),
        )
        status["lastAppliedRevision"] = built.revision
        status["observedGeneration"] = ks.generation

    async def _target_for(self, ks: Kustomization) -> Kube:
        """The target cluster (``spec.kubeConfig``'s, else ``target``) as
        ``spec.serviceAccountName`` (the Kustomization's namespace), or with the controller's
        own identity when none is named."""
        base = self.target if ks.kube_config is None else await self._remote(ks)
        account = ks.sync.service_account_name
        if not account:
            return base
        return base.impersonating(service_account_user(ks.namespace, account))

    async def _remote(self, ks: Kustomization) -> Kube:
        """The cluster of ``spec.kubeConfig.secretRef``: the Secret read on the control
        plane, its kubeconfig checked (``read_flux_kubeconfig``), the client shared through
        ``remote`` (the controller's ClusterPool) or kept here per distinct kubeconfig."""
        assert ks.kube_config is not None
        try:
            config, digest = await read_kubeconfig_secret(self.kube, ks.namespace, ks.kube_config)
        except ClusterConfigError as exc:
            raise Transient(RECONCILIATION_FAILED, str(exc)) from None
        if self.remote is not None:
            try:
                return await self.remote(ks.namespace, ks.name, config, digest)
            except TargetUnavailable as exc:
                raise Transient(RECONCILIATION_FAILED, exc.message) from None
        kube = self._remotes.get(digest)
        if kube is None:
            try:
                kube = Kube(config, timeout=10.0)
            except ConfigError as exc:
                raise Transient(RECONCILIATION_FAILED, f"kubeConfig: {exc}") from None
            self._remotes[digest] = kube
        return kube

    # -- dependencies ---------------------------------------------------------------------

    async def _check_dependencies(self, ks: Kustomization, obj: Obj) -> None:
        for i, dep in enumerate(ks.dependencies):
            expr = (
                compile_expression(dep.ready_expr, f"spec.dependsOn[{i}].readyExpr")
                if dep.ready_expr
                else None
            )
            problem = await self._dependency_problem(ks, dep, obj, expr)
            if problem:
                raise Transient(
                    DEPENDENCY_NOT_READY,
                    f"{problem}, retrying in {ks.sync.retry_interval:g}s",
                    retry_after=ks.sync.retry_interval,
                )

    async def _dependency_problem(
        self, ks: Kustomization, dep: Dependency, obj: Obj, expr: cel.Program | None
    ) -> str:
        shown = f"'{dep.namespace}/{dep.name}'"
        api_version = API_VERSION if dep.kind == "Kustomization" else APPLICATION_API_VERSION
        try:
            live = await self.kube.get(api_version, dep.kind, dep.name, dep.namespace)
        except NotFoundKind:
            live = None
        except KubeError as exc:
            return f"unable to get {dep.kind} {shown}: {exc}"
        if live is None:
            return f"dependency {dep.kind} {shown} not found"
        if expr is not None:  # replaces the built-in check, as in Flux
            if ready_by_expression(expr, live, obj):
                return ""
            return f"dependency {shown} is not ready according to readyExpr"
        status = live.get("status") or {}
        if dep.kind == "Application":
            health = str((status.get("health") or {}).get("status") or "")
            sync = str((status.get("sync") or {}).get("status") or "")
            if (health, sync) != ("Healthy", "Synced"):
                state = f"{health or 'Unknown'}, {sync or 'Unknown'}"
                return f"dependency Application {shown} is not ready ({state})"
            return ""
        generation = (live.get("metadata") or {}).get("generation")
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if (
            ready is None
            or ready.get("status") != "True"
            or status.get("observedGeneration") != generation
        ):
            return f"dependency {shown} is not ready"
        try:
            other = parse_kustomization(live)
        except SpecError:
            return ""
        if other.source == ks.source:
            # Same source: the dependency must have applied the revision this one will build.
            _, revision = await read_source(self.kube, ks)
            if status.get("lastAppliedRevision") != revision:
                return f"dependency {shown} revision is not up to date"
        return ""

    # -- apply ------------------------------------------------------------------------------

    async def _read_live(self, target: Kube, api_version: str, key: ResourceKey) -> Obj | None:
        try:
            return await target.get(api_version, key.kind, key.name, key.namespace or None)
        except NotFoundKind:
            return None

    async def _apply(
        self, ks: Kustomization, target: Kube, built: Build, inventory: Inventory, obj: Obj
    ) -> tuple[SyncResult, list[_Target], dict[ResourceKey, Obj]]:
        """Sync the built objects; the result, what was applied (or found unchanged), and
        the live objects read this pass of those found unchanged (see ``_unchanged``)."""
        owner = FluxLabels(ks.name, ks.namespace)
        owned_live: list[Obj] = []
        live_by_key: dict[ResourceKey, Obj] = {}
        own = not ks.sync.service_account_name and ks.kube_config is None
        cached = self.target_live if own else None
        wanted = {ResourceKey.of(o) for o in built.objects}
        try:
            for entry in inventory:
                if cached is not None and entry.key in wanted:
                    live = await _read_cached(cached, entry.api_version, entry.key)
                else:
                    live = await self._read_live(target, entry.api_version, entry.key)
                if live is not None:
                    live_by_key[entry.key] = live
                    if not prune_disabled(live):
                        owned_live.append(live)
            desired: list[Obj] = []
            kept: list[Obj] = []  # skipped by annotation, but existing: stay in the inventory
            for item in built.objects:
                key = ResourceKey.of(item)
                live = live_by_key.get(key)
                policy = _metadata_value(item, SSA_KEY)
                if skipped(item) or skipped(live) or policy == "ifnotpresent":
                    if live is None and key not in live_by_key:
                        live = await self._read_live(target, str(item.get("apiVersion", "")), key)
                    if live is not None:
                        kept.append(live)
                        continue
                    if policy != "ifnotpresent":
                        continue  # Ignore / reconcile disabled, and absent: not created
                desired.append(item)
        except KubeError as exc:
            if isinstance(exc, Forbidden):
                _raise_if_denied(ks, target, str(exc))
            raise Transient(RECONCILIATION_FAILED, f"reading the inventory failed: {exc}") from exc
        kept_keys = {ResourceKey.of(o) for o in kept}
        owned_live = [o for o in owned_live if ResourceKey.of(o) not in kept_keys]
        memo_key = _memo_key(obj)
        context = self._apply_context(ks, target)
        digests = {ResourceKey.of(o): objects_digest([o]) for o in desired}
        unchanged = self._unchanged(memo_key, context, digests, live_by_key, owner)
        request = SyncRequest(
            destination_namespace=ks.render.target_namespace or "",
            desired=tuple(desired),
            owner=owner,
            inventory=inventory,
            owned_live=tuple(owned_live),
            prune=ks.sync.prune,
            options=_FLUX_SYNC_CHANGED_ONLY if unchanged else _FLUX_SYNC,
            in_sync=frozenset(unchanged),
            hooks=False,
            field_manager=FIELD_MANAGER,
            wave_timeout=ks.sync.timeout,
        )
        recording = _Recording(target)
        writer = cast(Kube, recording)
        result = await run_sync(writer, request)
        if result.phase == "Failed" and await self._recreate_immutable(ks, target, result, desired):
            result = await run_sync(writer, request)
        self._remember(memo_key, context, digests, unchanged, recording.applied)
        if result.inventory is not None and kept:
            held = Inventory.of(kept)
            result = SyncResult(
                result.phase, result.message, result.resources, result.inventory.merge(held)
            )
        applied = [
            _Target(f"{r.key.group}/{r.version}" if r.key.group else r.version, r.key)
            for r in result.resources
            if r.status == "Synced"
        ]
        applied += [
            _Target(str(o.get("apiVersion", "")), ResourceKey.of(o))
            for o in desired
            if ResourceKey.of(o) in unchanged
        ]
        return result, applied, {k: live_by_key[k] for k in unchanged}

    # -- what is known applied ------------------------------------------------------------

    def _apply_context(self, ks: Kustomization, target: Kube) -> str:
        return json.dumps(
            [target.impersonated_user, ks.render.target_namespace, ks.requested_at],
            separators=(",", ":"),
        )

    def _unchanged(
        self,
        memo_key: tuple[str, str, str],
        context: str,
        digests: Mapping[ResourceKey, str],
        live_by_key: Mapping[ResourceKey, Obj],
        owner: FluxLabels,
    ) -> set[ResourceKey]:
        """The desired objects that need no apply: this process applied the same object
        (same digest, same context) and the live object read this pass still has the
        ``resourceVersion`` that apply returned, so nobody wrote it since (any write, a
        manual edit included, changes it; a deleted object is not read; a changed spec
        or source changes the digest). Everything else is dry-run and applied."""
        memo = self._applied.get(memo_key)
        if memo is None or memo.context != context:
            return set()
        self._applied.move_to_end(memo_key)
        unchanged = set()
        for key, digest in digests.items():
            known = memo.objects.get(key)
            live = live_by_key.get(key)
            if known is None or live is None or owner.claimant(live) is not None:
                continue
            version = str((live.get("metadata") or {}).get("resourceVersion") or "")
            if known == (digest, version) and version:
                unchanged.add(key)
        return unchanged

    def _remember(
        self,
        memo_key: tuple[str, str, str],
        context: str,
        digests: Mapping[ResourceKey, str],
        unchanged: set[ResourceKey],
        written: Mapping[ResourceKey, str],
    ) -> None:
        """Record this pass's applies (bounded; see ``_unchanged``). An object neither
        applied nor found unchanged is forgotten, so its next pass applies it."""
        memo = self._applied.get(memo_key)
        before = memo.objects if memo is not None and memo.context == context else {}
        objects = {k: before[k] for k in unchanged if k in before}
        for key, version in written.items():
            digest = digests.get(key)
            if digest is not None:
                objects[key] = (digest, version)
        self._applied[memo_key] = _Applied(context, objects)
        self._applied.move_to_end(memo_key)
        while len(self._applied) > self.max_applied:
            self._applied.popitem(last=False)

    def _forget(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        self._applied.pop(_memo_key(obj), None)
        self.builds.forget((str(meta.get("namespace") or ""), str(meta.get("name") or "")))

    async def _recreate_immutable(
        self, ks: Kustomization, target: Kube, result: SyncResult, desired: Sequence[Obj]
    ) -> bool:
        """With force, delete the objects whose dry run failed on an immutable field;
        whether any was deleted (then the sync runs again and creates them)."""
        forced = {
            ResourceKey.of(o)
            for o in desired
            if ks.sync.force or _metadata_value(o, FORCE_KEY) == "enabled"
        }
        deleted = False
        for r in result.resources:
            if r.status != "SyncFailed" or "immutable" not in r.message or r.key not in forced:
                continue
            api_version = f"{r.key.group}/{r.version}" if r.key.group else r.version
            live = await self._read_live(target, api_version, r.key)
            if live is None:
                continue
            owner = FluxLabels(ks.name, ks.namespace)
            if owner.claimant(live) is not None:
                continue  # another delivery's object: never deleted, the dry run says why
            meta = live.get("metadata") or {}
            try:
                await target.delete(
                    api_version,
                    r.key.kind,
                    r.key.name,
                    r.key.namespace or None,
                    propagation="Foreground",
                    preconditions={"uid": str(meta.get("uid") or "")},
                )
            except PreconditionFailed:
                continue
            await self._wait_gone(target, api_version, r.key, ks.sync.timeout)
            deleted = True
        return deleted

    async def _wait_gone(
        self, target: Kube, api_version: str, key: ResourceKey, within: float
    ) -> bool:
        deadline = self._monotonic() + within
        while await self._read_live(target, api_version, key) is not None:
            if self._monotonic() > deadline:
                return False
            await self._sleep(self.poll_interval)
        return True

    # -- health -------------------------------------------------------------------------------

    def _health_targets(self, ks: Kustomization, applied: list[_Target]) -> list[_Target] | None:
        """What must be healthy: every applied object (wait), the healthChecks, or None."""
        if ks.sync.wait:
            return applied
        if not ks.health_checks:
            return None
        by_kind = {(t.key.kind, t.key.name, t.key.namespace): t for t in applied}
        targets = []
        for check in ks.health_checks:
            namespace = check.namespace or ""
            known = by_kind.get((check.kind, check.name, namespace))
            api_version = check.api_version or (known.api_version if known else "")
            if not api_version:
                api_version = self._served_version(check.kind)
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            targets.append(
                _Target(api_version, ResourceKey(group, check.kind, namespace, check.name))
            )
        return targets

    def _served_version(self, kind: str) -> str:
        try:
            found = [r for r in self.target.mapper.resources() if r.kind == kind]
        except (RuntimeError, KubeError):
            found = []
        return found[0].api_version if found else ""

    async def _wait_healthy(
        self,
        ks: Kustomization,
        targets: list[_Target],
        exprs: HealthExpressions | None = None,
        *,
        kube: Kube | None = None,
        known: Mapping[ResourceKey, Obj] | None = None,
    ) -> None:
        """Wait until every target is healthy, reading them through ``kube`` (default: the
        target cluster with the controller's identity). ``known`` are live objects read
        moments ago in this pass: the first round judges those without reading again."""
        kube = kube if kube is not None else self.target
        started = self._monotonic()
        deadline = started + ks.sync.timeout
        pending = list(targets)
        first = dict(known or {})
        while True:
            waiting: list[tuple[_Target, str]] = []
            failed: list[tuple[_Target, str]] = []
            for target in pending:
                read = first.pop(target.key, None)
                status = await self._health_of(kube, target, exprs, read)
                if status == "Current":
                    continue
                (failed if status == "Failed" else waiting).append((target, status))
            elapsed = self._monotonic() - started
            if failed:
                raise Transient(
                    HEALTH_CHECK_FAILED,
                    f"health check failed after {elapsed:.1f}s: failed early due to stalled "
                    f"resources: [{_listed(failed)}]",
                )
            if not waiting:
                return
            if self._monotonic() >= deadline:
                raise Transient(
                    HEALTH_CHECK_FAILED,
                    f"health check failed after {elapsed:.1f}s: timeout waiting for: "
                    f"[{_listed(waiting)}]",
                )
            pending = [t for t, _ in waiting]
            await self._sleep(self.poll_interval)

    async def _health_of(
        self,
        kube: Kube,
        target: _Target,
        exprs: HealthExpressions | None,
        read: Obj | None = None,
    ) -> str:
        """kstatus's words: Current, InProgress, Failed, NotFound (CEL first, if any), of
        ``read`` or else the object read now. ``Forbidden`` is raised (waiting would not
        make it allowed)."""
        if not target.api_version:
            return "NotFound"
        try:
            live = read or await self._read_live(kube, target.api_version, target.key)
        except Forbidden:
            raise
        except KubeError:
            return "Unknown"
        if live is None:
            return "NotFound"
        by_expression = exprs.status(live) if exprs else None
        if by_expression is not None:
            return by_expression
        health = resource_health(live, honour_ignore_annotation=False)
        if health is None or health.status in (HealthStatus.Healthy, HealthStatus.Suspended):
            return "Current"
        if health.status is HealthStatus.Degraded:
            return "Failed"
        return "InProgress"

    # -- deletion ---------------------------------------------------------------------------

    async def _delete_inventory(self, ks: Kustomization, obj: Obj) -> None:
        try:
            inventory = _inventory_of(obj)
        except Stalled:
            return  # unreadable: nothing is known to be this Kustomization's
        if not inventory:
            return
        target = await self._target_for(ks)
        owned: list[Obj] = []
        try:
            for entry in inventory:
                live = await self._read_live(target, entry.api_version, entry.key)
                if live is not None and not prune_disabled(live):
                    owned.append(live)
        except Forbidden as exc:
            _raise_if_denied(ks, target, str(exc), doing="prune the inventory")
            raise
        result = await run_sync(
            target,
            SyncRequest(
                destination_namespace="",
                desired=(),
                owner=FluxLabels(ks.name, ks.namespace),
                inventory=inventory,
                owned_live=tuple(owned),
                prune=True,
                options=_FLUX_SYNC,
                hooks=False,
                field_manager=FIELD_MANAGER,
            ),
        )
        if result.phase != "Succeeded":
            _raise_if_denied(ks, target, result.message, doing="prune the inventory")
            raise Transient("PruneFailed", f"deleting the inventory failed: {result.message}")
        if ks.sync.deletion_policy is DeletionPolicy.WAIT_FOR_TERMINATION:
            for entry in inventory:
                if not await self._wait_gone(target, entry.api_version, entry.key, ks.sync.timeout):
                    raise Transient(
                        "PruneFailed", f"{_shown(entry.key)} is still terminating, retrying"
                    )

    # -- metadata and status -----------------------------------------------------------------

    async def _add_finalizer(self, obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        finalizers = [*(meta.get("finalizers") or []), FINALIZER]
        return await self.kube.merge_patch(
            str(obj.get("apiVersion") or API_VERSION),
            self.kind,
            str(meta.get("name")),
            {
                "metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            },
            str(meta.get("namespace")),
            field_manager=FIELD_MANAGER,
        )

    async def _remove_finalizer(self, obj: Obj) -> None:
        """Drop our finalizer, at the resourceVersion read (re-read on a conflict: another
        writer may have changed the object, and its finalizers must be kept)."""
        api_version = str(obj.get("apiVersion") or API_VERSION)
        for _ in range(5):
            meta = obj.get("metadata") or {}
            if FINALIZER not in (meta.get("finalizers") or []):
                return
            finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            patch = {
                "metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            try:
                await self.kube.merge_patch(
                    api_version,
                    self.kind,
                    str(meta.get("name")),
                    patch,
                    str(meta.get("namespace")),
                    field_manager=FIELD_MANAGER,
                )
                return
            except Conflict:
                fresh = await self.kube.get(
                    api_version, self.kind, str(meta.get("name")), str(meta.get("namespace"))
                )
                if fresh is None:
                    return
                obj = fresh
        raise Transient(RECONCILIATION_FAILED, "the finalizer could not be removed: conflicts")

    def _base_status(self, obj: Obj, ks: Kustomization) -> dict[str, Any]:
        status = dict(obj.get("status") or {})
        if ks.requested_at:
            status["lastHandledReconcileAt"] = ks.requested_at
        return status

    def _failed(
        self,
        obj: Obj,
        ks: Kustomization | None,
        error: ReconcileError,
        status: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        status = dict(status if status is not None else obj.get("status") or {})
        generation = (obj.get("metadata") or {}).get("generation")
        conditions = list(status.get("conditions") or [])
        if error.reason == HEALTH_CHECK_FAILED:
            healthy = Condition("Healthy", "False", HEALTH_CHECK_FAILED, error.message, generation)
            conditions = put_condition(conditions, healthy, self._now())
        status["conditions"] = failure_conditions(
            conditions, error, generation=generation, now=self._now()
        )
        if isinstance(error, Stalled) and generation is not None:
            status["observedGeneration"] = generation
        return status

    def _with_history(
        self, obj: Obj, status: dict[str, Any], run: _Pass, reason: str
    ) -> dict[str, Any]:
        """``status`` with this pass in ``history`` (Flux's last 5, newest first, one entry
        per digest and outcome). A pass that built nothing has no entry; a pass that
        changed nothing (same status, same digest and outcome as the newest entry) leaves
        history alone, so it writes nothing: ``lastReconciled`` and
        ``totalReconciliations`` count the passes that changed the status."""
        if run.digest is None:
            return status
        current = dict(obj.get("status") or {})
        history = [dict(e) for e in status.get("history") or [] if isinstance(e, Mapping)]
        head = history[0] if history else {}
        same = (head.get("digest"), head.get("lastReconciledStatus")) == (run.digest, reason)
        rest_same = {k: v for k, v in status.items() if k != "history"} == {
            k: v for k, v in current.items() if k != "history"
        }
        if same and rest_same:
            return status
        now = self._now()
        found = next(
            (
                e
                for e in history
                if (e.get("digest"), e.get("lastReconciledStatus")) == (run.digest, reason)
            ),
            None,
        )
        if found is not None:
            history.remove(found)
        total = int(found.get("totalReconciliations") or 0) if found else 0
        entry = {
            "digest": run.digest,
            "firstReconciled": (found or {}).get("firstReconciled") or now,
            "lastReconciled": now,
            "lastReconciledDuration": _go_duration(self._monotonic() - run.started),
            "lastReconciledStatus": reason,
            "totalReconciliations": total + 1,
            "metadata": {"revision": run.revision},
        }
        return {**status, "history": [entry, *history][:HISTORY_LIMIT]}

    async def _write_status(self, obj: Obj, status: dict[str, Any]) -> None:
        """One merge patch of ``/status``; nothing when it did not change."""
        current = obj.get("status") or {}
        if status == current:
            return
        patch: dict[str, Any] = dict(status)
        for key in current:
            if key not in status:
                patch[key] = None
        meta = obj.get("metadata") or {}
        await self.kube.merge_patch(
            str(obj.get("apiVersion") or API_VERSION),
            self.kind,
            str(meta.get("name")),
            {"status": patch},
            str(meta.get("namespace")),
            subresource="status",
            field_manager=FIELD_MANAGER,
        )


def _raise_if_denied(
    ks: Kustomization, target: Kube, message: str, *, doing: str = "apply"
) -> None:
    """``ReconciliationFailed`` naming the ServiceAccount when the API server refused
    (``Forbidden``) what the impersonated ServiceAccount asked: its RBAC does not allow it."""
    user = target.impersonated_user
    if user is None or f'User "{user}" cannot' not in message:
        return
    raise Transient(
        RECONCILIATION_FAILED,
        f"ServiceAccount '{ks.namespace}/{ks.sync.service_account_name}' "
        f"(spec.serviceAccountName) is not allowed to {doing}: {message}",
    )


def _deletes(ks: Kustomization) -> bool:
    """Whether deleting the Kustomization deletes what it applied (``deletionPolicy``)."""
    if ks.sync.suspend:
        return False
    policy = ks.sync.deletion_policy
    if policy is DeletionPolicy.MIRROR_PRUNE:
        return ks.sync.prune
    return policy in (DeletionPolicy.DELETE, DeletionPolicy.WAIT_FOR_TERMINATION)


def _inventory_of(obj: Obj) -> Inventory:
    try:
        return Inventory.from_flux((obj.get("status") or {}).get("inventory"))
    except ValueError as exc:
        raise Stalled(BUILD_FAILED, f"status.inventory is unreadable: {exc}") from exc


async def _read_cached(read: LiveGet, api_version: str, key: ResourceKey) -> Obj | None:
    try:
        return await read(api_version, key.kind, key.name, key.namespace or None)
    except NotFoundKind:
        return None


def _memo_key(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
    )


def _go_duration(seconds: float) -> str:
    """Seconds as Go's ``time.Duration`` prints them: ``2.818583s``, ``1m2.5s``."""
    micros = max(0, round(seconds * 1_000_000))
    minutes, micros = divmod(micros, 60_000_000)
    hours, minutes = divmod(minutes, 60)
    text = f"{micros / 1_000_000:.6f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _listed(items: Sequence[tuple[_Target, str]]) -> str:
    return ", ".join(f"{_shown(t.key)} status: '{s}'" for t, s in items)
