"""Reconciling one Application: what Argo CD's application controller does for it.

Each call starts from the Application as it is now (level-triggered) and does at most one
of these, in order:

1. **Deletion.** With ``resources-finalizer.argocd.argoproj.io`` (foreground) or
   ``…/background``, delete every object the app owns, wait until they are gone, then
   drop the finalizer. Without it the app goes and its objects stay.
2. **A requested operation** (the ``operation`` field: ``argocd app sync``, a UI button,
   an automated sync set by us). It runs; on failure with retries left (the operation's
   ``retry``: ``limit`` retries after the first attempt, negative for no limit; automated
   syncs get Argo CD's implicit ``limit: 5``) it stays ``Running`` with ``finishedAt`` and
   ``retryCount`` + 1, and retry *n* starts no sooner than ``finishedAt`` + ``duration ×
   factorⁿ⁻¹`` (capped at ``maxDuration``, default 5 s, 2, 3 m). The wait is computed from
   the Application itself, so a reconcile woken early (an event, a restart) waits on.
   An operation interrupted by a restart resumes from the progress it recorded (hooks
   that ran are not run again; ``AppEngine.sync``), or runs again if it recorded none.
3. **Refresh**: fetch, render, dry-run, diff; write status when it changed. A comparison
   error is written once (its message is stable, so an unchanged error is not rewritten)
   and backs off: 5 s doubling per consecutive failure up to the resync interval, started
   over by a new spec, a new revision, a push or a refresh request.
   When the only news is that managed objects' health changed (a status-only change, e.g.
   a Deployment becoming Available), the last comparison is re-assessed from the watch
   cache instead: no fetch, no render, no dry run; status is written if health changed.
4. **Automated sync**, when the app is OutOfSync: once per revision (a failed revision is
   not retried beyond the retry policy); live drift on an already-synced revision is healed
   only with ``selfHeal``, after Argo CD's self-heal backoff (2 s × 3ⁿ, capped at 5 min),
   touching only the drifted resources and running no hooks; the count of consecutive
   heals lives in the operation (``selfHealAttemptsCount``) and starts over after 330 s
   without drift (Argo CD's cool-down). Refused with a condition when
   the render is empty and pruning would wipe the app (unless ``allowEmpty``).

Drift is attributed from ``managedFields``: who changed which field, and when, goes into
a ``DriftDetected`` event and ``status.drift``.

**Status is written once per reconcile.** The steps above put what they want into a
``StatusPatch`` (``gitsail.controller.status_patch``): the comparison's status, a
comparison error, the drift report, a failure's condition. It is sent at the end, as one
merge patch on the Application (its CRD has no ``/status`` subresource; Argo CD patches
the object too), and not at all when it would change nothing. Two writes stay separate:

- the operation flow (step 2) records ``operationState``, history and the status after the
  sync as it runs (``AppEngine.sync``): a status written once at the end would hide a
  ``Running`` operation from ``argocd app wait`` and from a restarted controller, which is
  Argo CD's semantics; the collector sends what it holds before the operation starts;
- removing the refresh annotation is a metadata write made before the comparison, so a push
  recorded while the comparison runs is not removed with it.

**Failures are typed** (``gitsail.kinds.status``): ``classify`` maps an exception to
``Stalled`` (``InvalidSpecError``: nothing happens until the spec changes) or ``Transient``
(``ComparisonError``, ``UnknownError``: retried after ``error_resync``), whose reason is
the condition type Argo CD writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitsail import codec
from gitsail.app.admission import INVALID_SPEC
from gitsail.app.engine import (
    AppEngine,
    Comparison,
    ComparisonError,
    now,
    operation_start,
    restamped,
)
from gitsail.app.model import Retry
from gitsail.app.sops import SOPS_ANNOTATION
from gitsail.controller.events import EventRecorder
from gitsail.controller.metrics import Metrics
from gitsail.controller.registry import KindAPI, KindDefaults, ObjectKey
from gitsail.controller.status_patch import StatusPatch
from gitsail.diff import DiffError, attribute_drift
from gitsail.kinds.argo_application import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    App,
    AppSpecError,
    parse_retry,
    resources_status,
)
from gitsail.kinds.argo_appproject_admission import (
    ProjectAdmission,
    retype_error,
    window_blocked,
    window_conditions,
)
from gitsail.kinds.argo_appproject_orphans import ORPHAN_CONDITION
from gitsail.kinds.status import ReconcileError, Stalled, Transient
from gitsail.kube import KubeError
from gitsail.model import Obj, ResourceKey
from gitsail.render import RenderError
from gitsail.source import SourceError, input_files

__all__ = [
    "APPLICATION_API",
    "REFRESH_ANNOTATION",
    "AppReconciler",
    "ReconcileSettings",
    "app_key_for_instance",
    "classify",
    "error_backoff",
    "operation_retry",
    "retry_wait",
]

log = logging.getLogger(__name__)

# Seconds between looks at an app's namespace for orphaned resources (Argo CD's default
# reconciliation period); a refresh request or a changed project looks at once.
ORPHAN_INTERVAL = 180.0

FINALIZER = "resources-finalizer.argocd.argoproj.io"
SKIP_RECONCILE = "argocd.argoproj.io/skip-reconcile"
# Set by a webhook on any replica (as Argo CD's server does); removed once refreshed here.
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
WIPE_OUT_MESSAGE = "auto-sync will wipe out all resources"
IMPLICIT_AUTOMATED_RETRY = {"limit": 5}  # Argo CD's retry for automated syncs without one
APPLICATION_API = KindAPI(API_VERSION, "Application")
# The conditions a failed reconcile leaves; a good comparison clears them all.
FAILURE_CONDITIONS = ("ComparisonError", "InvalidSpecError", "UnknownError")

# An Application by namespace and name (what memory and the metrics are keyed by).
AppName = tuple[str, str]


@dataclass(frozen=True)
class ReconcileSettings:
    resync: float = 120.0  # argocd-cm timeout.reconciliation
    jitter: float = 60.0  # argocd-cm timeout.reconciliation.jitter
    error_backoff: float = 5.0  # first wait after a ComparisonError; doubles up to resync
    error_resync: float = 30.0  # retry after an unexpected failure (UnknownError)
    self_heal_timeout: float = 2.0
    self_heal_factor: float = 3.0
    self_heal_cap: float = 300.0
    self_heal_cooldown: float = 330.0  # controller.self.heal.backoff.cooldown.seconds
    control_namespace: str = DEFAULT_NAMESPACE
    # Seconds after which an unchanged status is written again (``reconciledAt`` moves);
    # 0: only when something in it changes or a refresh is asked for. Off by default: at
    # 1000 apps a 5-minute heartbeat alone is 3.3 writes/s to the apiserver, and each
    # write wakes the app once more. A stalled controller shows in its metrics instead.
    status_heartbeat: float = 0.0

    def next_refresh(self) -> float:
        return self.resync + random.uniform(0, self.jitter)  # noqa: S311 (jitter, not crypto)

    def error_delay(self, failures: int) -> float:
        return error_backoff(failures, self.error_backoff, self.resync)


def error_backoff(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th consecutive comparison error."""
    return float(min(base * 2.0 ** min(max(failures - 1, 0), 32), max(cap, base)))


