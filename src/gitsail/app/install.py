"""What `gitsail install` applies: the CRDs gitsail serves, by family, then the controller.

Two families of CRDs: ``argocd`` (``argoproj.io`` Application, ApplicationSet, AppProject,
in ``gitsail/app/crds``) and ``flux`` (``source.toolkit.fluxcd.io`` GitRepository,
``kustomize.toolkit.fluxcd.io`` Kustomization, ``notification.toolkit.fluxcd.io`` Receiver,
in ``gitsail/kinds/crds``). The files are package data read from the ``gitsail`` package,
so this module imports nothing from the layer above it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from importlib import resources

import yaml

from gitsail.health import HealthStatus, resource_health
from gitsail.kube import Kube
from gitsail.model import Obj, ResourceKey

__all__ = [
    "CRD_FAMILIES",
    "DEFAULT_IMAGE",
    "controller_manifests",
    "crd_manifests",
    "install_controller",
    "install_crds",
]

# family -> folder of CRD files under the gitsail package
CRD_FAMILIES: dict[str, tuple[str, ...]] = {
    "argocd": ("app", "crds"),
    "flux": ("kinds", "crds"),
    "sealed-secrets": ("kinds", "crds", "sealed"),
    "external-secrets": ("kinds", "crds", "external"),
}


def crd_manifests(families: Iterable[str] = tuple(CRD_FAMILIES)) -> list[Obj]:
    """The CRDs of the given families (``argocd``, ``flux``), in a stable order."""
    docs = []
    for family in families:
        if family not in CRD_FAMILIES:
            raise ValueError(f"unknown CRD family {family!r} (use {', '.join(CRD_FAMILIES)})")
        folder = resources.files("gitsail").joinpath(*CRD_FAMILIES[family])
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                # A JSON round trip resolves the files' YAML anchors into plain copies.
                docs.append(json.loads(json.dumps(yaml.safe_load(entry.read_text()))))
    return docs


async def install_crds(
    kube: Kube, *, families: Iterable[str] = tuple(CRD_FAMILIES), wait_seconds: float = 60.0
) -> list[str]:
    """Apply the families' CRDs and wait until each is Established; returns their names."""
    names = []
    for crd in crd_manifests(families):
        await kube.apply(crd, field_manager="gitsail-install", force=True)
        names.append(str(crd["metadata"]["name"]))
    deadline = time.monotonic() + wait_seconds
    for name in names:
        while True:
            live = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            health = resource_health(live)
            if health is not None and health.status is HealthStatus.Healthy:  # Established
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} was not Established after {wait_seconds:.0f}s")
            await asyncio.sleep(0.2)
    await kube.discover(refresh=True)
    return names


DEFAULT_IMAGE = "ghcr.io/gitsail/gitsail:0.1.0"  # charts/gitsail values: image.*


# The names, labels and pod shape charts/gitsail renders too: with default values the chart's
# objects equal these (tests/integration/chart/ compares them), so each component is one
# function returning its objects, and `controller_manifests` lists the components.
CONTROLLER = "gitsail-controller"
RUN_AS = 65532  # the image's gitsail user (packaging/image/build.sh)


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "gitsail"}


def _pod_spec(service_account: str, container: Obj) -> Obj:
    """A PodSecurity ``restricted`` pod running the image's user, read-only root, with
    writable ``/tmp`` and home (git's and Helm's caches) on emptyDirs."""
    return {
        "serviceAccountName": service_account,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                **container,
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir)
                    {"name": "home", "mountPath": "/home/gitsail"},
                ],
                "securityContext": {
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "home", "emptyDir": {}}],
    }


def _controller_rbac(namespace: str) -> list[Obj]:
    """ServiceAccount and a ClusterRole on everything (an Application may deliver any kind,
    as with Argo CD's application controller; the chart's ``rbac.clusterAdmin: false``
    narrows it)."""
    labels = _labels(CONTROLLER)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": CONTROLLER, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CONTROLLER, "labels": labels},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CONTROLLER, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": CONTROLLER,
            },
            "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": namespace}],
        },
    ]


