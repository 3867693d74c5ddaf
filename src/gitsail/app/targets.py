"""The engine's seam for delivering to other clusters than the control plane's own.

A ``Delivery`` names its destination by server URL or by cluster name
(``destination_server`` / ``destination_name``). Given ``AppEngine.targets``, the engine asks
``targets.resolve(app)`` once per entry point (compare, sync, health, deletion) and runs the
pipeline on a view of itself bound to the ``Target`` it gets back: that cluster's client,
its watch-cache lookup and change tokens, and its own dry-run memo. Without ``targets``
every delivery goes to the engine's ``target`` client and only the in-cluster destination is
accepted.

``resolve`` raises ``TargetUnavailable`` when the destination is not registered (``transient``
False: a new cluster Secret wakes the app) or the cluster does not answer (``transient``
True: retried with backoff; the implementation answers at once while it knows the cluster is
down, so apps on a dead cluster never hold a worker for a timeout). Its message never
carries a credential.

A ``Target`` may restrict what is delivered (an Argo CD cluster Secret's ``namespaces`` and
``clusterResources``): ``allows(namespace)`` is checked on every prepared object before any
dry run, like a project's rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitsail.app.model import Delivery
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.sync.predictions import Predictions

__all__ = ["Target", "TargetUnavailable", "Targets"]

LiveLookup = Callable[[str, str, str, str | None], Awaitable[Obj | None]]


class TargetUnavailable(Exception):
    """The destination cannot be used now (see the module docstring)."""

    def __init__(self, message: str, *, transient: bool, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.reason = reason


@dataclass
class Target:
    """One destination cluster as the engine uses it."""

    name: str
    server: str
    kube: Kube
    live: LiveLookup | None = None
    changes: Any = None  # gitsail.sync.engine.Changes: wakes health waits on watch events
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    cluster_resources: bool = True
    predictions: Predictions = field(default_factory=Predictions, repr=False)
    settings: dict[str, tuple[float, Any]] = field(default_factory=dict, repr=False)

    def allows(self, namespace: str) -> str:
        """ "" when an object in ``namespace`` ("" for cluster-scoped) may be delivered here,
        else why not (Argo CD's words)."""
        if not self.namespaces:
            return ""
        if not namespace:
            if self.cluster_resources:
                return ""
            return (
                f"cluster level resources are not permitted on cluster {self.name!r} "
                "(its Secret lists namespaces without clusterResources)"
            )
        if namespace in self.namespaces:
            return ""
        return f"namespace {namespace!r} for cluster {self.server} is not managed"


class Targets(Protocol):
    async def resolve(self, app: Delivery) -> Target: ...
