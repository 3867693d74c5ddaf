from __future__ import annotations

import copy
from typing import Any

from gitsail.health import Health, HealthStatus
from gitsail.health.workloads import (
    cronjob_health,
    daemonset_health,
    deployment_health,
    job_health,
    pod_health,
    replicaset_health,
    statefulset_health,
)

H = HealthStatus


def deployment(**status: Any) -> dict[str, Any]:
    """A Deployment as the apiserver returns it after a completed rollout of 3 replicas."""
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": 4},
        "spec": {
            "replicas": 3,
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": 'ReplicaSet "web-5d9c7b" has successfully progressed.',
                },
            ],
        },
    }
    obj["status"].update(status)
    return obj


def test_deployment_with_all_replicas_updated_and_available_is_healthy() -> None:
    assert deployment_health(deployment()).status is H.Healthy


def test_deployment_mid_rollout_waits_for_new_replicas() -> None:
    health = deployment_health(deployment(replicas=4, updatedReplicas=1, availableReplicas=3))
    assert health.status is H.Progressing
    assert health.message == (
        "Waiting for rollout to finish: 1 out of 3 new replicas have been updated..."
    )


def test_deployment_waits_for_old_replicas_to_terminate() -> None:
    health = deployment_health(deployment(replicas=4, updatedReplicas=3, availableReplicas=3))
    assert health.status is H.Progressing
    assert "1 old replicas are pending termination" in health.message


def test_deployment_waits_for_updated_replicas_to_become_available() -> None:
    health = deployment_health(deployment(availableReplicas=2))
    assert health.status is H.Progressing
    assert "2 of 3 updated replicas are available" in health.message


def test_deployment_not_yet_observed_by_controller_is_progressing_despite_counts() -> None:
    health = deployment_health(deployment(observedGeneration=3))
    assert health.status is H.Progressing
    assert "observed deployment generation less than desired generation" in health.message


def test_paused_deployment_is_suspended() -> None:
    obj = deployment(updatedReplicas=1)
    obj["spec"]["paused"] = True
    assert deployment_health(obj).status is H.Suspended


def test_deployment_past_progress_deadline_is_degraded() -> None:
    obj = deployment(updatedReplicas=1, availableReplicas=2, unavailableReplicas=1)
    obj["status"]["conditions"][1] = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "web-7f8d9" has timed out progressing.',
    }
    health = deployment_health(obj)
    assert health.status is H.Degraded
    assert health.message == 'Deployment "web" exceeded its progress deadline'


def test_deployment_scaled_to_zero_is_healthy() -> None:
    obj = deployment(replicas=0, updatedReplicas=0, availableReplicas=0, readyReplicas=0)
    obj["spec"]["replicas"] = 0
    assert deployment_health(obj).status is H.Healthy


def statefulset(**status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "generation": 2},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "readyReplicas": 3,
            "currentReplicas": 3,
            "updatedReplicas": 3,
            "availableReplicas": 3,
            "currentRevision": "db-6b9f5c",
            "updateRevision": "db-6b9f5c",
        },
    }
    obj["status"].update(status)
    return obj


def test_statefulset_rolled_out_is_healthy() -> None:
    health = statefulset_health(statefulset())
    assert health.status is H.Healthy
    assert "3 new pods have been updated" in health.message


def test_statefulset_waits_for_ready_pods() -> None:
    health = statefulset_health(statefulset(readyReplicas=1))
    assert health.status is H.Progressing
    assert health.message == "Waiting for 2 pods to be ready..."


def test_statefulset_not_observed_yet_is_progressing() -> None:
    assert statefulset_health(statefulset(observedGeneration=1)).status is H.Progressing
    fresh = statefulset()
    del fresh["status"]["observedGeneration"]
    assert statefulset_health(fresh).status is H.Progressing


def test_statefulset_partition_only_waits_for_pods_above_the_partition() -> None:
    obj = statefulset(updatedReplicas=1, currentReplicas=2, updateRevision="db-7c4d2a")
    obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 2
    health = statefulset_health(obj)
    assert health.status is H.Healthy
    assert health.message.startswith("partitioned roll out complete")

    obj["status"]["updatedReplicas"] = 0
    health = statefulset_health(obj)
    assert health.status is H.Progressing
    assert "0 out of 1 new pods have been updated" in health.message


