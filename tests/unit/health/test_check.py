from __future__ import annotations

from typing import Any

import pytest

import gitsail.health
from gitsail.health import (
    APPLICATION_HEALTH_KEY,
    Health,
    HealthStatus,
    aggregate,
    application_health_configured,
    resource_health,
)

H = HealthStatus


def test_absent_object_is_missing() -> None:
    health = resource_health(None)
    assert health is not None
    assert health.status is H.Missing


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [],
        },
    ],
)
def test_kinds_without_health_do_not_report_any(obj: dict[str, Any]) -> None:
    assert resource_health(obj) is None


def test_builtin_check_is_chosen_by_group_and_kind() -> None:
    lb = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {}},
    }
    health = resource_health(lb)
    assert health is not None
    assert health.status is H.Progressing


def test_custom_resource_falls_back_to_kstatus() -> None:
    kustomization = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed"}],
        },
    }
    health = resource_health(kustomization)
    assert health is not None
    assert health.status is H.Degraded


def test_ignore_healthcheck_annotation_removes_object_from_aggregation() -> None:
    broken = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "scratch",
            "annotations": {"argocd.argoproj.io/ignore-healthcheck": "true"},
        },
        "status": {"phase": "Lost"},
    }
    assert resource_health(broken) is None
    assert aggregate([resource_health(broken), Health(H.Healthy)]) is H.Healthy
    shown = resource_health(broken, honour_ignore_annotation=False)
    assert shown is not None
    assert shown.status is H.Degraded


def test_malformed_object_reports_unknown_instead_of_raising() -> None:
    odd = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2}, "status": 5}
    health = resource_health(odd)
    assert health is not None
    assert health.status in set(H)


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(gitsail.health) if not name.startswith("_")}
    modules = {"builtin", "check", "kstatus", "status", "workloads"}
    assert public - modules == set(gitsail.health.__all__)


def _child_app(status: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "child", "namespace": "argocd"},
        "status": {"health": {"status": status, "message": "from the child"}},
    }


def test_child_application_has_no_health_by_default_as_in_argo_cd_since_1_8() -> None:
    degraded = _child_app("Degraded")
    assert resource_health(degraded) is None
    assert aggregate([resource_health(degraded), Health(H.Healthy)]) is H.Healthy


def test_child_application_reports_its_own_health_when_argocd_cm_restores_the_check() -> None:
    health = resource_health(_child_app("Degraded"), child_applications=True)
    assert health == Health(H.Degraded, "from the child")
    assert aggregate([health, Health(H.Healthy)]) is H.Degraded
    no_status = {**_child_app("x"), "status": {}}
    assert resource_health(no_status, child_applications=True) == Health(
        H.Progressing, "Waiting for the application to report its health"
    )


LUA = 'hs = {}\nhs.status = "Progressing"\nreturn hs\n'


@pytest.mark.parametrize(
    ("data", "configured"),
    [
        ({}, False),
        ({APPLICATION_HEALTH_KEY: LUA}, True),
        ({APPLICATION_HEALTH_KEY: "  "}, False),
        ({"resource.customizations.health.apps_Deployment": LUA}, False),
        (
            {"resource.customizations": "argoproj.io/Application:\n  health.lua: |\n    hs = {}\n"},
            True,
        ),
        ({"resource.customizations": "argoproj.io/Application:\n  ignoreDifferences: x\n"}, False),
        ({"resource.customizations": "argoproj.io/Application: [unclosed\n"}, False),
    ],
)
def test_argocd_cm_spellings_of_the_application_health_check(
    data: dict[str, str], configured: bool
) -> None:
    assert application_health_configured(data) is configured
