"""The Flux ``HelmRelease`` reconciler (helm-controller's job, with the real ``helm``).

One ``reconcile(obj, reasons)`` call is one pass:

1. **Deletion.** An object being deleted is finalized: its release is uninstalled
   (``uninstall.keepHistory``, ``deletionPropagation``, ``disableHooks``, ``timeout``), unless
   it is suspended or gitsail never released it; the HelmChart it made is deleted; the
   finalizer ``finalizers.fluxcd.io`` is dropped.
2. **Spec** (``parse_helmrelease``): malformed or unsupported is ``Stalled``. Deprecated
   fields of v2beta1 are mapped and reported once per generation as a Warning Event.
3. **Finalizer**, then **suspend** (nothing read or written).
4. **Dependencies** (``dependsOn``: a HelmRelease or Kustomization ``Ready`` for its
   generation, an Application Synced and Healthy): ``DependencyNotReady``, retried.
5. **Chart** (``flux_helmrelease_chart``): the HelmChart made from ``spec.chart`` (or the
   ``chartRef`` source) and its artifact; ``ArtifactFailed`` while there is none.
6. **Values** (``flux_helmrelease_values``): ``valuesFrom`` then inline ``values``; a missing
   required reference is ``ValuesError`` and nothing is released.
7. **Decide** from the release storage (``helm_storage``: one LIST, the newest revision
   decoded) and ``status.history`` (what gitsail released):

   - no release, or an uninstalled one → **install** (``--replace`` over the old history);
   - the newest revision is not the one recorded in ``status.history[0]`` (``helm rollback``
     or ``helm upgrade`` by hand), the chart name or version differ, the values' digest
     differs from ``history[0].configDigest``, a new ``reconcile.fluxcd.io/forceAt``, or the
     release failed → **upgrade** (a failed release with no successful revision is
     installed again with ``--replace``);
   - a ``pending-*`` revision (a helm that was killed) is marked ``failed`` first, as Flux
     unlocks it;
   - up to date, with ``test.enable`` and no test run on this revision → **test**;
   - up to date → nothing: no helm process (``Ready=True``).

   A failed install, upgrade or test (unless ``ignoreFailures``) counts in
   ``installFailures`` / ``upgradeFailures`` and ``failures``; while retries remain
   (``remediation.retries``, negative: for ever) the failure is **remediated** at once
   (installs: uninstall; upgrades: ``strategy`` rollback to the last successful revision, or
   uninstall) and the next pass tries again. When they are used up the release is
   remediated only with ``remediateLastFailure`` and the object is ``Stalled``
   (``RetriesExceeded``: "Failed to upgrade after 2 attempt(s)") until its chart, values or
   generation change (which reset the counters), or ``reconcile.fluxcd.io/resetAt``.
8. **Status**, as helm-controller writes it, in ONE merge patch of ``/status`` (none when
   nothing changed): conditions ``Ready``, ``Released``, ``TestSuccess``, ``Remediated``,
   ``Reconciling`` / ``Stalled``; ``history`` (snapshots of the releases gitsail made, newest
   first, down to the previous successful one); ``lastAttemptedRevision``,
   ``lastAttemptedConfigDigest``, ``lastAttemptedValuesChecksum`` (v2beta1's SHA-1),
   ``lastAttemptedGeneration``, ``lastAttemptedReleaseAction``, the failure counters,
   ``observedGeneration``, ``helmChart``, ``storageNamespace``, ``lastHandledReconcileAt``.

Everything done on the target cluster (storage reads, helm) impersonates ``serviceAccountName``
when set; the chart, values, dependencies and status use the controller's identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from gitsail.app.targets import TargetUnavailable
from gitsail.kinds.argo_cluster import ClusterConfigError, RemoteCluster, read_kubeconfig_secret
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_helmrelease import (
    API_VERSIONS,
    HelmRelease,
    parse_helmrelease,
    post_render_config,
    post_renderers_digest,
)
from gitsail.kinds.flux_helmrelease_chart import FIELD_MANAGER, ChartPackage, ChartSource
from gitsail.kinds.flux_helmrelease_drift import (
    DRIFTED,
    ReleaseManifests,
    detect_drift,
    drift_condition,
)
from gitsail.kinds.flux_helmrelease_status import (
    FINALIZER,
    add_finalizer,
    remove_finalizer,
    write_status,
)
from gitsail.kinds.flux_helmrelease_values import ValuesError, compose_values
from gitsail.kinds.helm_actions import HelmActionError, HelmActions, InstallRequest
from gitsail.kinds.helm_storage import (
    DecodedReleases,
    Release,
    StorageError,
    config_digest,
    latest_release,
    mark_failed,
    release_history,
)
from gitsail.kinds.records import Dependency
from gitsail.kinds.status import (
    Condition,
    ReconcileError,
    Stalled,
    Transient,
    failure_conditions,
    put_condition,
)
from gitsail.kube import (
    ConfigError,
    Forbidden,
    Kube,
    KubeError,
    NotFoundKind,
    service_account_user,
)
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render import RenderError
from gitsail.source.artifacts import ArtifactStore

__all__ = [
    "API_VERSION",
    "FINALIZER",
    "HelmReleaseReconciler",
    "RecordEvent",
]

# helm-controller's reason when it cannot build a client for the release's cluster
INIT_FAILED = "InitFailed"
log = logging.getLogger(__name__)

API_VERSION = API_VERSIONS[0]
APPLICATION_API_VERSION = "argoproj.io/v1alpha1"
KUSTOMIZATION_API_VERSION = "kustomize.toolkit.fluxcd.io/v1"
HISTORY_LIMIT = 10
RETRY_AFTER_FAILURE = 10.0
DEPENDENCY_RETRY = 30.0

READY, RELEASED, TEST_SUCCESS, REMEDIATED = "Ready", "Released", "TestSuccess", "Remediated"
RECONCILING, STALLED = "Reconciling", "Stalled"
INSTALL_SUCCEEDED, INSTALL_FAILED = "InstallSucceeded", "InstallFailed"
UPGRADE_SUCCEEDED, UPGRADE_FAILED = "UpgradeSucceeded", "UpgradeFailed"
TEST_SUCCEEDED, TEST_FAILED = "TestSucceeded", "TestFailed"
ROLLBACK_SUCCEEDED, ROLLBACK_FAILED = "RollbackSucceeded", "RollbackFailed"
UNINSTALL_SUCCEEDED, UNINSTALL_FAILED = "UninstallSucceeded", "UninstallFailed"
RETRIES_EXCEEDED = "RetriesExceeded"
DEPENDENCY_NOT_READY = "DependencyNotReady"
VALUES_ERROR = "ValuesError"
INVALID_SPEC = "InvalidSpec"

RecordEvent = Callable[[Obj, str, str, str], Awaitable[None]]  # (object, type, reason, message)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _no_event(obj: Obj, type_: str, reason: str, message: str) -> None:
    return None


@dataclass
class _Pass:
    """What one pass learnt: the desired chart and values, and the status it builds."""

    hr: HelmRelease
    obj: Obj
    status: dict[str, Any]
    chart: ChartPackage | None = None
    values: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    secrets: set[str] = field(default_factory=set)  # values read from Secrets: redacted
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    @property
    def generation(self) -> int:
        return self.hr.generation

    def count(self, key: str) -> int:
        value = self.status.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


class HelmReleaseReconciler:
    """Reconciles ``helm.toolkit.fluxcd.io`` HelmReleases (see the module docstring).

    ``kube`` is the control plane (the HelmRelease, its chart source, values, dependencies)
    and the target cluster; ``actions`` runs helm against the same cluster.
    """

    api_version = API_VERSION
    kind = "HelmRelease"

    def __init__(
        self,
        kube: Kube,
        *,
        actions: HelmActions,
        artifacts: ArtifactStore,
        policy: Policy = DEFAULT_POLICY,
        record: RecordEvent = _no_event,
        now: Callable[[], str] = _now,
        remote: RemoteCluster | None = None,
    ) -> None:
        self.kube = kube
        self.actions = actions
        # spec.kubeConfig: the controller's ClusterPool (else clients kept here), and per
        # release the cluster and helm actions bound for the pass (one worker per object)
        self.remote = remote
        self._clients: dict[str, Kube] = {}
        self._bound: dict[tuple[str, str], tuple[Kube, HelmActions]] = {}
        self.charts = ChartSource(kube, artifacts, policy)
        self.policy = policy
        self.record = record
        self._now = now
        self._decoded = DecodedReleases()
        self._manifests = ReleaseManifests(policy)
        self._objects: dict[tuple[str, str], tuple[tuple[str, str, str, str | None], ...]] = {}

    # -- entry points ----------------------------------------------------------------------

    async def reconcile(self, obj: Obj, reasons: Iterable[object] = ()) -> float | None:
        """One pass; the seconds until the next one (None: only when something changes)."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        try:
            hr = parse_helmrelease(obj)
        except SpecError as exc:
            status = dict(obj.get("status") or {})
            self._fail(status, Stalled(INVALID_SPEC, str(exc)), meta.get("generation"))
            await write_status(self.kube, obj, status)
            return None
        if FINALIZER not in (meta.get("finalizers") or []):
            obj = await add_finalizer(self.kube, obj)
        if hr.suspend:
            return None
        run = _Pass(hr=hr, obj=obj, status=self._base_status(obj, hr))
        if hr.deprecations and run.status.get("observedGeneration") != hr.generation:
            for message in hr.deprecations:
                run.events.append(("Warning", "DeprecatedField", message))
        delay: float | None
        try:
            delay = await self._run(run)
        except ReconcileError as error:
            self._fail(run.status, error, hr.generation)
            retry_after = getattr(error, "retry_after", None)
            delay = None if isinstance(error, Stalled) else (retry_after or RETRY_AFTER_FAILURE)
            if isinstance(error, Stalled) and error.reason == RETRIES_EXCEEDED:
                delay = hr.interval
        await write_status(self.kube, obj, run.status)
        for type_, reason, message in run.events:
            await self.record(obj, type_, reason, message)
        return delay

    async def finalize(self, obj: Obj) -> None:
        """Uninstall the release (unless suspended, or never released by gitsail), delete the
        HelmChart made for it, drop the finalizer. ``Transient`` when the uninstall failed."""
        meta = obj.get("metadata") or {}
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        try:
            hr: HelmRelease | None = parse_helmrelease(obj)
        except SpecError:
            hr = None
        status = obj.get("status") or {}
        if hr is not None and not hr.suspend and status.get("history"):
            await self._bind(hr)
            target = self._target(hr)
            latest = await self._latest(hr, target)
            if latest is not None and latest.status != "uninstalled":
                try:
                    await self._actions(hr).uninstall(
                        hr.release_name,
                        hr.storage_namespace,
                        helm_timeout=hr.uninstall.timeout,
                        keep_history=hr.uninstall.keep_history,
                        disable_hooks=hr.uninstall.disable_hooks,
                        wait=not hr.uninstall.disable_wait,
                        propagation=hr.uninstall.deletion_propagation,
                        user=self._user(hr),
                    )
                except HelmActionError as exc:
                    raise Transient(UNINSTALL_FAILED, f"Helm uninstall failed: {exc}") from exc
        if hr is not None and hr.chart is not None:
            await self.charts.delete_template(hr.namespace, hr.name, hr.chart_object)
        await remove_finalizer(self.kube, obj)

    # -- the pass ------------------------------------------------------------------------

    async def _run(self, run: _Pass) -> float | None:
        hr = run.hr
        await self._bind(hr)
        await self._check_dependencies(hr)
        source = await self.charts.ensure_template(hr) if hr.chart is not None else None
        ref = hr.chart_object
        run.status["helmChart"] = f"{ref.namespace}/{ref.name}"
        run.chart = await self.charts.package(hr, source)
        try:
            run.values = await compose_values(
                hr.values_from,
                hr.values(),
                self._values_reader(hr),
                policy=self.policy,
                secrets=run.secrets,
            )
        except ValuesError as exc:
            raise Transient(VALUES_ERROR, str(exc)) from exc
        run.digest = config_digest(run.values)
        self._reset_counters(run)
        run.status["storageNamespace"] = hr.storage_namespace
        target = self._target(hr)
        latest = await self._latest(hr, target)
        if latest is not None and latest.pending:
            await self._unlock(hr, target, latest)
            latest = await self._latest(hr, target)
        history = [h for h in run.status.get("history") or [] if isinstance(h, Mapping)]
        head = history[0] if history else {}
        if await self._moved(run, head, latest):
            latest, head = await self._latest(hr, target), {}
        action = self._action(run, latest, head)
        if action is None:
            return await self._up_to_date(run, latest, target)
        if action == "test":
            await self._test(run, target)
            assert latest is not None
            await self._drift(run, latest, target)
            return hr.interval
        return await self._release(run, target, latest, action)

    async def _moved(self, run: _Pass, head: Mapping[str, Any], latest: Release | None) -> bool:
        """Flux's reinstall: a release gitsail made under another name or namespace
        (``releaseName``, ``targetNamespace`` changed), or of a chart with another name
        (``upgrade.chartNameChangeStrategy: Reinstall``), is uninstalled first; the new one
        is then installed. Returns whether something was uninstalled."""
        hr, chart = run.hr, run.chart
        assert chart is not None
        name, namespace = head.get("name"), head.get("namespace")
        if not head or not isinstance(name, str) or not isinstance(namespace, str):
            return False
        renamed = (name, namespace) != (hr.release_name, hr.storage_namespace)
        rechart = (
            not renamed
            and latest is not None
            and latest.status != "uninstalled"
            and latest.chart_name != chart.name
            and hr.upgrade.reinstall_on_chart_name_change
        )
        if not renamed and not rechart:
            return False
        try:
            await self._actions(hr).uninstall(
                name,
                namespace,
                helm_timeout=hr.uninstall.timeout,
                keep_history=hr.uninstall.keep_history,
                disable_hooks=hr.uninstall.disable_hooks,
                wait=not hr.uninstall.disable_wait,
                propagation=hr.uninstall.deletion_propagation,
                user=self._user(hr),
            )
        except HelmActionError as exc:
            if "not found" not in str(exc):
                raise Transient(
                    UNINSTALL_FAILED, f"Helm uninstall of {namespace}/{name} failed: {exc}"
                ) from exc
        why = "its chart changed name" if rechart else "it was renamed or moved"
        run.events.append(
            (
                "Normal",
                UNINSTALL_SUCCEEDED,
                f"Helm uninstall succeeded for release {namespace}/{name}: {why}",
            )
        )
        run.status.pop("history", None)
        return True

    def _action(self, run: _Pass, latest: Release | None, head: Mapping[str, Any]) -> str | None:
        """install, upgrade, test, or None (up to date)."""
        hr, chart = run.hr, run.chart
        assert chart is not None
        if latest is None or latest.status == "uninstalled":
            return "install"
        forced = bool(hr.force_at) and hr.force_at != run.status.get("lastHandledForceAt")
        if (
            forced
            or latest.status == "failed"
            or head.get("version") != latest.version
            or head.get("digest") != latest.digest
            or latest.chart_name != chart.name
            or latest.chart_version != chart.version
            or head.get("configDigest") != run.digest
            or str(run.status.get("observedPostRenderersDigest") or "") != post_renderers_digest(hr)
        ):
            return "upgrade"
        if hr.test.enable and latest.test_hooks and not latest.tests_ran:
            return "test"
        return None

    async def _up_to_date(self, run: _Pass, latest: Release | None, target: Kube) -> float:
        hr = run.hr
        assert latest is not None
        failed = latest.tests_failed
        if failed and hr.test.enable and not self._ignore_test_failures(run):
            key = self._failure_key(run)
            raise Stalled(
                RETRIES_EXCEEDED,
                f"Failed to {key.removesuffix('Failures')} after {run.count(key)} attempt(s)",
            )
        conditions = _without(run.status, RECONCILING, STALLED)
        message = self._ready_message(run, latest)
        ready_reason = (
            TEST_SUCCEEDED
            if hr.test.enable and latest.tests_ran
            else (_condition(conditions, RELEASED).get("reason") or UPGRADE_SUCCEEDED)
        )
        if _condition(conditions, READY).get("status") != "True":
            conditions = put_condition(
                conditions,
                Condition(READY, "True", ready_reason, message, hr.generation),
                self._now(),
            )
        elif _condition(conditions, READY).get("observedGeneration") != hr.generation:
            current = _condition(conditions, READY)
            conditions = put_condition(
                conditions,
                Condition(
                    READY,
                    "True",
                    str(current.get("reason")),
                    str(current.get("message")),
                    hr.generation,
                ),
                self._now(),
            )
        if not hr.test.enable:
            conditions = [c for c in conditions if c.get("type") != TEST_SUCCESS]
        run.status["conditions"] = conditions
        run.status["observedGeneration"] = hr.generation
        await self._drift(run, latest, target)
        return hr.interval

    async def _drift(self, run: _Pass, latest: Release, target: Kube) -> None:
        """Drift detection (``driftDetection.mode``): compare, correct or report; the
        ``Drifted`` condition says what the last comparison found."""
        hr = run.hr
        key = (hr.namespace, hr.name)
        if hr.drift.mode == "disabled":
            self._objects.pop(key, None)
            run.status["conditions"] = _without(run.status, DRIFTED)
            return
        objects = self._manifest(latest)
        correct = hr.drift.mode == "enabled"
        drift = await detect_drift(
            target,
            objects,
            hr.target_namespace,
            hr.drift.ignore,
            correct=correct,
            field_manager=FIELD_MANAGER,
        )
        self._objects[key] = drift.objects
        condition, event = drift_condition(drift, self._shown(latest), correct, hr.generation)
        if event is not None:
            run.events.append(event)
        run.status["conditions"] = put_condition(
            list(run.status.get("conditions") or []), condition, self._now()
        )

    def _manifest(self, release: Release) -> list[Obj]:
        try:
            return self._manifests.objects(release.digest, release.manifest)
        except RenderError as exc:
            raise Stalled(
                "DriftDetectionFailed", f"the release manifest is unreadable: {exc}"
            ) from exc

    def forget(self, namespace: str, name: str) -> None:
        """The HelmRelease is gone: drop what is remembered of its release."""
        self._objects.pop((namespace, name), None)
        self._bound.pop((namespace, name), None)

    def release_objects(
        self, namespace: str, name: str
    ) -> tuple[tuple[str, str, str, str | None], ...]:
        """(apiVersion, kind, name, namespace) of the objects of a HelmRelease's release, as
        its last drift check saw them (empty without drift detection)."""
        return self._objects.get((namespace, name), ())

    # -- actions ---------------------------------------------------------------------------

    async def _release(
        self, run: _Pass, target: Kube, latest: Release | None, action: str
    ) -> float | None:
        hr, chart = run.hr, run.chart
        assert chart is not None
        key = "installFailures" if action == "install" else "upgradeFailures"
        remediation = hr.install.remediation if action == "install" else hr.upgrade.remediation
        attempted_same = (
            run.status.get("lastAttemptedRevision") == chart.revision
            and run.status.get("lastAttemptedConfigDigest") == run.digest
            and run.status.get("lastAttemptedGeneration") == hr.generation
        )
        if attempted_same and remediation.exhausted(run.count(key)):
            raise Stalled(
                RETRIES_EXCEEDED,
                f"Failed to {action} after {run.count(key)} attempt(s)",
            )
        history = await release_history(target, hr.storage_namespace, hr.release_name, self.policy)
        replace = latest is not None and (
            latest.status == "uninstalled"
            or not any(r.status in ("deployed", "superseded") for r in history)
        )
        if action == "upgrade" and replace:
            action = "install"
        run.status["lastAttemptedRevision"] = chart.revision
        run.status["lastAttemptedConfigDigest"] = run.digest
        run.status["lastAttemptedValuesChecksum"] = _sha1(run.values)
        run.status["lastAttemptedGeneration"] = hr.generation
        run.status["lastAttemptedReleaseAction"] = action
        if hr.force_at:
            run.status["lastHandledForceAt"] = hr.force_at
        request = self._request(hr, chart, run.values, action, replace=replace, secrets=run.secrets)
        user = self._user(hr)
        try:
            if action == "install":
                await self._actions(hr).install(
                    hr.release_name, hr.storage_namespace, request, user=user
                )
            else:
                await self._actions(hr).upgrade(
                    hr.release_name, hr.storage_namespace, request, user=user
                )
        except HelmActionError as exc:
            reason = INSTALL_FAILED if action == "install" else UPGRADE_FAILED
            message = (
                f"Helm {action} failed for release {self._name(hr)} with chart "
                f"{chart.name}@{chart.version}: {exc}"
            )
            await self._record_release(run, target)
            await self._failed(run, target, action, reason, message)
        released = await self._record_release(run, target)
        digest = post_renderers_digest(hr)
        if digest:
            run.status["observedPostRenderersDigest"] = digest
        else:
            run.status.pop("observedPostRenderersDigest", None)
        reason = INSTALL_SUCCEEDED if action == "install" else UPGRADE_SUCCEEDED
        message = (
            f"Helm {action} succeeded for release {self._shown(released)} with chart "
            f"{chart.name}@{chart.version}"
        )
        conditions = _without(run.status, REMEDIATED, TEST_SUCCESS)
        conditions = put_condition(
            conditions, Condition(RELEASED, "True", reason, message, hr.generation), self._now()
        )
        run.status["conditions"] = conditions
        run.events.append(("Normal", reason, message))
        if hr.test.enable:
            await self._test(run, target)
        else:
            self._ready(run, reason, message)
        await self._drift(run, released, target)  # and its objects join the watch
        return hr.interval

    async def _test(self, run: _Pass, target: Kube) -> None:
        hr = run.hr
        latest = await self._latest(hr, target)
        assert latest is not None
        try:
            await self._actions(hr).test(
                hr.release_name,
                hr.storage_namespace,
                helm_timeout=hr.test.timeout,
                user=self._user(hr),
            )
            error = ""
        except HelmActionError as exc:
            error = str(exc)
        released = await self._record_release(run, target)
        if not error:
            count = len(released.test_hooks)
            message = (
                f"Helm test succeeded for release {self._shown(released)} with chart "
                f"{released.chart_name}@{released.chart_version}: {count} test hooks completed "
                "successfully"
            )
            run.status["conditions"] = put_condition(
                list(run.status.get("conditions") or []),
                Condition(TEST_SUCCESS, "True", TEST_SUCCEEDED, message, hr.generation),
                self._now(),
            )
            run.events.append(("Normal", TEST_SUCCEEDED, message))
            self._ready(run, TEST_SUCCEEDED, message)
            return
        message = (
            f"Helm test failed for release {self._shown(released)} with chart "
            f"{released.chart_name}@{released.chart_version}: {error}"
        )
        run.status["conditions"] = put_condition(
            list(run.status.get("conditions") or []),
            Condition(TEST_SUCCESS, "False", TEST_FAILED, message, hr.generation),
            self._now(),
        )
        run.events.append(("Warning", TEST_FAILED, message))
        if self._ignore_test_failures(run):
            self._ready(run, TEST_FAILED, message)  # reported, not a failure
            return
        action = str(run.status.get("lastAttemptedReleaseAction") or "upgrade")
        await self._failed(run, target, action, TEST_FAILED, message)

    async def _failed(
        self, run: _Pass, target: Kube, action: str, reason: str, message: str
    ) -> NoReturn:
        """Count a failed action, remediate it when allowed, raise what the object shows."""
        hr = run.hr
        key = "installFailures" if action == "install" else "upgradeFailures"
        remediation = hr.install.remediation if action == "install" else hr.upgrade.remediation
        run.status[key] = run.count(key) + 1
        run.status["failures"] = run.count("failures") + 1
        conditions = list(run.status.get("conditions") or [])
        if reason != TEST_FAILED:
            conditions = put_condition(
                conditions,
                Condition(RELEASED, "False", reason, message, hr.generation),
                self._now(),
            )
        run.status["conditions"] = conditions
        run.events.append(("Warning", reason, message))
        exhausted = remediation.exhausted(run.count(key))
        if not exhausted or remediation.remediate_last_failure:
            await self._remediate(run, target, action)
        if exhausted:
            self._stall(
                run, reason, message, f"Failed to {action} after {run.count(key)} attempt(s)"
            )
            raise _Reported()
        raise Transient(reason, message, retry_after=RETRY_AFTER_FAILURE)

    async def _remediate(self, run: _Pass, target: Kube, action: str) -> None:
        hr = run.hr
        user = self._user(hr)
        history = await release_history(target, hr.storage_namespace, hr.release_name, self.policy)
        latest = history[0] if history else None
        if latest is None:
            return
        good = next((r for r in history[1:] if r.status in ("deployed", "superseded")), None)
        strategy = "uninstall" if action == "install" else hr.upgrade.remediation.strategy
        if strategy == "rollback" and good is None:
            strategy = "uninstall"
        try:
            if strategy == "rollback":
                assert good is not None
                await self._actions(hr).rollback(
                    hr.release_name,
                    hr.storage_namespace,
                    good.version,
                    helm_timeout=hr.rollback.timeout,
                    max_history=hr.max_history,
                    wait=not hr.rollback.disable_wait,
                    wait_for_jobs=not hr.rollback.disable_wait_for_jobs,
                    disable_hooks=hr.rollback.disable_hooks,
                    force=hr.rollback.force,
                    cleanup_on_fail=hr.rollback.cleanup_on_fail,
                    user=user,
                )
                reason = ROLLBACK_SUCCEEDED
                message = (
                    f"Helm rollback to previous release {hr.storage_namespace}/"
                    f"{hr.release_name}.v{good.version} with chart {good.chart_name}@"
                    f"{good.chart_version} succeeded"
                )
            else:
                await self._actions(hr).uninstall(
                    hr.release_name,
                    hr.storage_namespace,
                    helm_timeout=hr.uninstall.timeout,
                    keep_history=hr.uninstall.keep_history,
                    disable_hooks=hr.uninstall.disable_hooks,
                    wait=not hr.uninstall.disable_wait,
                    propagation=hr.uninstall.deletion_propagation,
                    user=user,
                )
                reason = UNINSTALL_SUCCEEDED
                message = (
                    f"Helm uninstall succeeded for release {self._shown(latest)} with chart "
                    f"{latest.chart_name}@{latest.chart_version}"
                )
        except HelmActionError as exc:
            reason = ROLLBACK_FAILED if strategy == "rollback" else UNINSTALL_FAILED
            message = f"Helm {strategy} failed: {exc}"
        # A rollback's revision has the values of the revision it restored, not the desired
        # ones: recorded so, the next pass sees it out of date and tries again.
        await self._record_release(
            run, target, values_of=good if strategy == "rollback" and good else None
        )
        run.status["conditions"] = put_condition(
            list(run.status.get("conditions") or []),
            Condition(REMEDIATED, "True", reason, message, hr.generation),
            self._now(),
        )
        run.events.append(
            ("Normal" if reason.endswith("Succeeded") else "Warning", reason, message)
        )

    def _request(
        self,
        hr: HelmRelease,
        chart: ChartPackage,
        values: Mapping[str, Any],
        action: str,
        *,
        replace: bool,
        secrets: set[str],
    ) -> InstallRequest:
        options = hr.install if action == "install" else hr.upgrade
        return InstallRequest(
            chart=chart.path,
            values=values,
            timeout=options.timeout,
            max_history=hr.max_history,
            wait=not options.disable_wait,
            wait_for_jobs=not options.disable_wait_for_jobs,
            disable_hooks=options.disable_hooks,
            disable_openapi_validation=options.disable_openapi_validation,
            skip_schema_validation=options.disable_schema_validation,
            take_ownership=not options.disable_take_ownership,
            crds=options.crds,
            create_namespace=hr.install.create_namespace if action == "install" else False,
            replace=replace or (hr.install.replace if action == "install" else False),
            force=hr.upgrade.force if action == "upgrade" else False,
            cleanup_on_fail=hr.upgrade.cleanup_on_fail if action == "upgrade" else False,
            redact=tuple(sorted(secrets)),
            owner=(hr.name, hr.namespace),
            post_render=post_render_config(hr),
        )

    # -- storage and history -------------------------------------------------------------

    def _target(self, hr: HelmRelease) -> Kube:
        bound = self._bound.get((hr.namespace, hr.name))
        kube = bound[0] if bound is not None else self.kube
        user = self._user(hr)
        return kube if user is None else kube.impersonating(user)

    def _actions(self, hr: HelmRelease) -> HelmActions:
        bound = self._bound.get((hr.namespace, hr.name))
        return bound[1] if bound is not None else self.actions

    async def _bind(self, hr: HelmRelease) -> None:
        """Bind the release to its ``spec.kubeConfig`` cluster for this pass (storage
        reads, drift and helm, which gets a private kubeconfig for it); none: the
        controller's cluster. ``Transient`` while the Secret is unusable or the cluster
        does not answer."""
        key = (hr.namespace, hr.name)
        if hr.kube_config is None:
            self._bound.pop(key, None)
            return
        try:
            config, digest = await read_kubeconfig_secret(self.kube, hr.namespace, hr.kube_config)
        except ClusterConfigError as exc:
            raise Transient(INIT_FAILED, str(exc)) from None
        try:
            if self.remote is not None:
                kube = await self.remote(hr.namespace, hr.name, config, digest)
            else:
                kube = self._clients.get(digest) or Kube(config, timeout=10.0)
                self._clients[digest] = kube
        except TargetUnavailable as exc:
            raise Transient(INIT_FAILED, exc.message) from None
        except ConfigError as exc:
            raise Transient(INIT_FAILED, f"kubeConfig: {exc}") from None
        self._bound[key] = (kube, self.actions.for_cluster(kube.config))

    @staticmethod
    def _user(hr: HelmRelease) -> str | None:
        if not hr.service_account_name:
            return None
        return service_account_user(hr.namespace, hr.service_account_name)

    async def _latest(self, hr: HelmRelease, target: Kube) -> Release | None:
        try:
            return await latest_release(
                target, hr.storage_namespace, hr.release_name, self.policy, self._decoded
            )
        except StorageError as exc:
            raise Stalled(
                "GetLastReleaseFailed", f"the release storage is unreadable: {exc}"
            ) from exc
        except Forbidden as exc:
            raise Transient(
                "GetLastReleaseFailed", f"reading the release storage was refused: {exc}"
            ) from exc

    async def _unlock(self, hr: HelmRelease, target: Kube, latest: Release) -> None:
        try:
            await mark_failed(target, hr.storage_namespace, hr.release_name, latest.version)
        except (KubeError, StorageError) as exc:
            raise Transient(
                "ReleaseLocked",
                f"release {self._shown(latest)} is {latest.status} and could not be "
                f"unlocked: {exc}",
            ) from exc

    async def _record_release(
        self, run: _Pass, target: Kube, *, values_of: Release | None = None
    ) -> Release:
        """Put the newest revision in ``status.history`` (statuses of the others refreshed
        from storage, down to the previous successful release). Its ``configDigest`` is the
        desired values' digest, or, for a rollback, the one of the revision it restored
        (``values_of``)."""
        hr = run.hr
        stored = await release_history(target, hr.storage_namespace, hr.release_name, self.policy)
        by_version = {r.version: r for r in stored}
        old = [dict(h) for h in run.status.get("history") or [] if isinstance(h, Mapping)]
        if not stored:
            return Release(
                name=hr.release_name,
                namespace=hr.storage_namespace,
                version=0,
                status="uninstalled",
                chart_name="",
                chart_version="",
                app_version="",
                config_json="{}",
                manifest="",
                first_deployed="",
                last_deployed="",
                description="",
                digest="",
            )
        latest = stored[0]
        digests = {h.get("version"): h.get("configDigest") for h in old}
        if values_of is not None and latest.version != values_of.version:
            restored = digests.get(values_of.version) or config_digest(values_of.config)
            head = latest.snapshot(str(restored))
        else:
            head = latest.snapshot(str(digests.get(latest.version) or run.digest))
        rest = []
        for entry in old:
            if entry.get("version") == latest.version or entry.get("name") != hr.release_name:
                continue
            release = by_version.get(entry.get("version"))  # type: ignore[arg-type]
            if release is not None:
                entry = release.snapshot(str(entry.get("configDigest") or ""))
            rest.append(entry)
        kept: list[dict[str, Any]] = []
        for entry in rest:
            kept.append(entry)
            if entry.get("status") in ("deployed", "superseded"):
                break
        run.status["history"] = [head, *kept][:HISTORY_LIMIT]
        return latest

    # -- dependencies and values ---------------------------------------------------------------

    async def _check_dependencies(self, hr: HelmRelease) -> None:
        for dep in hr.dependencies:
            problem = await self._dependency_problem(dep)
            if problem:
                retry = min(hr.interval, DEPENDENCY_RETRY)
                raise Transient(
                    DEPENDENCY_NOT_READY, f"{problem}, retrying in {retry:g}s", retry_after=retry
                )

    async def _dependency_problem(self, dep: Dependency) -> str:
        shown = f"'{dep.namespace}/{dep.name}'"
        api_version = {
            "HelmRelease": API_VERSION,
            "Kustomization": KUSTOMIZATION_API_VERSION,
        }.get(dep.kind, APPLICATION_API_VERSION)
        try:
            live = await self.kube.get(api_version, dep.kind, dep.name, dep.namespace)
        except NotFoundKind:
            live = None
        except KubeError as exc:
            return f"unable to get {dep.kind} {shown}: {exc}"
        if live is None:
            return f"dependency {dep.kind} {shown} not found"
        status = live.get("status") or {}
        if dep.kind == "Application":
            health = str((status.get("health") or {}).get("status") or "")
            sync = str((status.get("sync") or {}).get("status") or "")
            if (health, sync) != ("Healthy", "Synced"):
                return f"dependency Application {shown} is not ready"
            return ""
        generation = (live.get("metadata") or {}).get("generation")
        ready = _condition(list(status.get("conditions") or []), READY)
        if ready.get("status") != "True" or status.get("observedGeneration") != generation:
            return f"dependency {dep.kind} {shown} is not ready"
        return ""

    def _values_reader(
        self, hr: HelmRelease
    ) -> Callable[[str, str], Awaitable[Mapping[str, Any] | None]]:
        async def read(kind: str, name: str) -> Mapping[str, Any] | None:
            try:
                return await self.kube.get("v1", kind, name, hr.namespace)
            except KubeError as exc:
                raise Transient(VALUES_ERROR, f"could not read {kind} '{name}': {exc}") from exc

        return read

    def _reset_counters(self, run: _Pass) -> None:
        """Flux resets the failure counters when the chart, values or generation change, and
        on a new ``reconcile.fluxcd.io/resetAt``."""
        hr, chart, status = run.hr, run.chart, run.status
        assert chart is not None
        changed = (
            status.get("lastAttemptedRevision") != chart.revision
            or status.get("lastAttemptedConfigDigest") != run.digest
            or status.get("lastAttemptedGeneration") != hr.generation
        )
        reset = bool(hr.reset_at) and hr.reset_at != status.get("lastHandledResetAt")
        if reset:
            status["lastHandledResetAt"] = hr.reset_at
        if changed or reset:
            for key in ("installFailures", "upgradeFailures", "failures"):
                status.pop(key, None)

    def _ignore_test_failures(self, run: _Pass) -> bool:
        hr = run.hr
        action = str(run.status.get("lastAttemptedReleaseAction") or "install")
        remediation = hr.install.remediation if action == "install" else hr.upgrade.remediation
        if remediation.ignore_test_failures is not None:
            return remediation.ignore_test_failures
        return hr.test.ignore_failures

    @staticmethod
    def _failure_key(run: _Pass) -> str:
        action = str(run.status.get("lastAttemptedReleaseAction") or "install")
        return "installFailures" if action == "install" else "upgradeFailures"

    # -- conditions and status --------------------------------------------------------------

    @staticmethod
    def _name(hr: HelmRelease) -> str:
        return f"{hr.storage_namespace}/{hr.release_name}"

    @staticmethod
    def _shown(release: Release) -> str:
        return f"{release.namespace}/{release.name}.v{release.version}"

    def _ready_message(self, run: _Pass, latest: Release) -> str:
        current = _condition(list(run.status.get("conditions") or []), READY)
        if current.get("status") == "True" and current.get("message"):
            return str(current["message"])
        return (
            f"Helm release {self._shown(latest)} with chart {latest.chart_name}@"
            f"{latest.chart_version} is up to date"
        )

    def _ready(self, run: _Pass, reason: str, message: str) -> None:
        hr = run.hr
        conditions = _without(run.status, RECONCILING, STALLED)
        conditions = put_condition(
            conditions, Condition(READY, "True", reason, message, hr.generation), self._now()
        )
        run.status["conditions"] = conditions
        run.status["observedGeneration"] = hr.generation
        run.status["lastAppliedRevision"] = run.chart.revision if run.chart else ""
        for key in ("installFailures", "upgradeFailures", "failures"):
            run.status.pop(key, None)

    def _stall(self, run: _Pass, reason: str, message: str, stalled: str) -> None:
        hr = run.hr
        conditions = _without(run.status, RECONCILING)
        conditions = put_condition(
            conditions, Condition(READY, "False", reason, message, hr.generation), self._now()
        )
        conditions = put_condition(
            conditions,
            Condition(STALLED, "True", RETRIES_EXCEEDED, stalled, hr.generation),
            self._now(),
        )
        run.status["conditions"] = conditions
        run.status["observedGeneration"] = hr.generation

    def _fail(self, status: dict[str, Any], error: ReconcileError, generation: object) -> None:
        if isinstance(error, _Reported):
            return
        gen = generation if isinstance(generation, int) else None
        if isinstance(error, Stalled) and error.reason == RETRIES_EXCEEDED:
            # Ready keeps the reason of the last failure; Stalled says why nothing is tried.
            conditions = _without(status, RECONCILING)
            current = _condition(conditions, READY)
            if current.get("status") != "False":
                conditions = put_condition(
                    conditions,
                    Condition(READY, "False", RETRIES_EXCEEDED, error.message, gen),
                    self._now(),
                )
            conditions = put_condition(
                conditions,
                Condition(STALLED, "True", RETRIES_EXCEEDED, error.message, gen),
                self._now(),
            )
            status["conditions"] = conditions
            if gen is not None:
                status["observedGeneration"] = gen
            return
        status["conditions"] = failure_conditions(
            list(status.get("conditions") or []), error, generation=gen, now=self._now()
        )
        if isinstance(error, Stalled) and gen is not None:
            status["observedGeneration"] = gen

    def _base_status(self, obj: Obj, hr: HelmRelease) -> dict[str, Any]:
        status = dict(obj.get("status") or {})
        if hr.requested_at:
            status["lastHandledReconcileAt"] = hr.requested_at
        return status


class _Reported(Stalled):
    """A stall whose conditions were already written by the pass (retries exceeded)."""

    def __init__(self) -> None:
        super().__init__(RETRIES_EXCEEDED, "")


def _condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    return next((c for c in conditions if c.get("type") == type_), {})


def _without(status: Mapping[str, Any], *types: str) -> list[dict[str, Any]]:
    return [c for c in status.get("conditions") or [] if c.get("type") not in types]


def _sha1(values: Mapping[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