def test_statefulset_on_delete_is_healthy_once_pods_are_ready() -> None:
    obj = statefulset(updatedReplicas=0, updateRevision="db-7c4d2a")
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    health = statefulset_health(obj)
    assert health.status is H.Healthy
    assert health.message == "statefulset has 3 ready pods"


def test_statefulset_without_partition_compares_revisions() -> None:
    obj = statefulset(updatedReplicas=1, updateRevision="db-7c4d2a")
    obj["spec"]["updateStrategy"] = {"type": "RollingUpdate"}
    health = statefulset_health(obj)
    assert health.status is H.Progressing
    assert "revision db-7c4d2a" in health.message
    obj["status"]["currentRevision"] = "db-7c4d2a"
    assert statefulset_health(obj).status is H.Healthy


def daemonset(**status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "generation": 5},
        "spec": {"updateStrategy": {"type": "RollingUpdate"}},
        "status": {
            "observedGeneration": 5,
            "currentNumberScheduled": 4,
            "desiredNumberScheduled": 4,
            "numberAvailable": 4,
            "numberReady": 4,
            "updatedNumberScheduled": 4,
            "numberMisscheduled": 0,
        },
    }
    obj["status"].update(status)
    return obj


def test_daemonset_rollout_states() -> None:
    assert daemonset_health(daemonset()).status is H.Healthy
    updating = daemonset_health(daemonset(updatedNumberScheduled=2))
    assert updating.status is H.Progressing
    assert "2 out of 4 new pods have been updated" in updating.message
    unavailable = daemonset_health(daemonset(numberAvailable=3))
    assert unavailable.status is H.Progressing
    assert "3 of 4 updated pods are available" in unavailable.message
    assert daemonset_health(daemonset(observedGeneration=4)).status is H.Progressing


def test_daemonset_on_delete_is_healthy_while_pods_are_old() -> None:
    obj = daemonset(updatedNumberScheduled=1)
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert daemonset_health(obj).status is H.Healthy


def test_replicaset_states() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-5d9c7b", "generation": 1},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "availableReplicas": 1},
    }
    assert replicaset_health(obj).status is H.Progressing
    obj["status"]["availableReplicas"] = 2
    assert replicaset_health(obj).status is H.Healthy
    quota = copy.deepcopy(obj)
    quota["status"]["conditions"] = [
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": 'pods "web-5d9c7b-x" is forbidden: exceeded quota: compute',
        }
    ]
    failed = replicaset_health(quota)
    assert failed.status is H.Degraded
    assert "exceeded quota" in failed.message


def pod(phase: str = "Running", restart_policy: str = "Always", **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-5d9c7b-abcde", "namespace": "shop"},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "web", "image": "nginx:1.27"}],
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-05-04T10:00:00Z"}},
                }
            ],
        },
    }
    obj["status"].update(status)
    return obj


def crashing(reason: str, message: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "web",
            "ready": False,
            "restartCount": 5,
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }
    ]


def test_running_ready_pod_is_healthy() -> None:
    assert pod_health(pod()).status is H.Healthy


