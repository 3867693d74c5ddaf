"""Health of workload kinds: Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod, Job, CronJob.

The rules are those of Argo CD's built-in checks, which follow ``kubectl rollout status``:

- a controller that has not yet observed the latest spec (``status.observedGeneration`` behind
  ``metadata.generation``) is Progressing whatever its replica counts say;
- a rollout is complete when every desired replica has been updated, old replicas are gone and
  the updated ones are available;
- pods and jobs are judged by phase and conditions; a container stuck in a back-off or an
  ``Err*`` waiting state makes a long-running pod Degraded. Pods with restartPolicy
  OnFailure/Never are usually sync hooks, so a transient image pull error there stays
  Progressing unless the annotation ``argocd.argoproj.io/ignore-restart-policy: "true"`` asks
  for the long-running treatment.

Each check takes the object as the apiserver returns it (defaults filled in) and returns a
``Health``; none of them does I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gitsail.health._fields import (
    condition,
    conditions,
    describe,
    flag,
    generation_lag,
    integer,
    items,
    mapping,
    optional_int,
    text,
)
from gitsail.health.status import Health, HealthStatus
from gitsail.model import Obj

__all__ = [
    "IGNORE_RESTART_POLICY",
    "cronjob_health",
    "daemonset_health",
    "deployment_health",
    "job_health",
    "pod_health",
    "replicaset_health",
    "statefulset_health",
]

IGNORE_RESTART_POLICY = "argocd.argoproj.io/ignore-restart-policy"

_H, _P, _D, _S, _U = (
    HealthStatus.Healthy,
    HealthStatus.Progressing,
    HealthStatus.Degraded,
    HealthStatus.Suspended,
    HealthStatus.Unknown,
)
_ROLLOUT = "Waiting for rollout to finish"


def _name(obj: Obj) -> str:
    return text(obj, "metadata", "name")


def deployment_health(obj: Obj) -> Health:
    if flag(obj, "spec", "paused"):
        return Health(_S, "Deployment is paused")
    if generation_lag(obj) is not None:
        return Health(
            _P, f"{_ROLLOUT}: observed deployment generation less than desired generation"
        )
    progressing = condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(_D, f'Deployment "{_name(obj)}" exceeded its progress deadline')
    desired = optional_int(obj, "spec", "replicas")
    replicas = integer(obj, "status", "replicas")
    updated = integer(obj, "status", "updatedReplicas")
    available = integer(obj, "status", "availableReplicas")
    if desired is not None and updated < desired:
        return Health(
            _P, f"{_ROLLOUT}: {updated} out of {desired} new replicas have been updated..."
        )
    if replicas > updated:
        return Health(
            _P, f"{_ROLLOUT}: {replicas - updated} old replicas are pending termination..."
        )
    if available < updated:
        return Health(_P, f"{_ROLLOUT}: {available} of {updated} updated replicas are available...")
    return Health(_H)


def statefulset_health(obj: Obj) -> Health:
    observed = optional_int(obj, "status", "observedGeneration")
    if observed is None or observed == 0 or generation_lag(obj) is not None:
        return Health(_P, "Waiting for statefulset spec update to be observed...")
    desired = optional_int(obj, "spec", "replicas")
    ready = integer(obj, "status", "readyReplicas")
    if desired is not None and ready < desired:
        return Health(_P, f"Waiting for {desired - ready} pods to be ready...")
    strategy = mapping(obj, "spec", "updateStrategy")
    updated = integer(obj, "status", "updatedReplicas")
    if strategy.get("type") == "OnDelete":
        return Health(_H, f"statefulset has {ready} ready pods")
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and isinstance(rolling, dict):
        partition = optional_int(rolling, "partition")
        if desired is not None and partition is not None and updated < desired - partition:
            return Health(
                _P,
                "Waiting for partitioned roll out to finish: "
                f"{updated} out of {desired - partition} new pods have been updated...",
            )
        return Health(_H, f"partitioned roll out complete: {updated} new pods have been updated...")
    current_rev = text(obj, "status", "currentRevision")
    update_rev = text(obj, "status", "updateRevision")
    if update_rev != current_rev:
        return Health(
            _P,
            f"waiting for statefulset rolling update to complete {updated} pods "
            f"at revision {update_rev}...",
        )
    current = integer(obj, "status", "currentReplicas")
    return Health(
        _H, f"statefulset rolling update complete {current} pods at revision {current_rev}..."
    )


def daemonset_health(obj: Obj) -> Health:
    name = _name(obj)
    if generation_lag(obj) is not None:
        return Health(
            _P, f"{_ROLLOUT}: observed daemon set generation less than desired generation"
        )
    desired = integer(obj, "status", "desiredNumberScheduled")
    updated = integer(obj, "status", "updatedNumberScheduled")
    available = integer(obj, "status", "numberAvailable")
    if mapping(obj, "spec", "updateStrategy").get("type") == "OnDelete":
        return Health(_H, f"daemon set {updated} out of {desired} new pods have been updated")
    if updated < desired:
        return Health(
            _P,
            f'Waiting for daemon set "{name}" rollout to finish: '
            f"{updated} out of {desired} new pods have been updated...",
        )
    if available < desired:
        return Health(
            _P,
            f'Waiting for daemon set "{name}" rollout to finish: '
            f"{available} of {desired} updated pods are available...",
        )
    return Health(_H)


def replicaset_health(obj: Obj) -> Health:
    if generation_lag(obj) is not None:
        return Health(
            _P, f"{_ROLLOUT}: observed replica set generation less than desired generation"
        )
    failure = condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return Health(_D, describe(failure))
    desired = optional_int(obj, "spec", "replicas")
    available = integer(obj, "status", "availableReplicas")
    if desired is not None and available < desired:
        return Health(_P, f"{_ROLLOUT}: {available} out of {desired} new replicas are available...")
    return Health(_H)


def _is_failing_wait(reason: str) -> bool:
    # CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ...
    return reason.startswith("Err") or reason.endswith(("Error", "BackOff"))


def _terminated_message(status: dict[str, Any]) -> str:
    terminated = mapping(status, "state", "terminated")
    if not terminated:
        return ""
    if terminated.get("message"):
        return str(terminated["message"])
    if terminated.get("reason") == "OOMKilled":
        return "OOMKilled"
    code = integer(terminated, "exitCode")
    if code != 0:
        return f'container "{status.get("name", "")}" failed with exit code {code}'
    return ""


def _pod_ready(obj: Obj) -> bool:
    ready = condition(obj, "Ready")
    return ready is not None and ready.get("status") == "True"


def pod_health(obj: Obj) -> Health:
    restart_policy = text(obj, "spec", "restartPolicy") or "Always"
    annotations = mapping(obj, "metadata", "annotations")
    long_running = restart_policy == "Always" or annotations.get(IGNORE_RESTART_POLICY) == "true"
    statuses = [
        s
        for s in items(obj, "status", "initContainerStatuses")
        + items(obj, "status", "containerStatuses")
        if isinstance(s, dict)
    ]
    message = text(obj, "status", "message")

    if long_running:
        failing: list[str] = []
        for status in statuses:
            waiting = mapping(status, "state", "waiting")
            reason = str(waiting.get("reason") or "")
            if _is_failing_wait(reason):
                detail = str(waiting.get("message") or "")
                container = status.get("name", "")
                failing.append(
                    f'container "{container}": {reason}' + (f": {detail}" if detail else "")
                )
        if failing:
            return Health(_D, ", ".join(failing))

    phase = text(obj, "status", "phase")
    if phase == "Pending":
        return Health(_P, message)
    if phase == "Succeeded":
        return Health(_H, message)
    if phase == "Failed":
        if message:
            return Health(_D, message)
        for status in statuses:
            failed = _terminated_message(status)
            if failed:
                return Health(_D, failed)
        return Health(_D)
    if phase == "Running":
        if not long_running:
            # OnFailure/Never pods have a finite life (typically hooks): still working.
            return Health(_P, message)
        if _pod_ready(obj):
            return Health(_H, message)
        containers = items(obj, "status", "containerStatuses")
        if any(mapping(s, "lastState", "terminated") for s in containers):
            return Health(_D, message or "a container restarted and the pod is not ready")
        return Health(_P, message)
    return Health(_U, message)


def job_health(obj: Obj) -> Health:
    for cond in conditions(obj):
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Failed":
            return Health(_D, describe(cond) or "Job failed")
        if cond.get("type") == "Complete":
            return Health(_H, str(cond.get("message") or ""))
    if flag(obj, "spec", "suspend"):
        return Health(_S, "Job is suspended")
    active = integer(obj, "status", "active")
    return Health(_P, f"{active} active pods" if active else "")


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def cronjob_health(obj: Obj) -> Health:
    """Suspended if suspended; otherwise judged by the outcome of the last scheduled job.

    Only the CronJob's own status is read (no Job lookups): a schedule later than the last
    success with no job active means the last run did not succeed.
    """
    if flag(obj, "spec", "suspend"):
        return Health(_S, "CronJob is suspended")
    scheduled = _time(text(obj, "status", "lastScheduleTime"))
    if scheduled is None:
        return Health(_H, "CronJob has not been scheduled yet")
    succeeded = _time(text(obj, "status", "lastSuccessfulTime"))
    if succeeded is not None and succeeded >= scheduled:
        return Health(_H, "the last job completed successfully")
    active = [a for a in items(obj, "status", "active") if isinstance(a, dict)]
    if active:
        running = f'job "{active[-1].get("name") or ""}" is running'
        if succeeded is None:
            # The first run ever: nothing has succeeded yet, so not Healthy either.
            return Health(_P, running)
        return Health(_H, running)
    return Health(_D, "the last scheduled job did not complete successfully")
