"""Built-in health checks for core kinds other than workloads, and the table of all built-ins.

A built-in check wins over the generic kstatus reading (``gitsail.health.kstatus``): these
kinds either have no conditions (Service, PVC) or conditions whose meaning differs from the
kstatus convention (HPA, CRD, APIService). The table is keyed by (API group, kind), not by
version, so ``autoscaling/v1`` and ``autoscaling/v2`` HPAs share one check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gitsail.health._fields import (
    condition,
    conditions,
    describe,
    is_false,
    is_true,
    items,
    mapping,
    text,
)
from gitsail.health.status import Health, HealthStatus
from gitsail.health.workloads import (
    cronjob_health,
    daemonset_health,
    deployment_health,
    job_health,
    pod_health,
    replicaset_health,
    statefulset_health,
)
from gitsail.model import Obj

__all__ = [
    "BUILTIN_CHECKS",
    "HealthCheck",
    "apiservice_health",
    "application_health",
    "crd_health",
    "hpa_health",
    "ingress_health",
    "namespace_health",
    "pvc_health",
    "service_health",
]

HealthCheck = Callable[[Obj], Health]

_H, _P, _D, _U = (
    HealthStatus.Healthy,
    HealthStatus.Progressing,
    HealthStatus.Degraded,
    HealthStatus.Unknown,
)


def service_health(obj: Obj) -> Health:
    if text(obj, "spec", "type") == "LoadBalancer" and not items(
        obj, "status", "loadBalancer", "ingress"
    ):
        return Health(_P, "Waiting for the load balancer to get an address")
    return Health(_H)


def ingress_health(obj: Obj) -> Health:
    if items(obj, "status", "loadBalancer", "ingress"):
        return Health(_H)
    return Health(_P, "Waiting for the ingress controller to publish an address")


def pvc_health(obj: Obj) -> Health:
    phase = text(obj, "status", "phase")
    if phase == "Bound":
        return Health(_H)
    if phase == "Pending":
        return Health(_P, "Waiting for the claim to be bound")
    if phase == "Lost":
        return Health(_D, "The claim has lost its volume")
    return Health(_U, f"Unknown phase {phase!r}" if phase else "No phase reported yet")


# HPA autoscaling/v1 keeps its conditions in this annotation (JSON list), v2 in status.
_HPA_CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"


def _hpa_conditions(obj: Obj) -> list[dict[str, Any]]:
    found = conditions(obj)
    if found:
        return found
    raw = mapping(obj, "metadata", "annotations").get(_HPA_CONDITIONS_ANNOTATION)
    if not isinstance(raw, str):
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return []
    return [c for c in parsed if isinstance(c, dict)] if isinstance(parsed, list) else []


def hpa_health(obj: Obj) -> Health:
    """Degraded when the HPA cannot scale or cannot read its metrics; Healthy when it is active.

    ``ScalingActive=False`` with reason ``ScalingDisabled`` is the HPA standing down because its
    target was scaled to zero on purpose; that is reported Healthy with the reason.
    """
    found = _hpa_conditions(obj)
    by_type = {str(c.get("type")): c for c in found}
    able = by_type.get("AbleToScale")
    active = by_type.get("ScalingActive")
    if is_false(able):
        return Health(_D, describe(able))
    if is_false(active):
        if active.get("reason") == "ScalingDisabled":
            return Health(_H, describe(active))
        return Health(_D, describe(active))
    if is_true(active) or is_true(able):
        limited = by_type.get("ScalingLimited")
        chosen = limited if is_true(limited) else (active or able)
        return Health(_H, describe(chosen) if chosen is not None else "")
    return Health(_P, "Waiting to autoscale")


def crd_health(obj: Obj) -> Health:
    if mapping(obj, "metadata").get("deletionTimestamp") or is_true(condition(obj, "Terminating")):
        return Health(_P, "CRD is terminating")
    names = condition(obj, "NamesAccepted")
    if is_false(names):
        return Health(_D, f"CRD names have not been accepted: {describe(names)}")
    non_structural = condition(obj, "NonStructuralSchema")
    if is_true(non_structural):
        return Health(_D, f"CRD schema is non-structural: {describe(non_structural)}")
    if is_true(condition(obj, "Established")):
        return Health(_H, "CRD is established")
    return Health(_P, "Waiting for the CRD to be established")


def apiservice_health(obj: Obj) -> Health:
    available = condition(obj, "Available")
    if available is None:
        return Health(_P, "Waiting to be processed")
    if is_true(available):
        return Health(_H, describe(available))
    return Health(_P, describe(available))


def namespace_health(obj: Obj) -> Health:
    phase = text(obj, "status", "phase")
    if phase == "Terminating" or mapping(obj, "metadata").get("deletionTimestamp"):
        return Health(_P, "Namespace is terminating")
    return Health(_H)


def application_health(obj: Obj) -> Health:
    """An Argo CD Application (app of apps) is as healthy as it reports itself to be.

    Used only when ``argocd-cm`` restores the Application health check (Argo CD's documented
    Lua: the child's ``status.health``, Progressing until it reports one); by default
    ``resource_health`` gives a child Application no health at all.
    """
    health = mapping(obj, "status", "health")
    status = health.get("status")
    if not isinstance(status, str) or not status:
        return Health(_P, "Waiting for the application to report its health")
    try:
        code = HealthStatus(status)
    except ValueError:
        return Health(_U, f"Unknown health status {status!r}")
    return Health(code, str(health.get("message") or ""))


BUILTIN_CHECKS: dict[tuple[str, str], HealthCheck] = {
    ("apps", "Deployment"): deployment_health,
    ("extensions", "Deployment"): deployment_health,
    ("apps", "StatefulSet"): statefulset_health,
    ("apps", "DaemonSet"): daemonset_health,
    ("extensions", "DaemonSet"): daemonset_health,
    ("apps", "ReplicaSet"): replicaset_health,
    ("extensions", "ReplicaSet"): replicaset_health,
    ("", "Pod"): pod_health,
    ("batch", "Job"): job_health,
    ("batch", "CronJob"): cronjob_health,
    ("", "Service"): service_health,
    ("networking.k8s.io", "Ingress"): ingress_health,
    ("extensions", "Ingress"): ingress_health,
    ("", "PersistentVolumeClaim"): pvc_health,
    ("autoscaling", "HorizontalPodAutoscaler"): hpa_health,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd_health,
    ("apiregistration.k8s.io", "APIService"): apiservice_health,
    ("", "Namespace"): namespace_health,
    ("argoproj.io", "Application"): application_health,
}
