"""Health records and how they aggregate.

A resource's health is one of six statuses plus a human message. An application's health is
the *worst* status among its immediate children, in Argo CD's order::

    Healthy < Suspended < Progressing < Missing < Degraded < Unknown

so one Degraded child makes the app Degraded, and an Unknown child (a check that could not
decide) outranks everything. Children without health (``None``: ConfigMaps, Secrets, RBAC ...)
are left out; an app with no health-bearing children is Healthy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Health", "HealthStatus", "aggregate", "is_worse"]


class HealthStatus(StrEnum):
    """The statuses Argo CD reports; the values are the exact strings it writes in status."""

    Healthy = "Healthy"
    Progressing = "Progressing"
    Degraded = "Degraded"
    Suspended = "Suspended"
    Missing = "Missing"
    Unknown = "Unknown"


@dataclass(frozen=True)
class Health:
    """The health of one resource: a status and why."""

    status: HealthStatus
    message: str = ""


# Rank in Argo CD's aggregation order: higher is worse.
_RANK: dict[HealthStatus, int] = {
    HealthStatus.Healthy: 0,
    HealthStatus.Suspended: 1,
    HealthStatus.Progressing: 2,
    HealthStatus.Missing: 3,
    HealthStatus.Degraded: 4,
    HealthStatus.Unknown: 5,
}


def is_worse(a: HealthStatus, b: HealthStatus) -> bool:
    """True if ``a`` is strictly worse than ``b`` in Argo CD's order."""
    return _RANK[a] > _RANK[b]


def aggregate(healths: Iterable[Health | None]) -> HealthStatus:
    """The worst status among ``healths``; ``None`` entries are ignored; empty → Healthy."""
    worst = HealthStatus.Healthy
    for health in healths:
        if health is not None and is_worse(health.status, worst):
            worst = health.status
    return worst
