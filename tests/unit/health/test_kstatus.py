from __future__ import annotations

from typing import Any

from gitsail.health import HealthStatus
from gitsail.health.kstatus import kstatus_health

H = HealthStatus


def certificate(
    *conditions: dict[str, Any], generation: int = 2, observed: int = 2
) -> dict[str, Any]:
    """A cert-manager Certificate, the way the apiserver returns it."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "shop-tls", "namespace": "shop", "generation": generation},
        "spec": {
            "secretName": "shop-tls",
            "dnsNames": ["shop.example.com"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
        },
        "status": {
            "conditions": [
                {"observedGeneration": observed, "lastTransitionTime": "2026-05-04T10:00:00Z", **c}
                for c in conditions
            ],
            "notAfter": "2026-08-02T10:00:00Z",
        },
    }


def test_ready_certificate_is_healthy() -> None:
    obj = certificate(
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "Certificate is up to date and has not expired",
        }
    )
    obj["status"]["observedGeneration"] = 2
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Healthy
    assert "up to date" in health.message


def test_certificate_whose_spec_changed_is_progressing_until_observed() -> None:
    obj = certificate({"type": "Ready", "status": "True", "reason": "Ready"}, generation=3)
    obj["status"]["observedGeneration"] = 2
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Progressing
    assert "generation 3" in health.message


def test_not_ready_with_failure_reason_is_degraded() -> None:
    obj = certificate(
        {
            "type": "Ready",
            "status": "False",
            "reason": "Failed",
            "message": "The certificate request has failed to complete",
        }
    )
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Degraded


def test_not_ready_while_issuing_is_progressing() -> None:
    obj = certificate(
        {"type": "Ready", "status": "False", "reason": "Issuing", "message": "Issuing"}
    )
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Progressing


def test_ready_unknown_is_progressing() -> None:
    obj = certificate({"type": "Ready", "status": "Unknown", "reason": "Progressing"})
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Progressing


def test_stalled_wins_over_ready_and_reconciling() -> None:
    obj = certificate(
        {"type": "Reconciling", "status": "True", "reason": "Progressing"},
        {"type": "Stalled", "status": "True", "reason": "InvalidPath", "message": "no such dir"},
        {"type": "Ready", "status": "True"},
    )
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Degraded
    assert health.message == "InvalidPath: no such dir"


def test_reconciling_is_progressing_even_when_previously_ready() -> None:
    obj = certificate(
        {"type": "Ready", "status": "True"},
        {"type": "Reconciling", "status": "True", "reason": "Progressing"},
    )
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Progressing


def test_available_condition_counts_when_there_is_no_ready() -> None:
    obj = certificate({"type": "Available", "status": "True"})
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Healthy


def test_other_conditions_only_mean_current() -> None:
    obj = certificate({"type": "Synced", "status": "True"})
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Healthy


def test_object_without_conditions_has_no_health() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
    assert kstatus_health(config_map) is None
    assert kstatus_health(certificate()) is None


def test_terminating_object_is_progressing() -> None:
    obj = certificate({"type": "Ready", "status": "True"})
    obj["metadata"]["deletionTimestamp"] = "2026-05-04T10:00:00Z"
    health = kstatus_health(obj)
    assert health is not None
    assert health.status is H.Progressing
