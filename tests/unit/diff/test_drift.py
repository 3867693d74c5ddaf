from __future__ import annotations

from gitsail.diff import DriftAttribution, attribute_drift, diff_resource

from .objects import desired_deployment, live_deployment, scaled_by_kubectl


def test_kubectl_scale_is_named_as_the_cause_of_replica_drift() -> None:
    live = scaled_by_kubectl(live_deployment(), 5)
    diff = diff_resource(desired_deployment(), live)
    found = attribute_drift(live, diff.changed_paths)
    assert found == [
        DriftAttribution(
            path="/spec/replicas",
            manager="kubectl",
            operation="Update",
            time="2026-05-04T10:03:00Z",
            subresource="scale",
        )
    ]
    assert str(found[0]) == (
        "/spec/replicas changed by kubectl (Update scale) at 2026-05-04T10:03:00Z"
    )


def test_fields_only_gitsail_owns_are_not_attributed() -> None:
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "web:hotfix"
    assert attribute_drift(live, ["/spec/template/spec/containers/0/image"]) == []
    assert attribute_drift(live, ["/spec/template/spec/containers/0/image"], ours="other") != []


def test_kubectl_edit_of_a_container_image_is_found_by_list_key() -> None:
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"].insert(0, {"name": "debug", "image": "busybox"})
    live["spec"]["template"]["spec"]["containers"][1]["image"] = "web:hotfix"
    live["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-05-04T11:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}
                    }
                }
            },
        }
    )
    found = attribute_drift(live, ["/spec/template/spec/containers/1/image"])
    assert [(a.manager, a.time) for a in found] == [("kubectl-edit", "2026-05-04T11:00:00Z")]
    assert attribute_drift(live, ["/spec/template/spec/containers/0/image"]) == []


def test_shared_owners_are_listed_most_recent_first() -> None:
    live = live_deployment()
    for manager, time in (("helm", "2026-05-01T00:00:00Z"), ("operator", "2026-05-03T00:00:00Z")):
        live["metadata"]["managedFields"].append(
            {
                "manager": manager,
                "operation": "Apply",
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}},
            }
        )
    found = attribute_drift(live, ["/metadata/labels/app"])
    assert [a.manager for a in found] == ["operator", "helm"]


def test_compared_object_lines_up_indices_after_ignore_rules_removed_items() -> None:
    live = live_deployment()
    compared = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    live["spec"]["template"]["spec"]["containers"].insert(0, {"name": "istio-proxy"})
    live["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-set",
            "operation": "Update",
            "time": "2026-05-04T12:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}
                    }
                }
            },
        }
    )
    path = ["/spec/template/spec/containers/0/image"]
    assert attribute_drift(live, path) == []
    assert [a.manager for a in attribute_drift(live, path, compared=compared)] == ["kubectl-set"]


def test_paths_nobody_owns_yield_nothing() -> None:
    assert attribute_drift(live_deployment(), ["/spec/paused", "/metadata/labels/extra"]) == []
