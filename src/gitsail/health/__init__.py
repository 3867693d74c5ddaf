"""Resource health and its aggregation per application (pure functions, no I/O).

``resource_health(obj)`` reads one live object and returns a ``Health`` (status + message)
or ``None`` for kinds that have no health (ConfigMap, Secret, RBAC ...). Core kinds have
built-in checks with Argo CD's semantics (``workloads``, ``builtin``); every other kind is
read by kstatus conventions (``kstatus``). ``aggregate`` folds children into an app status,
worst first: Healthy < Suspended < Progressing < Missing < Degraded < Unknown. A child
Argo CD Application counts only when ``argocd-cm`` restores its health check
(``application_health_configured``), as in Argo CD since 1.8.
"""

from gitsail.health.check import (
    APPLICATION_HEALTH_KEY,
    IGNORE_HEALTHCHECK,
    application_health_configured,
    resource_health,
)
from gitsail.health.status import Health, HealthStatus, aggregate, is_worse

__all__ = [
    "APPLICATION_HEALTH_KEY",
    "IGNORE_HEALTHCHECK",
    "Health",
    "HealthStatus",
    "aggregate",
    "application_health_configured",
    "is_worse",
    "resource_health",
]
