"""What the delivery driver consumes: kind-neutral, frozen records.

A kind adapter (``gitsail.kinds.argo_application`` for Argo CD's ``Application``; the Flux
kinds next) reads its object once, applies its upstream's defaults and precedence, and hands
the engine a ``Delivery``::

    Delivery
    ├── identity      api_version, kind, namespace, name, generation
    ├── source        SourceRef: repository URL, revision, path; a chart for Helm repositories
    ├── render        render.RenderOptions (or ``render_problem``: why they cannot be built)
    ├── destination   server URL or cluster name (gitsail.app.targets) and namespace
    ├── policy        SyncPolicy: automated (prune, self-heal, allow-empty), Retry, options,
    │                 managed namespace metadata
    ├── owner         sync.ownership.Owner: how the objects are marked (Argo's tracking id)
    ├── inventory     sync.inventory.Inventory: what was applied last (prune candidates)
    ├── ignore_differences   diff rules, in the diff layer's own (Argo-compatible) form
    └── health        HealthSettings: which objects the aggregate health leaves out

The engine never reads the adapter's field names; ``origin`` (the object as read) is carried
only so the adapter's status writer can diff against it (see ``KindStatus`` in the engine).
A ``render_problem`` is kept instead of raised so a bad render option is reported where it
always was: as a comparison error after the fetch, with the revision it happened at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gitsail.model import Obj
from gitsail.render import RenderOptions
from gitsail.sync.inventory import Inventory
from gitsail.sync.ownership import Owner
from gitsail.sync.plan import SyncOptions

if TYPE_CHECKING:
    from gitsail.app.engine import Comparison

__all__ = [
    "IN_CLUSTER",
    "Automated",
    "Delivery",
    "HealthSettings",
    "KindAdapter",
    "Retry",
    "SourceRef",
    "SyncPolicy",
]

# The destination that means "the target cluster the engine was given".
IN_CLUSTER = "https://kubernetes.default.svc"
_LONGEST_WAIT = 365 * 24 * 3600.0  # an uncapped backoff still fits a timer


@dataclass(frozen=True)
class Retry:
    """How a failed sync is retried: ``limit`` attempts (0 none, <0 unlimited), waiting
    ``duration × factorⁿ`` seconds capped at ``max_duration`` (0: no cap)."""

    limit: int = 0
    duration: float = 5.0
    factor: float = 2.0
    max_duration: float = 180.0
    refresh: bool = False

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``: ``duration × factor^attempt``,
        capped at ``max_duration`` (no cap when it is 0, as in Argo CD)."""
        try:
            wait = self.duration * float(self.factor) ** max(attempt, 0)
        except OverflowError:
            wait = math.inf
        if self.max_duration > 0:
            wait = min(wait, self.max_duration)
        return float(min(wait, _LONGEST_WAIT))


@dataclass(frozen=True)
class Automated:
    """Sync without being asked: on a new revision, and on drift when ``self_heal``."""

    prune: bool = False
    self_heal: bool = False
    allow_empty: bool = False


@dataclass(frozen=True)
class SourceRef:
    """Where the manifests come from.

    ``revision`` is what to resolve (a branch, tag, commit; ``HEAD`` for the default branch;
    for a chart, a version or ``""`` for the latest). ``chart`` set means a Helm repository
    (``url`` is its index) instead of git. ``value_files`` are files outside ``path`` the
    render reads (Helm value files), so the fetch collects them into the artifact too.
    """

    url: str
    revision: str = "HEAD"
    path: str = "."
    chart: str = ""
    value_files: tuple[str, ...] = ()

    @property
    def is_helm_repo(self) -> bool:
        return bool(self.chart)


@dataclass(frozen=True)
class SyncPolicy:
    automated: Automated | None = None
    retry: Retry = Retry()
    options: SyncOptions = field(default_factory=SyncOptions)
    managed_namespace_metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class HealthSettings:
    """How the delivery's health is aggregated: objects annotated ``ignore_annotation:
    "true"`` do not count (Argo CD: ``argocd.argoproj.io/ignore-healthcheck``)."""

    ignore_annotation: str = ""


@dataclass(frozen=True)
class Delivery:
    """One object of some kind, read into the engine's terms (see the module docstring)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    generation: int
    source: SourceRef
    render: RenderOptions | None
    destination_server: str
    destination_namespace: str
    policy: SyncPolicy
    owner: Owner
    inventory: Inventory
    ignore_differences: tuple[dict[str, Any], ...] = ()
    health: HealthSettings = HealthSettings()
    history_limit: int = 10
    render_problem: str = ""  # set when ``render`` is None: why the options are unusable
    destination_name: str = ""  # a registered cluster's name, when ``destination_server`` is ""
    origin: Obj = field(default_factory=dict, repr=False, compare=False)
    adapter: KindAdapter | None = field(default=None, repr=False, compare=False)

    @property
    def display(self) -> str:
        """``namespace/name``, as messages name the object."""
        return f"{self.namespace}/{self.name}"


class KindAdapter(Protocol):
    """What the engine asks of the kind a ``Delivery`` was read from (the seam between the
    delivery driver and ``gitsail.kinds``, which sits above it and implements this)."""

    def read(self, obj: Obj) -> Delivery:
        """The object read again (after a sync, to record status on its latest version)."""
        ...

    def with_source(self, delivery: Delivery, source: Mapping[str, Any]) -> Delivery:
        """The same delivery with its source replaced, given in the kind's own terms
        (a rollback to a history entry)."""
        ...

    def source_status(self, delivery: Delivery) -> dict[str, Any]:
        """The source as the kind's status records it, without credentials."""
        ...

    def status_patch(
        self,
        delivery: Delivery,
        comparison: Comparison | None,
        *,
        error: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> Obj:
        """The kind's ``status`` after a comparison (``error``: why there is none)."""
        ...
