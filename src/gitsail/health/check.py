"""``resource_health``: the one entry point that picks the check for an object.

Order: no object → Missing; annotation ``argocd.argoproj.io/ignore-healthcheck: "true"`` →
no health; an Argo CD ``Application`` (a child in an app of apps) → no health unless the
operator turned child health on (``child_applications``, see
``application_health_configured``), as Argo CD does since 1.8; a built-in check for the
object's (group, kind) (``gitsail.health.builtin``); otherwise the kstatus reading
(``gitsail.health.kstatus``), which yields no health for objects that publish no conditions.
A check that trips over a malformed object reports Unknown with the error instead of
raising, so one odd object cannot stop an app's health assessment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from gitsail.health._fields import mapping
from gitsail.health.builtin import BUILTIN_CHECKS
from gitsail.health.kstatus import kstatus_health
from gitsail.health.status import Health, HealthStatus
from gitsail.model import Obj, split_api_version

__all__ = [
    "APPLICATION_HEALTH_KEY",
    "IGNORE_HEALTHCHECK",
    "application_health_configured",
    "resource_health",
]

IGNORE_HEALTHCHECK = "argocd.argoproj.io/ignore-healthcheck"
APPLICATION_HEALTH_KEY = "resource.customizations.health.argoproj.io_Application"
_LEGACY_CUSTOMIZATIONS = "resource.customizations"


def application_health_configured(argocd_cm_data: Mapping[str, Any]) -> bool:
    """Whether ``argocd-cm``'s data restores health for child Applications.

    Argo CD documents a Lua check that reports a child's own ``status.health`` (Progressing
    until it has one); gitsail runs no Lua, so any non-empty check configured for the kind
    turns on exactly that behaviour. Two spellings: the key
    ``resource.customizations.health.argoproj.io_Application``, or the older
    ``resource.customizations`` YAML block with ``argoproj.io/Application: {health.lua: …}``.
    """
    if str(argocd_cm_data.get(APPLICATION_HEALTH_KEY) or "").strip():
        return True
    legacy = argocd_cm_data.get(_LEGACY_CUSTOMIZATIONS)
    if not isinstance(legacy, str) or "argoproj.io/Application" not in legacy:
        return False
    try:
        parsed = yaml.safe_load(legacy)
    except yaml.YAMLError:
        return False
    entry = parsed.get("argoproj.io/Application") if isinstance(parsed, dict) else None
    return isinstance(entry, dict) and bool(str(entry.get("health.lua") or "").strip())


def resource_health(
    obj: Obj | None, *, honour_ignore_annotation: bool = True, child_applications: bool = False
) -> Health | None:
    """The health of one live object; ``None`` if the kind has no notion of health.

    ``obj`` is the live object (``None`` when it does not exist in the cluster → Missing).
    With ``honour_ignore_annotation`` (the default) an object annotated
    ``argocd.argoproj.io/ignore-healthcheck: "true"`` has no health, so it never affects
    its application's aggregate. An Argo CD ``Application`` has health only with
    ``child_applications`` (Argo CD's default since 1.8 is none).
    """
    if obj is None:
        return Health(HealthStatus.Missing, "Resource does not exist in the cluster")
    if (
        honour_ignore_annotation
        and mapping(obj, "metadata", "annotations").get(IGNORE_HEALTHCHECK) == "true"
    ):
        return None
    group, _ = split_api_version(str(obj.get("apiVersion") or ""))
    kind = str(obj.get("kind") or "")
    if (group, kind) == ("argoproj.io", "Application") and not child_applications:
        return None
    check = BUILTIN_CHECKS.get((group, kind))
    try:
        return check(obj) if check is not None else kstatus_health(obj)
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        return Health(HealthStatus.Unknown, f"health check failed: {err}")
