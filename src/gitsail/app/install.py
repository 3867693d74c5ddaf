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
from collections.abc import Iterable, Sequence
from importlib import resources

import yaml

from gitsail.app.install_rbac import controller_rbac, server_rbac
from gitsail.app.install_vault_injector import WEBHOOK_NAME, with_vault_injector
from gitsail.health import HealthStatus, resource_health
from gitsail.kube import Kube
from gitsail.model import Obj, ResourceKey

__all__ = [
    "CRD_FAMILIES",
    "DEFAULT_IMAGE",
    "UnsafeCRDChange",
    "check_crd_upgrade",
    "controller_manifests",
    "crd_manifests",
    "dropped_stored_versions",
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


class UnsafeCRDChange(Exception):
    """Applying a CRD would stop serving a version objects may still be stored in."""


def dropped_stored_versions(crd: Obj, live: Obj | None) -> list[str]:
    """The versions in the live CRD's ``status.storedVersions`` that ``crd`` no longer
    serves (not listed, or ``served: false``): objects stored in them would be unreadable.
    A live CRD whose stored versions cannot be read refuses too (nothing to compare)."""
    if live is None:
        return []
    stored = (live.get("status") or {}).get("storedVersions")
    if stored is None:
        return []  # never stored anything yet (a CRD being created)
    if not isinstance(stored, list) or not all(isinstance(v, str) for v in stored):
        raise UnsafeCRDChange(
            f"CRD {live.get('metadata', {}).get('name')}: status.storedVersions is not a "
            "list of names; refusing to change it"
        )
    served = {
        str(v.get("name"))
        for v in (crd.get("spec") or {}).get("versions") or []
        if isinstance(v, dict) and v.get("served", False) is True
    }
    return [v for v in stored if v not in served]


async def check_crd_upgrade(kube: Kube, crds: Iterable[Obj]) -> None:
    """Refuse (before anything is applied) CRDs that stop serving a stored version."""
    problems = []
    for crd in crds:
        name = str(crd["metadata"]["name"])
        live = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        dropped = dropped_stored_versions(crd, live)
        if dropped:
            problems.append(
                f"CRD {name}: version(s) {', '.join(dropped)} are in status.storedVersions "
                "but would no longer be served"
            )
    if problems:
        raise UnsafeCRDChange(
            "; ".join(problems)
            + ". Objects stored in those versions would become unreadable: migrate them to "
            "a served version (read and write each object back), remove the version from "
            "status.storedVersions, then install again"
        )


async def install_crds(
    kube: Kube, *, families: Iterable[str] = tuple(CRD_FAMILIES), wait_seconds: float = 60.0
) -> list[str]:
    """Apply the families' CRDs and wait until each is Established; returns their names.

    Refuses (``UnsafeCRDChange``, nothing applied) when a CRD would stop serving a version
    listed in the live CRD's ``status.storedVersions``."""
    names = []
    crds = crd_manifests(families)
    await check_crd_upgrade(kube, crds)
    for crd in crds:
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
    vault_injector: bool = False,
    cluster_admin: bool = False,
    deliver_namespaces: Sequence[str] = (),
    deliver_cluster_wide: bool = False,
    server_diff: bool = False,
) -> list[Obj]:
    """Namespace, RBAC, Deployment and Service of the controller (``gitsail install``).

    Least privilege unless ``cluster_admin``: the controller delivers into its namespace and
    ``deliver_namespaces`` (or every namespace's built-in kinds with
    ``deliver_cluster_wide``); see ``gitsail.app.install_rbac``. Replicas elect a leader
    through a Lease in ``namespace``. ``sealed_secrets`` runs it with ``--sealed-secrets``
    (keys in ``kube-system``, as Bitnami's controller keeps them); ``external_secrets``
    with ``--external-secrets``; ``vault_injector`` adds the RBAC of the injector's webhook
    registration (``with_vault_injector`` turns the injector on in the Deployment).
    """
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *controller_rbac(
            namespace,
            cluster_admin=cluster_admin,
            deliver_namespaces=deliver_namespaces,
            deliver_cluster_wide=deliver_cluster_wide,
            sealed_secrets=sealed_secrets,
            external_secrets=external_secrets,
            vault_injector=WEBHOOK_NAME if vault_injector else "",
        ),
        *_controller_workload(
            namespace,
            image=image,
            replicas=replicas,
            sealed_secrets=sealed_secrets,
            external_secrets=external_secrets,
        ),
        *server_manifests(
            namespace, image=image, deliver_namespaces=deliver_namespaces, server_diff=server_diff
        ),
    ]


def server_manifests(
    namespace: str = "argocd",
    *,
    image: str = DEFAULT_IMAGE,
    deliver_namespaces: Sequence[str] = (),
    server_diff: bool = False,
) -> list[Obj]:
    """ServiceAccount, RBAC, Deployment and Service of ``gitsail server`` (API and web UI).

    Its RBAC (``gitsail.app.install_rbac.server_rbac``): read gitsail's kinds and the
    built-in kinds it shows, patch and delete Applications, write Events, and Secrets only
    in its control namespace. It reconciles nothing; the controller does.
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
    return [
        *server_rbac(namespace, deliver_namespaces=deliver_namespaces, server_diff=server_diff),
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
    cluster_admin: bool = False,
    deliver_namespaces: Sequence[str] = (),
    deliver_cluster_wide: bool = False,
    server_diff: bool = False,
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
        vault_injector=vault_injector,
        cluster_admin=cluster_admin,
        deliver_namespaces=deliver_namespaces,
        deliver_cluster_wide=deliver_cluster_wide,
        server_diff=server_diff,
    )
    if vault_injector:  # the controller also serves the Vault Agent injector webhook
        manifests = with_vault_injector(manifests, namespace)
    from gitsail.app.install_shards import remove_other_workload, with_shards

    with_shards(manifests, shards, replicas=replicas, assignment=shard_assignment)
    for obj in manifests:
        await kube.apply(obj, field_manager="gitsail-install", force=True)
        applied.append(f"{obj['kind'].lower()} {ResourceKey.of(obj)}")
    if removed := await remove_other_workload(kube, namespace, shards):
        applied.append(removed)
    return applied
