from __future__ import annotations

from typing import Any

import pytest

from gitsail.diff import DiffError, IgnoreRule, apply_ignore_rules, parse_ignore_differences
from gitsail.model import ResourceKey

from .objects import desired_deployment, live_deployment


def test_argo_cd_entries_become_rules() -> None:
    rules = parse_ignore_differences(
        [
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]},
            {
                "kind": "ConfigMap",
                "name": "settings",
                "namespace": "shop",
                "jqPathExpressions": [".data.generated"],
            },
            {"group": "*", "kind": "*", "managedFieldsManagers": ["kube-controller-manager"]},
        ]
    )
    assert rules == (
        IgnoreRule(group="apps", kind="Deployment", json_pointers=("/spec/replicas",)),
        IgnoreRule(
            kind="ConfigMap",
            name="settings",
            namespace="shop",
            jq_path_expressions=(".data.generated",),
        ),
        IgnoreRule(group="*", kind="*", managed_fields_managers=("kube-controller-manager",)),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"group": "apps", "jsonPointers": ["/spec/replicas"]}, r"\[0\]: kind is required"),
        ({"kind": "Deployment", "jsonPointers": ["spec/replicas"]}, "must start with '/'"),
        ({"kind": "Deployment", "jsonPointers": "/spec/replicas"}, "list of strings"),
        ({"kind": "Deployment", "jqPathExpressions": [".spec.["]}, r"'\.spec\.\[' does not"),
        ({"kind": 3}, "kind must be a string"),
    ],
)
def test_bad_entries_raise_naming_the_entry(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(DiffError, match=message):
        parse_ignore_differences([entry])


def test_core_group_rule_does_not_match_other_groups() -> None:
    rule = IgnoreRule(kind="Service")
    assert rule.matches(ResourceKey("", "Service", "shop", "web"))
    assert not rule.matches(ResourceKey("serving.knative.dev", "Service", "shop", "web"))
    named = IgnoreRule(group="apps", kind="Deployment", name="web", namespace="shop")
    assert named.matches(ResourceKey("apps", "Deployment", "shop", "web"))
    assert not named.matches(ResourceKey("apps", "Deployment", "shop", "api"))
    assert not named.matches(ResourceKey("apps", "Deployment", "dev", "web"))


def test_json_pointers_remove_fields_and_tolerate_missing_ones() -> None:
    rule = IgnoreRule(
        group="apps",
        kind="Deployment",
        json_pointers=(
            "/spec/replicas",
            "/metadata/annotations/deployment.kubernetes.io~1revision",
            "/spec/not/there",
        ),
    )
    obj = desired_deployment()
    out = apply_ignore_rules(obj, [rule])
    assert "replicas" not in out["spec"]
    assert "deployment.kubernetes.io/revision" not in out["metadata"]["annotations"]
    assert obj["spec"]["replicas"] == 3  # input untouched


def test_rules_for_other_kinds_change_nothing() -> None:
    obj = desired_deployment()
    rule = IgnoreRule(kind="ConfigMap", json_pointers=("/spec",))
    assert apply_ignore_rules(obj, [rule]) == obj


def test_jq_expressions_remove_selected_items() -> None:
    obj = desired_deployment()
    obj["spec"]["template"]["spec"]["containers"].append({"name": "istio-proxy", "image": "x"})
    rule = IgnoreRule(
        group="apps",
        kind="Deployment",
        jq_path_expressions=(
            '.spec.template.spec.containers[] | select(.name == "istio-proxy")',
            ".spec.template.spec.initContainers[]",
        ),
    )
    out = apply_ignore_rules(obj, [rule])
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_managed_fields_managers_remove_what_they_own_per_live_managed_fields() -> None:
    live = live_deployment()
    rule = IgnoreRule(
        group="apps", kind="Deployment", managed_fields_managers=("kube-controller-manager",)
    )
    desired = desired_deployment()
    del desired["metadata"]["managedFields"]
    out_desired = apply_ignore_rules(desired, [rule], live=live)
    out_live = apply_ignore_rules(live, [rule])
    # kube-controller-manager owns the annotations map itself ("."): it goes whole.
    assert "annotations" not in out_desired["metadata"]
    assert "annotations" not in out_live["metadata"]
    # It owns only some status fields (no "." on status): those go, the rest stays.
    assert out_live["status"] == {
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    assert out_desired["spec"] == desired["spec"]
