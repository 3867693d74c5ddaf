"""The dev cluster behaves like a real cluster for what GitOps observes."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from tests.integration.helpers import Kube, condition, eventually

pytestmark = pytest.mark.integration


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


def test_apiserver_reports_the_pinned_kubernetes_version(kube: Kube, cluster: Cluster) -> None:
    version = kube.get("/version")
    assert version is not None
    assert version["gitVersion"] == cluster.kubernetes_version
    assert version["gitVersion"].startswith("v1.")


def test_fake_nodes_are_ready(kube: Kube) -> None:
    nodes = kube.get("/api/v1/nodes")
    assert nodes is not None
    ready = [n for n in nodes["items"] if condition(n, "Ready") == "True"]
    assert len(ready) >= 2


def test_deployment_becomes_available_with_running_pods_on_fake_nodes(
    kube: Kube, namespace: str
) -> None:
    kube.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", _deployment("web", 2))

    def available() -> dict[str, Any] | None:
        d = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        ok = condition(d, "Available") == "True" and (d or {})["status"].get("readyReplicas") == 2
        return d if ok else None

    eventually(available, what="Deployment web Available with 2 ready replicas")
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dweb")
    assert pods is not None
    assert len(pods["items"]) == 2
    for pod in pods["items"]:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"].startswith("kwok-node-")


def test_job_completes(kube: Kube, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.invalid/job:1"}],
                }
            }
        },
    }
    kube.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    eventually(
        lambda: (
            condition(kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/once"), "Complete")
            == "True"
        ),
        what="Job once Complete",
    )


def test_namespace_deletion_finishes(kube: Kube) -> None:
    ns = kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": "doomed-"}},
    )["metadata"]["name"]
    kube.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}},
    )
    assert kube.delete(f"/api/v1/namespaces/{ns}") == 200
    eventually(lambda: kube.get(f"/api/v1/namespaces/{ns}") is None, what=f"namespace {ns} gone")


def test_garbage_collector_deletes_owned_objects(kube: Kube, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = kube.create(
        base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    kube.create(
        base,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dependent", "ownerReferences": [ref]},
        },
    )
    assert kube.delete(f"{base}/owner", propagationPolicy="Background") == 200
    eventually(lambda: kube.get(f"{base}/dependent") is None, what="dependent collected")


def test_custom_resource_definition_can_be_created_and_used(kube: Kube, namespace: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.gitsail.dev"},
        "spec": {
            "group": "test.gitsail.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    if kube.get(f"{crd_path}/widgets.test.gitsail.dev") is None:
        kube.create(crd_path, crd)
    eventually(
        lambda: (
            condition(kube.get(f"{crd_path}/widgets.test.gitsail.dev"), "Established") == "True"
        ),
        what="CRD Established",
    )
    path = f"/apis/test.gitsail.dev/v1/namespaces/{namespace}/widgets"
    created = eventually(
        lambda: _try_create(
            kube,
            path,
            {
                "apiVersion": "test.gitsail.dev/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": 3},
            },
        ),
        what="Widget created",
    )
    assert created["spec"]["size"] == 3
    got = kube.get(f"{path}/w")
    assert got is not None
    assert got["spec"]["size"] == 3


def _try_create(kube: Kube, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    # Right after Established, discovery can lag for a moment: 404 means "not yet".
    resp = kube.client.post(path, json=body)
    if resp.status_code == 404:
        return None
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def test_service_gets_a_cluster_ip_from_the_service_range(kube: Kube, namespace: str) -> None:
    svc = kube.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
        },
    )
    assert svc["spec"]["clusterIP"].startswith("10.96.")
