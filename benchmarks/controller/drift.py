"""drift → healed: a manual scale of a managed Deployment (a merge patch of ``scale`` by
another field manager) and the deletion of a managed ConfigMap.

``quiet_heal`` measures it on a controller with nothing else to do (one app per
repetition: a first heal, not the self-heal backoff); ``RolloutDrift`` measures the scale
drift while a fleet-wide rollout is under way (``converge --rollout-drift``): a heal must
not wait behind hundreds of apps being synced for the first time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.controller.common import _summary, log, wait_for
from gitsail.kube import Kube

HEAL_LIMIT = 60.0


async def _replicas_are(kube: Kube, name: str, ns: str, n: int) -> bool:
    d = await kube.get("apps/v1", "Deployment", name, ns)
    return d is not None and d["spec"].get("replicas") == n


async def scale_drift(kube: Kube, name: str, ns: str, *, limit: float = HEAL_LIMIT) -> float:
    """Scale Deployment ``ns/name`` from 0 to 2 as ``kubectl scale`` would; seconds until
    its ``spec.replicas`` is 0 again (TimeoutError after ``limit``)."""
    await kube.merge_patch(
        "apps/v1",
        "Deployment",
        name,
        {"spec": {"replicas": 2}},
        namespace=ns,
        subresource="scale",
        field_manager="kubectl-scale",
    )
    return await wait_for(
        lambda: _replicas_are(kube, name, ns, 0), limit=limit, what="scale healed"
    )


async def delete_drift(kube: Kube, name: str, ns: str, *, limit: float = HEAL_LIMIT) -> float:
    """Delete ConfigMap ``ns/name``; seconds until one with a new uid exists."""
    cm = await kube.get("v1", "ConfigMap", name, ns)
    assert cm is not None
    old = cm["metadata"]["uid"]
    await kube.delete("v1", "ConfigMap", name, ns, "Background")

    async def recreated() -> bool:
        obj = await kube.get("v1", "ConfigMap", name, ns)
        return obj is not None and obj["metadata"]["uid"] != old

    return await wait_for(recreated, limit=limit, what="deleted ConfigMap healed")


async def quiet_heal(kube: Kube, drift_apps: list[tuple[str, str]], reps: int) -> dict[str, Any]:
    """The first ``reps`` apps get a scale drift, the next ``reps`` a deleted ConfigMap."""

    def not_healed(phase: str, app_name: str, repetition: int) -> dict[str, Any]:
        return {"phase": phase, "app": app_name, "repetition": repetition}

    scale: list[float] = []
    failures: list[dict[str, Any]] = []
    for i, (app_name, ns) in enumerate(drift_apps[:reps]):
        try:
            scale.append(await scale_drift(kube, "web", ns))
        except TimeoutError:
            failures.append(not_healed("drift_scale", app_name, i + 1))
            log(f"drift scale NOT healed within {HEAL_LIMIT:g} s: {failures[-1]}")
    if scale:
        log(f"drift scale: median {statistics.median(scale):.2f}s over {len(scale)}")

    deleted: list[float] = []
    for i, (app_name, ns) in enumerate(drift_apps[reps:]):
        try:
            deleted.append(await delete_drift(kube, "drift-cm", ns))
        except TimeoutError:
            failures.append(not_healed("drift_delete", app_name, i + 1))
            log(f"drift delete NOT healed within {HEAL_LIMIT:g} s: {failures[-1]}")
    if deleted:
        log(f"drift delete: median {statistics.median(deleted):.2f}s over {len(deleted)}")
    return {
        "drift_scale": {
            "what": "merge patch of deployments/scale (manager kubectl-scale, 0 -> 2) -> "
            "spec.replicas back to 0",
            **(_summary(scale) if scale else {"n": 0}),
        },
        "failures": failures,
        "drift_delete": {
            "what": "DELETE of a managed ConfigMap -> a new one exists",
            **(_summary(deleted) if deleted else {"n": 0}),
        },
    }


@dataclass
class RolloutDrift:
    """Scale drift on apps synced *before* a rollout, one every ``every`` seconds while it
    runs: each app is drifted once (a first heal), in the namespaces ``namespaces``."""

    kube: Kube
    namespaces: list[str]
    every: float = 5.0
    deployment: str = "podinfo"
    heals: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, t0: float) -> None:
        """Drift until the namespaces run out or the task is cancelled (rollout over)."""
        for ns in self.namespaces:
            await asyncio.sleep(self.every)
            at = time.monotonic() - t0
            try:
                took: float | None = await scale_drift(self.kube, self.deployment, ns)
            except TimeoutError:
                took = None
            self.heals.append({"at_s": round(at, 1), "namespace": ns, "healed_s": took})
            log(f"rollout drift at {at:.0f}s in {ns}: healed in {took}")

    def summary(self) -> dict[str, Any]:
        healed = [h["healed_s"] for h in self.heals if h["healed_s"] is not None]
        return {
            "what": "scale drift (0 -> 2, manager kubectl-scale) on an app synced before the "
            f"rollout, one every {self.every:g} s while the rollout runs -> replicas 0 again",
            **(_summary(healed) if healed else {"n": 0}),
            "not_healed": sum(1 for h in self.heals if h["healed_s"] is None),
            "heals": self.heals,
        }
