from __future__ import annotations

import json
from typing import Any

from gitsail.health import Health, HealthStatus
from gitsail.health.builtin import (
    BUILTIN_CHECKS,
    apiservice_health,
    application_health,
    crd_health,
    hpa_health,
    ingress_health,
    namespace_health,
    pvc_health,
    service_health,
)

H = HealthStatus


def service(type_: str, ingress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": type_,
            "clusterIP": "10.96.12.7",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "web"},
        },
        "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
    }


def test_cluster_ip_service_is_healthy() -> None:
    assert service_health(service("ClusterIP")).status is H.Healthy


def test_load_balancer_without_address_is_progressing() -> None:
    assert service_health(service("LoadBalancer")).status is H.Progressing


def test_load_balancer_with_address_is_healthy() -> None:
    lb = service("LoadBalancer", [{"ip": "203.0.113.10", "ipMode": "VIP"}])
    assert service_health(lb).status is H.Healthy


def test_ingress_health_follows_published_address() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {"rules": [{"host": "shop.example.com"}]},
        "status": {"loadBalancer": {}},
    }
    assert ingress_health(obj).status is H.Progressing
    obj["status"]["loadBalancer"]["ingress"] = [{"hostname": "lb.example.com"}]
    assert ingress_health(obj).status is H.Healthy


def test_pvc_phases() -> None:
    def claim(phase: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}}

    assert pvc_health(claim("Bound")).status is H.Healthy
    assert pvc_health(claim("Pending")).status is H.Progressing
    assert pvc_health(claim("Lost")).status is H.Degraded


def hpa(*conditions: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "minReplicas": 2,
            "maxReplicas": 10,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        },
        "status": {"currentReplicas": 2, "desiredReplicas": 2, "conditions": list(conditions)},
    }


def test_hpa_that_can_scale_is_healthy() -> None:
    obj = hpa(
        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
        {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},
        {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange"},
    )
    assert hpa_health(obj).status is H.Healthy


def test_hpa_without_metrics_is_degraded() -> None:
    obj = hpa(
        {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
        {
            "type": "ScalingActive",
            "status": "False",
            "reason": "FailedGetResourceMetric",
            "message": "the HPA was unable to compute the replica count: no metrics returned",
        },
    )
    health = hpa_health(obj)
    assert health.status is H.Degraded
    assert health.message.startswith("FailedGetResourceMetric: ")


def test_hpa_unable_to_scale_is_degraded() -> None:
    obj = hpa({"type": "AbleToScale", "status": "False", "reason": "FailedGetScale"})
    assert hpa_health(obj).status is H.Degraded


def test_hpa_of_target_scaled_to_zero_is_not_degraded() -> None:
    obj = hpa(
        {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
        {"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"},
    )
    assert hpa_health(obj).status is H.Healthy


def test_new_hpa_waits_to_autoscale() -> None:
    assert hpa_health(hpa()).status is H.Progressing


def test_autoscaling_v1_hpa_reads_conditions_from_annotation() -> None:
    obj = hpa()
    obj["apiVersion"] = "autoscaling/v1"
    del obj["status"]["conditions"]
    conditions = [{"type": "ScalingActive", "status": "False", "reason": "InvalidSelector"}]
    obj["metadata"]["annotations"] = {
        "autoscaling.alpha.kubernetes.io/conditions": json.dumps(conditions)
    }
    assert hpa_health(obj).status is H.Degraded


def crd(*conditions: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io", "generation": 1},
        "spec": {"group": "cert-manager.io", "scope": "Namespaced"},
        "status": {"conditions": list(conditions)},
    }


def test_established_crd_is_healthy() -> None:
    obj = crd(
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
    )
    assert crd_health(obj).status is H.Healthy


def test_crd_with_conflicting_names_is_degraded() -> None:
    obj = crd(
        {
            "type": "NamesAccepted",
            "status": "False",
            "reason": "PluralConflict",
            "message": '"certificates" is already in use',
        },
        {"type": "Established", "status": "False", "reason": "NotAccepted"},
    )
    health = crd_health(obj)
    assert health.status is H.Degraded
    assert "already in use" in health.message


def test_non_structural_crd_is_degraded() -> None:
    obj = crd(
        {"type": "NamesAccepted", "status": "True"},
        {"type": "Established", "status": "True"},
        {"type": "NonStructuralSchema", "status": "True", "reason": "Violations"},
    )
    assert crd_health(obj).status is H.Degraded


def test_crd_being_installed_or_deleted_is_progressing() -> None:
    assert crd_health(crd()).status is H.Progressing
    terminating = crd({"type": "Established", "status": "True"})
    terminating["metadata"]["deletionTimestamp"] = "2026-05-04T10:00:00Z"
    assert crd_health(terminating).status is H.Progressing


def test_apiservice_available_condition() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "status": {},
    }
    assert apiservice_health(obj).status is H.Progressing
    obj["status"]["conditions"] = [
        {"type": "Available", "status": "False", "reason": "MissingEndpoints"}
    ]
    assert apiservice_health(obj).status is H.Progressing
    obj["status"]["conditions"][0] = {"type": "Available", "status": "True", "reason": "Passed"}
    assert apiservice_health(obj).status is H.Healthy


def test_namespace_phases() -> None:
    active = {"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Active"}}
    terminating = {"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}}
    assert namespace_health(active).status is H.Healthy
    assert namespace_health(terminating).status is H.Progressing


def test_child_application_reports_its_own_health() -> None:
    app: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "payments"},
        "status": {"health": {"status": "Degraded", "message": "1 pod crashing"}},
    }
    assert application_health(app) == Health(H.Degraded, "1 pod crashing")
    app["status"] = {}
    assert application_health(app).status is H.Progressing
    app["status"] = {"health": {"status": "Exploded"}}
    assert application_health(app).status is H.Unknown


def test_builtin_table_is_keyed_by_group_not_version() -> None:
    assert ("apps", "Deployment") in BUILTIN_CHECKS
    assert ("", "Pod") in BUILTIN_CHECKS
    assert all("/" not in group for group, _ in BUILTIN_CHECKS)