def test_pod_in_crash_loop_back_off_is_degraded() -> None:
    obj = pod(
        containerStatuses=crashing(
            "CrashLoopBackOff", "back-off 2m40s restarting failed container=web"
        ),
        conditions=[{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
    )
    health = pod_health(obj)
    assert health.status is H.Degraded
    assert "CrashLoopBackOff" in health.message
    assert "back-off 2m40s" in health.message


def test_pending_pod_with_image_pull_errors_is_degraded() -> None:
    for reason in ("ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"):
        obj = pod("Pending", containerStatuses=crashing(reason, 'image "nginx:nope" not found'))
        assert pod_health(obj).status is H.Degraded, reason


def test_init_container_back_off_is_degraded() -> None:
    obj = pod("Pending", initContainerStatuses=crashing("CrashLoopBackOff", "back-off"))
    obj["status"]["initContainerStatuses"][0]["name"] = "migrate"
    health = pod_health(obj)
    assert health.status is H.Degraded
    assert 'container "migrate"' in health.message


def test_hook_pod_with_image_pull_error_keeps_progressing() -> None:
    obj = pod("Pending", "Never", containerStatuses=crashing("ImagePullBackOff", "Back-off"))
    assert pod_health(obj).status is H.Progressing


def test_ignore_restart_policy_annotation_treats_hook_pod_as_long_running() -> None:
    obj = pod("Pending", "Never", containerStatuses=crashing("ImagePullBackOff", "Back-off"))
    obj["metadata"]["annotations"] = {"argocd.argoproj.io/ignore-restart-policy": "true"}
    assert pod_health(obj).status is H.Degraded
    running = pod("Running", "OnFailure")
    assert pod_health(running).status is H.Progressing
    running["metadata"]["annotations"] = {"argocd.argoproj.io/ignore-restart-policy": "true"}
    assert pod_health(running).status is H.Healthy


def test_running_pod_not_ready_after_a_restart_is_degraded() -> None:
    statuses = [
        {
            "name": "web",
            "ready": False,
            "restartCount": 1,
            "state": {"running": {"startedAt": "2026-05-04T10:05:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        }
    ]
    obj = pod(containerStatuses=statuses, conditions=[{"type": "Ready", "status": "False"}])
    assert pod_health(obj).status is H.Degraded


def test_running_pod_starting_up_is_progressing() -> None:
    obj = pod(conditions=[{"type": "Ready", "status": "False"}])
    obj["status"]["containerStatuses"][0]["ready"] = False
    assert pod_health(obj).status is H.Progressing


def test_pod_phases() -> None:
    assert pod_health(pod("Pending", message="")).status is H.Progressing
    assert pod_health(pod("Succeeded", "Never")).status is H.Healthy
    assert pod_health(pod("Unknown")).status is H.Unknown


def test_failed_pod_reports_why() -> None:
    statuses = [
        {
            "name": "migrate",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}},
        }
    ]
    health = pod_health(pod("Failed", "Never", containerStatuses=statuses))
    assert health.status is H.Degraded
    assert health.message == 'container "migrate" failed with exit code 3'
    evicted = pod_health(pod("Failed", message="The node was low on resource: memory."))
    assert evicted == Health(H.Degraded, "The node was low on resource: memory.")


def job(**status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop"},
        "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1, "suspend": False},
        "status": {"startTime": "2026-05-04T10:00:00Z", "active": 1},
    }
    obj["status"].update(status)
    return obj


def test_job_states() -> None:
    assert job_health(job()).status is H.Progressing
    complete = job(
        active=0,
        succeeded=1,
        conditions=[
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ],
    )
    assert job_health(complete).status is H.Healthy
    failed = job(
        active=0,
        failed=7,
        conditions=[
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            },
        ],
    )
    health = job_health(failed)
    assert health.status is H.Degraded
    assert "backoff limit" in health.message


def test_suspended_job_is_suspended() -> None:
    obj = job(
        active=0,
        conditions=[{"type": "Suspended", "status": "True", "reason": "JobSuspended"}],
    )
    obj["spec"]["suspend"] = True
    assert job_health(obj).status is H.Suspended


def cronjob(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "shop"},
        "spec": {"schedule": "*/5 * * * *", "suspend": False},
        "status": status,
    }


def test_cronjob_states() -> None:
    assert cronjob_health(cronjob()).status is H.Healthy
    ok = cronjob(lastScheduleTime="2026-05-04T10:05:00Z", lastSuccessfulTime="2026-05-04T10:05:09Z")
    assert cronjob_health(ok).status is H.Healthy
    failed = cronjob(
        lastScheduleTime="2026-05-04T10:10:00Z", lastSuccessfulTime="2026-05-04T10:05:09Z"
    )
    assert cronjob_health(failed).status is H.Degraded
    never = cronjob(lastScheduleTime="2026-05-04T10:10:00Z")
    assert cronjob_health(never).status is H.Degraded


def test_cronjob_running_its_first_job_is_progressing() -> None:
    first = cronjob(
        lastScheduleTime="2026-05-04T10:10:00Z",
        active=[{"kind": "Job", "name": "report-29634010", "namespace": "shop"}],
    )
    health = cronjob_health(first)
    assert health.status is H.Progressing
    assert "report-29634010" in health.message
    later = dict(first, status={**first["status"], "lastSuccessfulTime": "2026-05-04T10:05:09Z"})
    assert cronjob_health(later).status is H.Healthy


def test_suspended_cronjob_is_suspended() -> None:
    obj = cronjob(lastScheduleTime="2026-05-04T10:10:00Z")
    obj["spec"]["suspend"] = True
    assert cronjob_health(obj).status is H.Suspended