def _controller_workload(
    namespace: str, *, image: str, replicas: int, sealed_secrets: bool, external_secrets: bool
) -> list[Obj]:
    """Deployment and Service (``/healthz``, ``/metrics``, webhooks on port ``http``)."""
    labels = _labels(CONTROLLER)
    container: Obj = {
        "name": "controller",
        "image": image,
        "args": [
            "controller",
            "--namespace",
            namespace,
            "--listen",
            "0.0.0.0:8080",
            "--log-format",
            "json",
            *(["--sealed-secrets"] if sealed_secrets else []),
            *(["--external-secrets"] if external_secrets else []),
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": CONTROLLER, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": CONTROLLER}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": _pod_spec(CONTROLLER, container),
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": CONTROLLER, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"app.kubernetes.io/name": CONTROLLER},
                "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
            },
        },
    ]


def controller_manifests(
    namespace: str = "argocd",
    *,
    image: str = DEFAULT_IMAGE,
    replicas: int = 1,
    sealed_secrets: bool = False,
    external_secrets: bool = False,
) -> list[Obj]:
    """Namespace, RBAC, Deployment and Service of the controller (``gitsail install``).

    The controller needs to read and write any kind an Application may deliver, as Argo
    CD's application controller does, so its ClusterRole allows every verb on every
    resource; narrow it per cluster if your apps only manage some kinds. Replicas elect a
    leader through a Lease in ``namespace``. ``sealed_secrets`` runs it with
    ``--sealed-secrets`` (keys in ``kube-system``, as Bitnami's controller keeps them);
    ``external_secrets`` with ``--external-secrets``.
    """
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *_controller_rbac(namespace),
        *_controller_workload(
            namespace,
            image=image,
            replicas=replicas,
            sealed_secrets=sealed_secrets,
            external_secrets=external_secrets,
        ),
        *server_manifests(namespace, image=image),
    ]


def server_manifests(namespace: str = "argocd", *, image: str = DEFAULT_IMAGE) -> list[Obj]:
    """ServiceAccount, RBAC, Deployment and Service of ``gitsail server`` (API and web UI).

    Its ClusterRole is Argo CD's API server's: read everything (lists, trees, diffs), patch
    (dry-run applies of the live diff; the Applications' and Flux objects' requests) and
    delete, write Events (the audit trail) and Secrets (the signing key, the admin's first
    password). It reconciles nothing; the controller does.
    """
    name = "gitsail-server"
    labels = _labels(name)
    container = {
        "name": "server",
        "image": image,
        "args": ["server", "--in-cluster", "--namespace", namespace, "--listen", "0.0.0.0:8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": [
                {
                    "apiGroups": ["*"],
                    "resources": ["*"],
                    "verbs": ["get", "list", "watch", "patch", "delete"],
                },
                {"apiGroups": [""], "resources": ["events", "secrets"], "verbs": ["create"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": role_ref,
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": _pod_spec(name, container),
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    ]


async def install_controller(
    kube: Kube,
    namespace: str = "argocd",
    *,
    image: str = DEFAULT_IMAGE,
    replicas: int = 1,
    sealed_secrets: bool = False,
    vault_injector: bool = False,
    external_secrets: bool = False,
    shards: int = 1,
    shard_assignment: str = "auto",
) -> list[str]:
    """Apply the controller's manifests (after the CRDs); returns what was applied.
    ``shards`` > 1 runs the controller as a sharded StatefulSet (``install_shards``)."""
    applied = []
    manifests = controller_manifests(
        namespace,
        image=image,
        replicas=replicas,
        sealed_secrets=sealed_secrets,
        external_secrets=external_secrets,
    )
    if vault_injector:  # the controller also serves the Vault Agent injector webhook
        from gitsail.app.install_vault_injector import with_vault_injector

        manifests = with_vault_injector(manifests, namespace)
    from gitsail.app.install_shards import remove_other_workload, with_shards

    with_shards(manifests, shards, replicas=replicas, assignment=shard_assignment)
    for obj in manifests:
        await kube.apply(obj, field_manager="gitsail-install", force=True)
        applied.append(f"{obj['kind'].lower()} {ResourceKey.of(obj)}")
    if removed := await remove_other_workload(kube, namespace, shards):
        applied.append(removed)
    return applied
