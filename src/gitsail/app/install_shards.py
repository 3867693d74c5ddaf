"""What ``gitsail install --shards N`` does to the controller's manifests.

With more than one shard the controller runs as a StatefulSet instead of a Deployment:
its pods are named ``gitsail-controller-0`` ... ``-<replicas-1>`` and started together
(``podManagementPolicy: Parallel``), each with ``GITSAIL_CONTROLLER_SHARDS=N`` and
``GITSAIL_CONTROLLER_SHARD``:

- ``auto`` (the default): every replica claims free shard Leases
  (``gitsail-controller-shard-<i>``); a dead replica's shards move to the living ones once
  its Leases expire (``docs/scale.md``). Replicas may be fewer than shards.
- ``ordinal``: the variable is not set, so each pod reconciles the shard of its ordinal
  (the hostname's suffix, as Argo CD's application controller StatefulSet does), fenced by
  that shard's Lease; a dead pod's apps wait until the StatefulSet restarts it. Replicas
  must equal shards.

The Deployment and the StatefulSet carry the same name; ``install_controller`` removes the
other workload (one the installer made: labelled ``app.kubernetes.io/part-of: gitsail``)
when the count changes between 1 and more, so two controllers never run side by side.
"""

from __future__ import annotations

import contextlib

from gitsail.kube import Kube, KubeError
from gitsail.model import Obj

__all__ = ["ASSIGNMENTS", "MAX_SHARDS", "check_shards", "remove_other_workload", "with_shards"]

CONTROLLER = "gitsail-controller"  # the Deployment ``controller_manifests`` names
MAX_SHARDS = 1024  # as ``gitsail controller --shards``
ASSIGNMENTS = ("auto", "ordinal")


def check_shards(shards: int, replicas: int, assignment: str) -> int:
    """The replica count to run (``replicas``, or ``shards`` when left at 1); ``ValueError``
    for a count out of range or replicas that cannot cover the shards."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"--shards must be between 1 and {MAX_SHARDS}, not {shards}")
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"--shard-assignment must be one of {', '.join(ASSIGNMENTS)}")
    if shards == 1:
        return replicas
    if replicas == 1:
        replicas = shards
    if replicas < 1:
        raise ValueError("--replicas must be at least 1")
    if assignment == "ordinal" and replicas != shards:
        raise ValueError(
            f"--shard-assignment ordinal needs one replica per shard ({shards}), not {replicas}"
        )
    return replicas


def with_shards(
    manifests: list[Obj], shards: int, *, replicas: int, assignment: str = "auto"
) -> list[Obj]:
    """``manifests`` (from ``controller_manifests``) with the controller's Deployment turned
    into a sharded StatefulSet when ``shards`` > 1, in place."""
    replicas = check_shards(shards, replicas, assignment)
    if shards == 1:
        return manifests
    for obj in manifests:
        if obj["kind"] != "Deployment" or obj["metadata"].get("name") != CONTROLLER:
            continue
        obj["kind"] = "StatefulSet"
        spec = obj["spec"]
        spec["replicas"] = replicas
        spec["serviceName"] = CONTROLLER
        spec["podManagementPolicy"] = "Parallel"  # start together: they spread as they claim
        spec.pop("strategy", None)
        container = spec["template"]["spec"]["containers"][0]
        env = container.setdefault("env", [])
        env.append({"name": "GITSAIL_CONTROLLER_SHARDS", "value": str(shards)})
        if assignment == "auto":
            env.append({"name": "GITSAIL_CONTROLLER_SHARD", "value": "auto"})
    return manifests


async def remove_other_workload(kube: Kube, namespace: str, shards: int) -> str | None:
    """Delete the controller workload of the other kind (the Deployment when sharded, the
    StatefulSet when not) if the installer made it; what was deleted, or None."""
    kind = "Deployment" if shards > 1 else "StatefulSet"
    live = await kube.get("apps/v1", kind, CONTROLLER, namespace)
    if live is None:
        return None
    labels = live.get("metadata", {}).get("labels") or {}
    if labels.get("app.kubernetes.io/part-of") != "gitsail":
        return None  # not ours: leave it
    with contextlib.suppress(KubeError):
        await kube.delete("apps/v1", kind, CONTROLLER, namespace, "Foreground")
    return f"{kind.lower()} {namespace}/{CONTROLLER} (deleted)"