def operation_retry(app: App, operation: dict[str, Any]) -> Retry:
    """The retry strategy of ``operation``, as Argo CD reads it.

    The operation's own ``retry`` counts (``argocd app sync --retry-limit``, or the one an
    automated sync was started with). An operation written without the field (a
    ``kubectl patch``) gets the app's ``syncPolicy.retry``, as Argo CD's API server would
    have copied it; an automated one without any gets the implicit ``limit: 5``.
    Raises AppSpecError or ValueError when the strategy cannot be read.
    """
    automated = bool((operation.get("initiatedBy") or {}).get("automated"))
    if "retry" not in operation:
        return app.retry
    spec = operation.get("retry")
    if spec is not None and not isinstance(spec, dict):
        raise AppSpecError(f"operation.retry must be a mapping, not {type(spec).__name__}")
    return parse_retry(spec, automated=automated)


def retry_wait(state: dict[str, Any], retry: Retry, now: float) -> float:
    """Seconds until the scheduled retry of a failed attempt may start (0: now).

    ``state`` is the ``operationState`` of an operation still ``Running`` after a failed
    attempt: ``finishedAt`` is when that attempt failed and ``retryCount`` the number of
    the retry it scheduled, so retry *n* waits ``retry.delay(n - 1)``: duration × factorⁿ⁻¹.
    """
    finished = _parse_time(str(state.get("finishedAt") or ""))
    if finished is None:
        return 0.0
    count = _count(state.get("retryCount"))
    return max(0.0, finished + retry.delay(max(count - 1, 0)) - now)


def classify(exc: Exception, *, retry_after: float) -> ReconcileError:
    """What a failed reconcile means: its condition type (the reason) and what happens next.

    A spec that cannot be read is ``Stalled`` (``InvalidSpecError``: only an edit helps);
    a source, render or diff failure is ``Transient`` (``ComparisonError``: a new commit or
    a repaired server may fix it); anything else is ``Transient`` (``UnknownError``).
    """
    if isinstance(exc, AppSpecError):
        return Stalled("InvalidSpecError", str(exc)[:2000])
    if isinstance(exc, ComparisonError | SourceError | RenderError | DiffError):
        # Argo CD's condition type; retried even when the cause is in Git (a stalled
        # ComparisonError): only polling notices the commit that fixes it.
        return Transient("ComparisonError", str(exc)[:2000], retry_after=retry_after)
    if isinstance(exc, ReconcileError):
        return exc
    return Transient("UnknownError", f"{type(exc).__name__}: {exc}"[:2000], retry_after=retry_after)


def app_key_for_instance(instance: str, control_namespace: str) -> AppName:
    """The Application behind a tracking-id's app name (``ns_name`` outside argocd)."""
    namespace, sep, name = instance.partition("_")
    return (namespace, name) if sep else (control_namespace, instance)


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (``reconciledAt``); None when absent or
    unreadable (the throttle then starts from zero, as before)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


@dataclass
class _Memory:
    """What one controller remembers about an app between reconciles (lost on restart)."""

    last_heal_revision: str = ""
    input_paths: frozenset[str] | None = None
    revision: str | None = None  # the commit the last comparison used
    last_status_write: float | None = None  # None: the next status is written anyway
    drift_reported: set[str] = field(default_factory=set)
    # The last full comparison while nothing ran since: re-assessed on health-only news;
    # kept lean (``_retained``), with the digest of the spec it was made for.
    comparison: Comparison | None = None
    comparison_spec: str = ""
    # What the comparison read (``AppEngine.comparison_stamp``): taken by a poll just before
    # it compared, or by another full comparison around it; moved along by a health-only
    # re-assessment. A later poll with an equal stamp reuses the comparison. Any other
    # reconcile clears it.
    poll_stamp: tuple[Any, ...] | None = None
    # Consecutive comparison errors and what they happened under (backoff resets).
    failures: int = 0
    failed_at: float = 0.0
    failed_spec: str = ""
    failed_revision: str = ""
    failed_refresh: str = ""
    # AppProject orphanedResources: the warning's message ("" none; None: no opinion yet,
    # the condition is left as it is), when and under which project it was last looked at.
    orphan_message: str | None = None
    orphans_at: float | None = None
    orphans_project: Any = None
    # The Application object last read (with its spec and metadata), the App made of it and
    # the digest of its spec: reused while the watch cache hands out that same object
    # (every poll of an idle app; a cached object is replaced, never changed in place).
    parsed: tuple[tuple[Obj, Any, Any], App, str] | None = None
    # The Application object, comparison and orphan message a status was last found
    # unchanged for (``_write_status_if_changed``): the same three are unchanged again.
    quiet: tuple[Obj, Comparison, str | None] | None = None


