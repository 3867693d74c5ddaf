"""Objects as the apiserver returns them, shared by the diff tests."""

from __future__ import annotations

import copy
from typing import Any

GITSAIL_FIELDS: dict[str, Any] = {
    "f:metadata": {
        "f:annotations": {"f:argocd.argoproj.io/tracking-id": {}},
        "f:labels": {"f:app": {}},
    },
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    'k:{"name":"web"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":8080,"protocol":"TCP"}': {
                                ".": {},
                                "f:containerPort": {},
                            }
                        },
                    }
                }
            },
        },
    },
}


def desired_deployment() -> dict[str, Any]:
    """What a server-side apply dry run of the manifest returns: defaults filled in."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "8a1c7d2e-4b5f-4c3a-9d1e-0f2a3b4c5d6e",
            "resourceVersion": "48213",
            "generation": 3,
            "creationTimestamp": "2026-05-04T09:00:00Z",
            "labels": {"app": "web"},
            "annotations": {
                "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web",
                "deployment.kubernetes.io/revision": "2",
            },
            "managedFields": [
                {
                    "manager": "gitsail",
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "time": "2026-05-04T10:15:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": copy.deepcopy(GITSAIL_FIELDS),
                }
            ],
        },
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
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "ghcr.io/acme/web:1.4.2",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
        "status": {},
    }


def live_deployment() -> dict[str, Any]:
    """The same Deployment in the cluster: status, bookkeeping, several field managers."""
    live = desired_deployment()
    meta = live["metadata"]
    meta["resourceVersion"] = "48190"
    meta["generation"] = 2
    meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
        '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}\n'
    )
    meta["managedFields"] = [
        {
            "manager": "gitsail",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": "2026-05-04T09:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": copy.deepcopy(GITSAIL_FIELDS),
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": "2026-05-04T09:00:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}
                }
            },
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": "2026-05-04T10:03:07Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:status": {
                    "f:availableReplicas": {},
                    "f:observedGeneration": {},
                    "f:replicas": {},
                }
            },
            "subresource": "status",
        },
    ]
    live["status"] = {
        "observedGeneration": 2,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    return live


def scaled_by_kubectl(live: dict[str, Any], replicas: int) -> dict[str, Any]:
    """``live`` after ``kubectl scale --replicas=N``: the scale subresource takes spec.replicas."""
    live["spec"]["replicas"] = replicas
    entries = live["metadata"]["managedFields"]
    gitsail = next(e for e in entries if e["manager"] == "gitsail")
    del gitsail["fieldsV1"]["f:spec"]["f:replicas"]
    entries.append(
        {
            "manager": "kubectl",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": "2026-05-04T10:03:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
            "subresource": "scale",
        }
    )
    return live


def secret(data: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-credentials", "namespace": "shop"},
        "type": "Opaque",
    }
    if data is not None:
        obj["data"] = data
    obj.update(extra)
    return obj
