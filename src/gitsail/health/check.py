"""``resource_health``: the one entry point that picks the check for an object.

Order: no object → Missing; annotation ``argocd.argoproj.io/ignore-healthcheck: "true"`` →
no health; a built-in check for the object's (group, kind) (``gitsail.health.builtin``);
otherwise the kstatus reading (``gitsail.health.kstatus``), which yields no health for objects
that publish no conditions. A check that trips over a malformed object reports Unknown with
the error instead of raising, so one odd object cannot stop an app's health assessment.
"""

from __future__ import annotations

from gitsail.health._fields import mapping
from gitsail.health.builtin import BUILTIN_CHECKS
from gitsail.health.kstatus import kstatus_health
from gitsail.health.status import Health, HealthStatus
from gitsail.model import Obj, split_api_version

__all__ = ["IGNORE_HEALTHCHECK", "resource_health"]

IGNORE_HEALTHCHECK = "argocd.argoproj.io/ignore-healthcheck"


def resource_health(obj: Obj | None, *, honour_ignore_annotation: bool = True) -> Health | None:
    """The health of one live object; ``None`` if the kind has no notion of health.

    ``obj`` is the live object (``None`` when it does not exist in the cluster → Missing).
    With ``honour_ignore_annotation`` (the default) an object annotated
    ``argocd.argoproj.io/ignore-healthcheck: "true"`` has no health, so it never affects
    its application's aggregate.
    """
    if obj is None:
        return Health(HealthStatus.Missing, "Resource does not exist in the cluster")
    if (
        honour_ignore_annotation
        and mapping(obj, "metadata", "annotations").get(IGNORE_HEALTHCHECK) == "true"
    ):
        return None
    group, _ = split_api_version(str(obj.get("apiVersion") or ""))
    check = BUILTIN_CHECKS.get((group, str(obj.get("kind") or "")))
    try:
        return check(obj) if check is not None else kstatus_health(obj)
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        return Health(HealthStatus.Unknown, f"health check failed: {err}")