class AppReconciler(KindDefaults):
    """The Argo CD ``Application`` kind: the first reconciler of the registry of kinds."""

    api = APPLICATION_API

    def __init__(
        self,
        engine: AppEngine,
        *,
        settings: ReconcileSettings,
        metrics: Metrics,
        events: EventRecorder,
        get_application: Any,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self._get_application = get_application
        self.clock = clock
        self.wall_clock = wall_clock
        self.field_manager = engine.field_manager
        self.control_namespace = settings.control_namespace
        self.memory: dict[AppName, _Memory] = {}
        # The status patch of the reconcile running for each app (one at a time per app).
        self._patches: dict[AppName, StatusPatch] = {}
        self._refreshing: set[AppName] = set()  # refresh requests taken by this reconcile

    # -- the registry's view (KindReconciler) --------------------------------------------

    def forget(self, key: ObjectKey) -> None:
        self.memory.pop((key.namespace, key.name), None)
        self.metrics.forget_app(key.namespace, key.name)

    async def finalize(self, obj: Obj) -> float | None:
        return await self.reconcile(obj, frozenset({"deleting"}))

    def ready(self, obj: Obj) -> bool:
        """Synced and Healthy, as ``argocd app wait --sync --health`` reads an app."""
        status = obj.get("status") or {}
        return (status.get("sync") or {}).get("status") == "Synced" and (
            status.get("health") or {}
        ).get("status") == "Healthy"

    # -- entry point ---------------------------------------------------------------------

    async def reconcile(self, obj: Obj | AppName, reasons: frozenset[str]) -> float | None:
        """Converge one Application: ``obj`` as the watch cache has it, or its
        ``(namespace, name)``; it is read again from the server unless this is a poll."""
        if isinstance(obj, tuple):
            key: AppName = obj
        else:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        started = time.monotonic()
        delay: float | None
        try:
            delay = await self._reconcile(key, reasons)
        except Exception as exc:  # every failure becomes a condition on the app
            delay = await self._report_failure(key, exc)
        try:
            return await self._send_status(key, delay)
        finally:
            if key in self._refreshing:  # after the status is written: the CLI waits for it
                self._refreshing.discard(key)
                await self._take_refresh_request(key)
            self.metrics.observe_reconcile(key[0], time.monotonic() - started)

    async def _send_status(self, key: AppName, delay: float | None) -> float | None:
        """Send the reconcile's one status patch (nothing when it changes nothing)."""
        patch = self._patches.pop(key, None)
        if patch is None:
            return delay
        try:
            written = await patch.send(self.engine.kube)
        except KubeError as exc:
            log.warning("cannot write the status of %s/%s: %s", *key, exc)
            memory = self.memory.get(key)
            if memory is not None:
                memory.last_status_write = None  # the next reconcile writes it again
            retry = self.settings.error_resync
            return retry if delay is None else min(delay, retry)
        if written is not None and key in self.memory:
            self.memory[key].last_status_write = self.clock()
        return delay

    async def _flush_status(self, key: AppName) -> None:
        """Send what was collected now: a flow with its own status writes follows."""
        patch = self._patches.get(key)
        written = await patch.send(self.engine.kube) if patch is not None else None
        if written is not None and key in self.memory:
            self.memory[key].last_status_write = self.clock()

    async def _report_failure(self, key: AppName, exc: Exception) -> float | None:
        """Turn a failed reconcile into a condition on the app, as Argo CD does.

        ``classify`` says which (the condition type) and what happens next: ``Stalled`` is
        not retried (a spec change wakes the app), ``Transient`` is retried after
        ``error_resync``. The condition joins the reconcile's status patch, which changes
        nothing when the same condition is already there, so a repeating failure leaves the
        status as it is and cannot wake the app again.
        """
        error = classify(exc, retry_after=self.settings.error_resync)
        if error.reason == "UnknownError":
            log.error("reconcile of %s/%s failed", *key, exc_info=exc)
        else:
            log.warning("reconcile of %s/%s failed (%s): %s", *key, error.reason, error.message)
        memory = self.memory.get(key)
        if memory is not None:
            memory.last_status_write = None  # the next good reconcile rewrites status
        try:
            obj = await self._get_application(key[0], key[1], True)
        except KubeError as read_error:
            log.warning("could not record %s on %s/%s: %s", error.reason, *key, read_error)
            obj = None
        if obj is not None and (obj.get("metadata") or {}).get("name"):
            patch = self._patches.get(key)
            if patch is None:
                patch = self._patches[key] = StatusPatch(obj, self.api)
            else:
                patch.rebase(obj)  # the failure may come after writes of this reconcile
            patch.put_condition(error.reason, error.message, at=now())
        if isinstance(error, Stalled):
            return None
        if isinstance(error, Transient) and error.retry_after is not None:
            return error.retry_after
        return self.settings.error_resync

    async def _reconcile(self, key: AppName, reasons: frozenset[str]) -> float | None:
        namespace, name = key
        # A periodic poll may read the watch cache; anything else reads the apiserver, so a
        # just-written operation or status is never acted on twice.
        fresh = reasons != frozenset({"requeue"})
        obj: Obj | None = await self._get_application(namespace, name, fresh)
        if obj is None:
            self.forget(ObjectKey(self.api.kind, namespace, name))
            return None
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return await self._finalize(obj)
        if (meta.get("annotations") or {}).get(SKIP_RECONCILE) == "true":
            return None
        patch = self._patches[key] = StatusPatch(obj, self.api)
        memory = self.memory.get(key)
        seen = (obj, obj.get("spec"), obj.get("metadata"))
        if (
            memory is not None
            and memory.parsed is not None
            and all(a is b for a, b in zip(memory.parsed[0], seen, strict=True))
        ):
            app = memory.parsed[1]
        else:
            app = App.from_application(obj)  # AppSpecError: InvalidSpecError (_report_failure)
            if memory is None:
                memory = self.memory[key] = self._first_sight(obj)
            memory.parsed = (seen, app, _digest(obj.get("spec")))
        if REFRESH_ANNOTATION in (meta.get("annotations") or {}):
            # A refresh request (a push, `gitsail app get --refresh`): ask git again, write
            # status even when unchanged (reconciledAt moves), and remove the annotation once
            # the status is written (``reconcile``), as Argo CD's controller does: the CLI
            # waits for it to go.
            self.engine.git.forget(app.repo_url)
            memory.last_status_write = None
            self._refreshing.add(key)
        return await self._reconcile_app(app, obj, memory, reasons, patch)

    def _first_sight(self, obj: Obj) -> _Memory:
        """Memory for an app this process has not seen yet (a start, a restart, a shard
        taken over): the status write throttle starts from the ``reconciledAt`` the app
        already carries, so a restarted controller does not rewrite every unchanged status
        (each write would also wake the app once more)."""
        memory = _Memory()
        written = _epoch((obj.get("status") or {}).get("reconciledAt"))
        if written is not None:
            age = max(0.0, self.wall_clock() - written)  # a clock ahead of ours: just now
            memory.last_status_write = self.clock() - age
        return memory

    async def _reconcile_app(
        self, app: App, obj: Obj, memory: _Memory, reasons: frozenset[str], patch: StatusPatch
    ) -> float | None:
        meta = obj.get("metadata") or {}
        if isinstance(obj.get("operation"), dict):
            return await self._run_operation(app, memory)
        assert memory.parsed is not None  # (_reconcile)
        spec = memory.parsed[2]
        refresh = str((meta.get("annotations") or {}).get(REFRESH_ANNOTATION) or "")
        if memory.failures:
            if (
                spec != memory.failed_spec
                or refresh  # a refresh request (removed above once taken)
                or "webhook" in reasons
                # its destination cluster answers again, or its Secret changed
                or any(r.startswith(("cluster:", "cluster-secret")) for r in reasons)
            ):
                memory.failures = 0  # a new spec, a refresh request or a push: look now
            else:
                wait = memory.failed_at + self.settings.error_delay(memory.failures) - self.clock()
                if wait > 0:
                    return wait
        managed_only = bool(reasons) and all(
            r.startswith(("changed:", "deleted:", "health:")) for r in reasons
        )
        if managed_only and all(r.startswith("health:") for r in reasons):
            delay = await self._reassess_health(app, spec, memory, patch)
            if delay is not None:
                return delay
        stamp = None
        if reasons == frozenset({"requeue"}) and self._steady(app, spec, memory):
            stamp = await self.engine.comparison_stamp(app, _stamped(memory.comparison))
            if stamp is not None and stamp == memory.poll_stamp:
                # Nothing a comparison reads has changed since the last one: it would find
                # the same (a poll of an idle, synced app costs no diff, no render lookup).
                assert memory.comparison is not None  # (_steady)
                await self._look_for_orphans(app, memory.comparison, memory, False)
                self._write_status_if_changed(app, memory.comparison, memory, patch)
                return self.settings.next_refresh()
        memory.poll_stamp = None
        # A change to a managed object does not move Git: compare against the commit
        # resolved by the last poll instead of asking the repository again.
        pinned = memory.revision if managed_only else None
        # Any other comparison (the first, the one after a sync) takes what it reads from
        # Git and the settings now, and the objects' versions once it is made; so the
        # next poll can reuse it too. (A change to an object meanwhile is an event, whose
        # reconcile compares again and drops the stamp.)
        head = None
        if stamp is None and pinned is None and self._stampable(app):
            head = await self.engine.stamp_head(app)
        memory.comparison = None
        try:
            comparison = await self.engine.compare(app, revision=pinned)
        except ComparisonError as exc:
            return self._comparison_failed(app, exc, memory, patch, spec, refresh)
        if (
            head is not None
            and head[0] == comparison.artifact.revision
            and not any(o.get("kind") == "SealedSecret" for o in comparison.desired)
        ):
            stamp = await self.engine.comparison_stamp(app, _stamped(comparison), head)
        memory.failures = 0
        memory.comparison, memory.comparison_spec = _retained(comparison), spec
        memory.input_paths = _input_paths(comparison)
        memory.revision = comparison.artifact.revision
        await self._report_drift(app, comparison, memory, patch, reasons)
        await self._look_for_orphans(app, comparison, memory, bool(refresh))
        delay = await self._maybe_auto_sync(app, comparison, memory, patch)
        if delay is not None:
            return delay
        self._write_status_if_changed(app, comparison, memory, patch)
        memory.poll_stamp = stamp  # taken before this comparison: a change since shows
        return self.settings.next_refresh()

    def _steady(self, app: App, spec: str, memory: _Memory) -> bool:
        """Whether a poll of ``app`` may reuse its last comparison when nothing it read
        changed: Synced and Healthy with no failure, the same spec, no heartbeat due, and
        a comparison that reads only what ``comparison_stamp`` covers (no SOPS keys, no
        Sealed Secrets keys, one source)."""
        last = memory.comparison
        if last is None or memory.comparison_spec != spec or memory.failures:
            return False
        if last.sync_status != "Synced" or str(last.app_health) != "Healthy":
            return False
        if self._heartbeat_due(memory) or not self._stampable(app):
            return False
        status = app.raw.get("status") or {}
        if any(c.get("type") in FAILURE_CONDITIONS for c in status.get("conditions") or []):
            return False
        return not any(o.get("kind") == "SealedSecret" for o in last.desired)

    @staticmethod
    def _stampable(app: App) -> bool:
        """Whether what a comparison of ``app`` reads is all in ``comparison_stamp``, as
        far as the Application tells (no SOPS keys, one source; no SealedSecret among the
        desired objects is the caller's to check)."""
        raw = app.raw
        annotations = (raw.get("metadata") or {}).get("annotations") or {}
        return SOPS_ANNOTATION not in annotations and not (raw.get("spec") or {}).get("sources")

    async def _take_refresh_request(self, key: AppName) -> None:
        """Remove the refresh annotation once the app is refreshed, as Argo CD's controller
        does."""
        namespace, name = key
        try:
            await self.engine.kube.merge_patch(
                API_VERSION,
                "Application",
                name,
                {"metadata": {"annotations": {REFRESH_ANNOTATION: None}}},
                namespace=namespace,
            )
        except KubeError as exc:
            log.warning("cannot remove %s from %s/%s: %s", REFRESH_ANNOTATION, *key, exc)

    def _comparison_failed(
        self,
        app: App,
        exc: ComparisonError,
        memory: _Memory,
        patch: StatusPatch,
        spec: str,
        refresh: str,
    ) -> float:
        """Record a comparison error (once while it stays the same) and back off."""
        if exc.revision and exc.revision != memory.failed_revision:
            memory.failures = 0  # a new commit fails differently, or not for long
        memory.failures += 1
        memory.failed_at = self.clock()
        memory.failed_spec = spec
        memory.failed_revision = exc.revision
        memory.failed_refresh = refresh
        delay = self.settings.error_delay(memory.failures)
        log.warning(
            "comparison of %s/%s failed (%d in a row; next try in %gs): %s",
            app.namespace,
            app.name,
            memory.failures,
            delay,
            exc,
        )
        self._export(app, "Unknown", "Unknown")
        message = str(exc)
        status = app.raw.get("status") or {}
        ctype = INVALID_SPEC if exc.reason == INVALID_SPEC else "ComparisonError"  # AppProject
        unchanged = (status.get("sync") or {}).get("status") == "Unknown" and any(
            c.get("type") == ctype and c.get("message") == message
            for c in status.get("conditions") or []
        )
        if not unchanged or self._heartbeat_due(memory):
            failed = AppEngine.application_status(app, None, error=message)
            patch.update(retype_error(failed, exc.reason))
        return delay

    async def _reassess_health(
        self, app: App, spec: str, memory: _Memory, patch: StatusPatch
    ) -> float | None:
        """Health of the last comparison from the watch cache; None: compare in full."""
        last = memory.comparison
        if last is None or memory.comparison_spec != spec:
            return None
        comparison = await self.engine.reassess_health(last, app)
        if comparison is None:
            return None
        if memory.poll_stamp is not None:  # read again, changed only in status: still true
            memory.poll_stamp = restamped(memory.poll_stamp, comparison.live)
        memory.comparison = _retained(comparison)
        self._write_status_if_changed(app, comparison, memory, patch)
        return self.settings.next_refresh()  # the poll already scheduled comes first

    async def _look_for_orphans(
        self, app: App, comparison: Comparison, memory: _Memory, refresh: bool
    ) -> None:
        """AppProject ``orphanedResources`` with ``warn``: count the orphaned resources of
        the app's destination namespace (bounded metadata LISTs on its cluster, shared by
        the namespace's apps; at most once per ``ORPHAN_INTERVAL`` unless the project
        changed or a refresh was asked)
        into ``memory.orphan_message``, which the status write turns into the condition.
        A failed look keeps what was said before; nothing is ever written to an orphan."""
        admission = self.engine.admission
        if not isinstance(admission, ProjectAdmission):
            return
        try:
            project, _ = await admission.project_for(app)
        except KubeError as exc:
            log.warning("orphaned resources of %s/%s: %s", app.namespace, app.name, exc)
            return
        changed = memory.orphans_project != project
        due = (
            refresh
            or changed
            or memory.orphans_at is None
            or self.clock() - memory.orphans_at >= ORPHAN_INTERVAL
        )
        if not due:
            return
        memory.orphans_at, memory.orphans_project = self.clock(), project
        managed = [*(ResourceKey.of(o) for o in comparison.desired), *comparison.live]
        try:
            kube = await self.engine.destination_client(app)
            found = await admission.orphans(
                app, kube, managed, warn_only=True, fresh=refresh or changed
            )
        except (KubeError, ComparisonError) as exc:
            log.warning("orphaned resources of %s/%s: %s", app.namespace, app.name, exc)
            memory.orphans_at = None  # look again next time
            return
        memory.orphan_message = "" if found is None else found.message()

    # -- status --------------------------------------------------------------------------

    def _export(self, app: App, sync: str, health: str) -> None:
        self.metrics.set_app(app.namespace, app.name, app.project, sync, health, app.repo_url)

    def _write_status_if_changed(
        self,
        app: App,
        comparison: Comparison,
        memory: _Memory,
        patch: StatusPatch,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Put the comparison's status into the reconcile's patch when it is news."""
        orphan = memory.orphan_message
        quiet = memory.quiet
        if (
            extra is None
            and quiet is not None
            and quiet[0] is app.raw
            and quiet[1] is comparison
            and quiet[2] == orphan
            and not self._heartbeat_due(memory)
        ):
            return  # found unchanged for these very objects (an idle poll): still unchanged
        memory.quiet = None
        self._export(app, comparison.sync_status, str(comparison.app_health))
        old = app.raw.get("status") or {}
        said = [
            c.get("message")
            for c in old.get("conditions") or []
            if c.get("type") == ORPHAN_CONDITION
        ]
        unchanged = (
            (orphan is None or said == ([orphan] if orphan else []))
            and _already_said(extra, old)
            and (old.get("sync") or {}).get("status") == comparison.sync_status
            and (old.get("sync") or {}).get("revision") == comparison.artifact.revision
            and (old.get("health") or {}).get("status") == str(comparison.app_health)
            and old.get("resources") == resources_status(comparison)
            and not [c for c in old.get("conditions") or [] if c.get("type") in FAILURE_CONDITIONS]
            and (extra is not None or not window_blocked(old))  # AppProject: a stale window
        )
        # An unchanged status is not written again (a refresh request clears the throttle),
        # unless the operator asked for a heartbeat (``status_heartbeat``).
        if unchanged and not self._heartbeat_due(memory):
            if extra is None and comparison is memory.comparison:  # (kept lean: _retained)
                memory.quiet = (app.raw, comparison, orphan)
            return
        patch.update(AppEngine.application_status(app, comparison, extra=extra))
        if orphan:  # AppProject orphanedResources (kept with its time while unchanged)
            patch.put_condition(ORPHAN_CONDITION, orphan, at=now())
        elif orphan is not None:
            patch.drop_conditions(ORPHAN_CONDITION)

    def _heartbeat_due(self, memory: _Memory) -> bool:
        """Whether an unchanged status is written anyway: after a refresh request or a
        failed write (``last_status_write`` is None then), or when the heartbeat is due."""
        if memory.last_status_write is None:
            return True
        beat = self.settings.status_heartbeat
        return beat > 0 and self.clock() - memory.last_status_write >= beat

    async def _run_operation(
        self, app: App, memory: _Memory, compared: Comparison | None = None
    ) -> float | None:
        """Run the requested operation; it records its own state as it goes (see the
        module docstring), so what this reconcile collected is sent first. ``compared``:
        the comparison this reconcile just made (an automated sync), not made again."""
        await self._flush_status((app.namespace, app.name))
        operation: dict[str, Any] = app.raw["operation"]
        sync_spec = operation.get("sync") or {}
        state = (app.raw.get("status") or {}).get("operationState") or {}
        # Argo CD: an operation is in progress while its state is not completed; a new one
        # (or one requested again after it completed) starts counting from zero.
        in_progress = state.get("operation") == operation and state.get("phase") in (
            "Running",
            "Terminating",
        )
        retry_count = _count(state.get("retryCount")) if in_progress else 0
        automated = bool((operation.get("initiatedBy") or {}).get("automated"))
        retry: Retry | None
        try:
            retry = operation_retry(app, operation)
        except (AppSpecError, ValueError, TypeError) as exc:
            log.warning(
                "operation of %s/%s: retry strategy ignored: %s", app.namespace, app.name, exc
            )
            retry = None
        if in_progress and state.get("finishedAt") and retry is not None:
            wait = retry_wait(state, retry, time.time())
            if wait > 0:
                return wait  # a failed attempt's retry is not due yet
        memory.comparison = None  # what we compared is about to change
        self.events.emit(
            app.raw,
            reason="OperationStarted",
            message=f"Initiated {'automated ' if automated else ''}sync to "
            f"{sync_spec.get('revision') or app.target_revision}",
        )
        started = time.monotonic()
        # The write that records the end of the operation also clears its request.
        outcome = await self.engine.run_requested_operation(
            app,
            clear=True,
            retry=retry,
            retry_count=retry_count,
            compared=compared if retry_count == 0 else None,
        )
        if outcome is None:  # an operation without a sync: nothing we can run
            await self.engine.clear_operation(app)
            return self.settings.next_refresh()
        resources = sync_spec.get("resources")
        phase = outcome.result.phase
        self.metrics.record_sync(app.namespace, app.name, phase, time.monotonic() - started)
        if outcome.retry_at is not None:
            return max(0.0, outcome.retry_at - time.time())
        self.events.emit(
            app.raw,
            reason="OperationCompleted",
            message=f"Sync operation to {outcome.revision or '?'} {phase.lower()}: "
            f"{outcome.result.message}",
            type="Normal" if phase == "Succeeded" else "Warning",
        )
        if phase == "Succeeded" and resources and automated:
            self.events.emit(
                app.raw,
                reason="SelfHealed",
                message="reverted drift of "
                + ", ".join(str(ResourceKey.from_ref(r)) for r in resources),
            )
            self.metrics.count_selfheal(app.namespace)
        memory.last_status_write = self.clock()
        return 1.0  # look again soon: the cache catches up with what we just applied

    async def _maybe_auto_sync(
        self, app: App, comparison: Comparison, memory: _Memory, patch: StatusPatch
    ) -> float | None:
        """Start an automated sync when Argo CD would; None when there is nothing to start."""
        automated = app.automated
        if automated is None or comparison.sync_status != "OutOfSync":
            return None
        out_of_sync = [d for d in comparison.diffs if d.status == "OutOfSync"]
        if all(d.requires_pruning for d in out_of_sync) and not automated.prune:
            return None  # "need to prune extra resources only but automated prune is disabled"
        wipes_out = not comparison.desired and bool(comparison.owned_live)
        if automated.prune and not automated.allow_empty and wipes_out:
            self._write_status_if_changed(
                app,
                comparison,
                memory,
                patch,
                extra={
                    "conditions": [
                        {
                            "type": "SyncError",
                            "message": WIPE_OUT_MESSAGE,
                            "lastTransitionTime": now(),
                        }
                    ]
                },
            )
            return self.settings.next_refresh()
        revision = comparison.artifact.revision
        state = (app.raw.get("status") or {}).get("operationState") or {}
        last = state.get("syncResult") or {}
        last_automated = bool(
            ((state.get("operation") or {}).get("initiatedBy") or {}).get("automated")
        )
        resources: list[dict[str, str]] | None = None
        heal_attempts = 0
        if last.get("revision") == revision and last_automated:
            if state.get("phase") != "Succeeded":
                return None  # a failed revision is not retried beyond the retry policy
            if not automated.self_heal:
                return None  # drift is shown as OutOfSync, not corrected
            heal_attempts = self._self_heal_attempts(state)
            wait = self._self_heal_wait(state, heal_attempts)
            if wait > 0:
                # Show the drift while the backoff runs.
                self._write_status_if_changed(app, comparison, memory, patch)
                return wait
            heal_attempts += 1
            resources = [
                {
                    "group": d.key.group,
                    "kind": d.key.kind,
                    "namespace": d.key.namespace,
                    "name": d.key.name,
                }
                for d in out_of_sync
                if not d.requires_pruning or automated.prune
            ]
        if self.engine.admission is not None:  # AppProject sync windows: no operation starts
            blocked = await self.engine.admission.sync_refused(app, automated=True)
            if blocked:
                extra = window_conditions(app.raw, blocked, now())
                self._write_status_if_changed(app, comparison, memory, patch, extra=extra)
                return self.settings.next_refresh()
        sync: dict[str, Any] = {"revision": revision, "prune": automated.prune}
        if resources is not None:
            sync["resources"] = resources
            sync["selfHealAttemptsCount"] = heal_attempts
        operation = {
            "sync": sync,
            "initiatedBy": {"automated": True},
            "retry": (app.raw.get("spec") or {}).get("syncPolicy", {}).get("retry")
            or IMPLICIT_AUTOMATED_RETRY,
        }
        # The operation and the start of its first attempt in one patch (the sync then
        # does not write its start again).
        updated = await self.engine.kube.merge_patch(
            API_VERSION,
            "Application",
            app.name,
            {
                "operation": operation,
                "status": {"operationState": operation_start(operation, now())},
            },
            namespace=app.namespace,
        )
        return await self._run_operation(App.from_application(updated), memory, comparison)

    def _self_heal_attempts(self, state: dict[str, Any]) -> int:
        """Consecutive self-heals so far (kept in the operation, as Argo CD keeps it).

        The count starts over once the app has stayed healed for the cool-down period.
        """
        count = int(
            ((state.get("operation") or {}).get("sync") or {}).get("selfHealAttemptsCount", 0) or 0
        )
        finished = _parse_time(str(state.get("finishedAt") or ""))
        if finished is not None and time.time() - finished >= self.settings.self_heal_cooldown:
            return 0
        return count

    def _self_heal_wait(self, state: dict[str, Any], attempts: int) -> float:
        """Seconds to wait before the next self-heal: none for the first, then 2 s × 3ⁿ⁻¹."""
        if attempts == 0:
            return 0.0
        s = self.settings
        backoff = min(s.self_heal_timeout * s.self_heal_factor ** (attempts - 1), s.self_heal_cap)
        finished = _parse_time(str(state.get("finishedAt") or ""))
        if finished is None:
            return 0.0
        return max(0.0, finished + backoff - time.time())

    # -- drift ---------------------------------------------------------------------------

    async def _report_drift(
        self,
        app: App,
        comparison: Comparison,
        memory: _Memory,
        patch: StatusPatch,
        reasons: frozenset[str],
    ) -> None:
        """Name who changed a managed object behind our back (from managedFields)."""
        reports: list[dict[str, Any]] = []
        for diff in comparison.diffs:
            if diff.status != "OutOfSync" or diff.live is None or diff.requires_pruning:
                continue
            live = comparison.live.get(diff.key)
            if live is None:
                continue
            who = attribute_drift(live, diff.changed_paths, ours=self.engine.field_manager)
            if not who:
                continue
            for item in who:
                reports.append(
                    {
                        "resource": str(diff.key),
                        "field": item.path,
                        "manager": item.manager,
                        "operation": item.operation,
                        "time": item.time,
                    }
                )
        missing = [
            d
            for d in comparison.diffs
            if d.missing and any(r.startswith("deleted:") for r in reasons)
        ]
        for diff in missing:
            reports.append(
                {
                    "resource": str(diff.key),
                    "field": "",
                    "manager": "",
                    "operation": "Delete",
                    "time": now(),
                }
            )
        fingerprint = {f"{r['resource']}|{r['field']}|{r['manager']}|{r['time']}" for r in reports}
        new = fingerprint - memory.drift_reported
        memory.drift_reported = fingerprint
        if not new:
            return
        lines = []
        for r in reports:
            if r["operation"] == "Delete":
                lines.append(f"{r['resource']} was deleted")
            else:
                when = f" at {r['time']}" if r["time"] else ""
                lines.append(
                    f"{r['resource']} {r['field']} changed by {r['manager']} "
                    f"({r['operation']}){when}"
                )
        self.events.emit(app.raw, reason="DriftDetected", message="; ".join(lines), type="Warning")
        patch.update({"drift": reports})

    # -- deletion ------------------------------------------------------------------------

    async def _finalize(self, obj: Obj) -> float | None:
        meta = obj["metadata"]
        ours = [f for f in meta.get("finalizers") or [] if f.startswith(FINALIZER)]
        if not ours:
            return None
        propagation = "Background" if any(f.endswith("/background") for f in ours) else "Foreground"
        try:
            app = App.from_application(obj)
        except AppSpecError:
            app = App.from_application(
                {**obj, "spec": {"source": {"repoURL": "invalid://"}, "destination": {}}}
            )
        try:
            await self.engine.delete_resources(app, propagation=propagation)
            remaining = len(await self.engine.owned_objects(app))
        except ComparisonError as exc:
            if exc.transient:  # the destination cluster does not answer: wait for it
                log.info("cannot delete the resources of %s yet: %s", app.name, exc)
                return 10.0
            # Not registered (any more): nothing gitsail can reach is left (Argo CD too).
            log.info("%s: %s; its resources are left where they are", app.name, exc)
            remaining = 0
        if remaining:
            log.info("waiting for %d resources of %s to go", remaining, app.name)
            return 1.0
        keep = [f for f in meta.get("finalizers") or [] if not f.startswith(FINALIZER)]
        try:
            await self.engine.kube.json_patch(
                API_VERSION,
                "Application",
                app.name,
                [
                    {"op": "test", "path": "/metadata/finalizers", "value": meta["finalizers"]},
                    {"op": "replace", "path": "/metadata/finalizers", "value": keep},
                ],
                namespace=app.namespace,
            )
        except KubeError as exc:
            log.info("finalizer update of %s raced (%s); retrying", app.name, exc)
            return 1.0
        self.events.emit(obj, reason="ResourceDeleted", message="deleted the app's resources")
        return None


def _retained(comparison: Comparison) -> Comparison:
    """What is kept of a comparison between reconciles (one per app), to re-assess its
    health and write its status later without a new comparison: the statuses, health and
    desired objects as computed, without what only the comparison itself needed. Dropped:
    the diffs' compared forms and text, the rendered manifests beyond the desired objects
    and hooks (the same objects), the Application as read (``app`` is replaced when it is
    re-assessed). Live objects are kept as their ``apiVersion``, ``kind`` and metadata
    without ``managedFields`` (what ``AppEngine.reassess_health`` compares, and health
    settings read): a full live object held here would outlive the watch cache's newer
    version of it, one more copy per managed object."""
    return replace(
        comparison,
        app=replace(comparison.app, origin={}),
        rendered=replace(comparison.rendered, manifests=comparison.desired + comparison.hooks),
        diffs=tuple(replace(d, desired=None, live=None) for d in comparison.diffs),
        live={key: _skeleton(obj) for key, obj in comparison.live.items()},
        owned_live=tuple(_skeleton(obj) for obj in comparison.owned_live),
    )


def _stamped(comparison: Comparison | None) -> list[tuple[str, str, str, str]]:
    """(apiVersion, kind, namespace, name) of what a comparison looked up: its desired
    objects and the owned live ones."""
    if comparison is None:
        return []
    out: dict[tuple[str, str, str, str], None] = {}
    for obj in (*comparison.desired, *comparison.owned_live):
        meta = obj.get("metadata") or {}
        key = (
            str(obj.get("apiVersion") or ""),
            str(obj.get("kind") or ""),
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
        )
        out[key] = None
    return list(out)


def _skeleton(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
    }


def _input_paths(comparison: Comparison) -> frozenset[str] | None:
    """The repository paths the app's render reads (what a push must touch to concern
    it), or None when they cannot be bounded; by commit checkout and path, computed once
    (a checkout is its commit's tree)."""
    artifact = comparison.artifact
    if artifact.kind != "git":
        return None
    return _paths_in(artifact.root, artifact.path)


@functools.lru_cache(maxsize=4096)
def _paths_in(root: Path, path: str) -> frozenset[str] | None:
    try:
        files = input_files(root, path)
    except SourceError:
        return None
    if files is None:
        return None
    return frozenset(f.relative_to(root).as_posix() for f in files)


def _already_said(extra: dict[str, Any] | None, status: dict[str, Any]) -> bool:
    """Whether ``extra`` adds nothing to ``status`` but conditions it already has."""
    if not extra:
        return True
    if set(extra) != {"conditions"}:
        return False
    have = {(c.get("type"), c.get("message")) for c in status.get("conditions") or []}
    return all((c.get("type"), c.get("message")) in have for c in extra["conditions"] or [])


def _digest(value: Any) -> str:
    return codec.digest(value)


def _count(value: Any) -> int:
    """A non-negative count read from status (0 when it is missing or not a number)."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _parse_time(text: str) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None
