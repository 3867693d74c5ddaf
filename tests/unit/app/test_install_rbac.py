"""`gitsail install`'s RBAC choices and its CRD upgrade guard (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.app.install import UnsafeCRDChange, controller_manifests, dropped_stored_versions
from gitsail.app.install_rbac import controller_rbac, server_rbac, validate_namespaces


def _rules(objs: list[dict[str, Any]], kind: str = "ClusterRole") -> list[dict[str, Any]]:
    return [r for o in objs if o["kind"] == kind for r in o["rules"]]


def _cluster_bound(objs: list[dict[str, Any]]) -> set[str]:
    return {o["roleRef"]["name"] for o in objs if o["kind"] == "ClusterRoleBinding"}


def test_default_is_least_privilege_and_cluster_admin_an_opt_in() -> None:
    default = controller_rbac("gs")
    roles = {o["metadata"]["name"]: o for o in default if o["kind"] == "ClusterRole"}
    for name in _cluster_bound(default):
        for rule in roles[name]["rules"]:
            assert "*" not in rule.get("apiGroups", []), (name, rule)
            assert "*" not in rule.get("nonResourceURLs", []), (name, rule)
    deliver = [o for o in default if o["kind"] == "RoleBinding"]
    assert [o["metadata"]["namespace"] for o in deliver] == ["gs"]
    admin = controller_rbac("gs", cluster_admin=True)
    assert [o["kind"] for o in admin] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert admin[1]["rules"][0] == {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    # `gitsail install` without --cluster-admin: the same least privilege
    manifests = controller_manifests("gs")
    assert not any(
        "*" in r.get("apiGroups", []) and r.get("resources") == ["*"] and r["verbs"] == ["*"]
        for o in manifests
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] in _cluster_bound(manifests)
        for r in o["rules"]
    )


def test_delivery_namespaces_are_bound_once_each_and_validated() -> None:
    objs = controller_rbac("gs", deliver_namespaces=["web", "gs", "web", "db"])
    assert [o["metadata"]["namespace"] for o in objs if o["kind"] == "RoleBinding"] == [
        "gs",
        "web",
        "db",
    ]
    for bad in ("Web", "-x", "a" * 64, "a/b", ""):
        with pytest.raises(ValueError, match="not a namespace name"):
            validate_namespaces([bad])


def test_cluster_wide_delivery_names_namespaced_kinds_only() -> None:
    objs = controller_rbac("gs", deliver_cluster_wide=True)
    wide = next(o for o in objs if o["metadata"]["name"].endswith("-deliver-cluster-wide"))
    core = next(r for r in wide["rules"] if r["apiGroups"] == [""])
    assert "secrets" in core["resources"]
    for cluster_scoped in ("namespaces", "nodes", "persistentvolumes"):
        assert cluster_scoped not in core["resources"]
    assert all(r["apiGroups"] != ["*"] for r in wide["rules"])
    assert "gitsail-controller-deliver-cluster-wide" in _cluster_bound(objs)


def test_components_get_their_own_roles() -> None:
    objs = controller_rbac("gs", sealed_secrets=True, external_secrets=True, vault_injector="hook")
    names = _cluster_bound(objs)
    assert {
        "gitsail-controller-sealed-secrets",
        "gitsail-controller-external-secrets",
        "gitsail-controller-vault-injector",
    } <= names
    injector = next(o for o in objs if o["metadata"]["name"].endswith("-vault-injector"))
    named = [r for r in injector["rules"] if "resourceNames" in r]
    assert named == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["hook"],
            "verbs": ["get", "update", "patch", "delete"],
        }
    ]
    plain = _rules(controller_rbac("gs"))
    assert not [r for r in plain if "secrets" in r.get("resources", [])]


def test_the_server_reads_no_secret_outside_its_namespace() -> None:
    objs = server_rbac("gs")
    for rule in _rules(objs):
        if rule.get("resources") == ["secrets"]:
            continue  # the -control role, bound in gs only
        assert "secrets" not in rule.get("resources", []), rule
        assert "*" not in rule.get("apiGroups", []), rule
    bindings = [o for o in objs if o["kind"] == "RoleBinding"]
    assert [(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings] == [
        ("gs", "gitsail-server-control")
    ]
    diff = server_rbac("gs", deliver_namespaces=["web"], server_diff=True)
    assert {o["metadata"]["namespace"] for o in diff if o["kind"] == "RoleBinding"} == {"gs", "web"}


def _crd(*versions: tuple[str, bool]) -> dict[str, Any]:
    return {
        "metadata": {"name": "things.example.com"},
        "spec": {"versions": [{"name": n, "served": s} for n, s in versions]},
    }


def _live(*stored: str) -> dict[str, Any]:
    return {"metadata": {"name": "things.example.com"}, "status": {"storedVersions": list(stored)}}


def test_a_crd_may_not_stop_serving_a_stored_version() -> None:
    assert dropped_stored_versions(_crd(("v1", True)), None) == []
    assert dropped_stored_versions(_crd(("v1", True), ("v1beta1", True)), _live("v1beta1")) == []
    assert dropped_stored_versions(_crd(("v1", True)), _live("v1beta1", "v1")) == ["v1beta1"]
    assert dropped_stored_versions(_crd(("v1", True), ("v1beta1", False)), _live("v1beta1")) == [
        "v1beta1"
    ]
    assert dropped_stored_versions(_crd(("v1", True)), {"metadata": {}, "status": {}}) == []
    with pytest.raises(UnsafeCRDChange, match="not a list"):
        dropped_stored_versions(
            _crd(("v1", True)), {"metadata": {}, "status": {"storedVersions": "v1"}}
        )
