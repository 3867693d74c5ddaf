"""Generic health from status conventions (kstatus), for kinds without a built-in check.

Controllers that follow the Kubernetes API conventions publish their progress in
``status.observedGeneration`` and ``status.conditions``. The reading, in order:

1. ``status.observedGeneration < metadata.generation`` → Progressing: the controller has not
   acted on the latest spec yet, so whatever the conditions say is about an older spec.
2. ``Stalled=True`` → Degraded (the controller gave up until something changes).
3. ``Reconciling=True`` → Progressing.
4. ``Ready``: True → Healthy; Unknown → Progressing; False → Degraded, unless its reason
   says the work is still under way (``Progressing``, ``Pending``, ``Issuing``,
   ``DependencyNotReady`` ...) → Progressing.
5. ``Available`` is read the same way when there is no ``Ready``.
6. Conditions present but none of the above → Healthy (kstatus "Current").
7. No conditions at all → no health (``None``): the object is plain data, like a ConfigMap.

A set ``metadata.deletionTimestamp`` on an object with conditions is Progressing (terminating).
"""

from __future__ import annotations

import re
from typing import Any

from gitsail.health._fields import condition, conditions, describe, generation_lag, mapping
from gitsail.health.status import Health, HealthStatus
from gitsail.model import Obj

__all__ = ["kstatus_health"]

# Reasons of a Ready=False / Available=False condition that mean "not yet" rather than "failed".
_IN_PROGRESS = re.compile(
    r"progress|reconcil|pending|wait|creat|updat|install|upgrad|provision|initializ"
    r"|issuing|deploying|starting|scaling|rolling|dependencynotready|notreconciled",
    re.IGNORECASE,
)


def _readiness(cond: dict[str, Any], kind: str) -> Health:
    status = cond.get("status")
    detail = describe(cond)
    if status == "True":
        return Health(HealthStatus.Healthy, detail)
    if status == "False" and not _IN_PROGRESS.search(str(cond.get("reason") or "")):
        return Health(HealthStatus.Degraded, detail or f"{kind} is not ready")
    return Health(HealthStatus.Progressing, detail or f"{kind} is not ready yet")


def kstatus_health(obj: Obj) -> Health | None:
    """Health by kstatus conventions; ``None`` when the object publishes no conditions."""
    found = conditions(obj)
    lag = generation_lag(obj)
    if lag is not None:
        generation, observed = lag
        return Health(
            HealthStatus.Progressing,
            f"Waiting for the controller to observe generation {generation} (observed {observed})",
        )
    if not found:
        return None
    kind = str(obj.get("kind") or "resource")
    if mapping(obj, "metadata").get("deletionTimestamp"):
        return Health(HealthStatus.Progressing, f"{kind} is being deleted")
    stalled = condition(obj, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return Health(HealthStatus.Degraded, describe(stalled) or "Stalled")
    reconciling = condition(obj, "Reconciling")
    if reconciling is not None and reconciling.get("status") == "True":
        return Health(HealthStatus.Progressing, describe(reconciling) or "Reconciling")
    for type_ in ("Ready", "Available"):
        cond = condition(obj, type_)
        if cond is not None:
            return _readiness(cond, kind)
    return Health(HealthStatus.Healthy)
