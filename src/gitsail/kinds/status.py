"""Status vocabulary shared by the kind adapters: conditions as kstatus reads them, and the
two ways a reconcile can fail.

Conditions (Flux kinds, and anything kstatus-shaped): ``type``, ``status`` (``"True"``,
``"False"``, ``"Unknown"``), ``reason`` (CamelCase), ``message``, ``observedGeneration``,
``lastTransitionTime``. ``put_condition`` replaces a condition of the same type and keeps its
``lastTransitionTime`` while its ``status`` does not change, so a status computed again from
the same facts is byte-for-byte the same (no write, no watch event, no new reconcile).

Errors say what happens next:

    ReconcileError(reason, message)
    ├── Transient   the world may change on its own (a server down, a dependency not ready):
    │               retry with backoff (``retry_after`` seconds when the cause knows better)
    └── Stalled     only a change of the spec or of the source can help (a bad path, a
                    render that fails, an undefined variable): wait for one, do not retry

The tree is defined in ``gitsail.errors`` (the bottom layer, so the delivery driver can raise
it too) and re-exported here. Both map to ``Ready=False`` with their ``reason``;
``Stalled`` also sets ``Stalled=True`` as kstatus expects, ``Transient`` keeps
``Reconciling=True``.

A condition's message never shows the userinfo of a URL (``https://user:password@host``
is written ``https://host``), whoever built the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gitsail.errors import ReconcileError, Stalled, Transient
from gitsail.source import redact_text

__all__ = [
    "Condition",
    "ReconcileError",
    "Stalled",
    "Transient",
    "failure_conditions",
    "put_condition",
    "ready_conditions",
]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    observed_generation: int | None = None

    def to_status(self, transition_time: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            # The last line of defence: no URL's userinfo (a password) reaches a status.
            "message": redact_text(self.message),
            "lastTransitionTime": transition_time,
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out


def put_condition(
    current: Sequence[dict[str, Any]], condition: Condition, now: str
) -> list[dict[str, Any]]:
    """``current`` with ``condition`` set (same place in the list when it was there)."""
    out: list[dict[str, Any]] = []
    placed = False
    for existing in current:
        if existing.get("type") != condition.type:
            out.append(existing)
            continue
        same_status = existing.get("status") == condition.status
        since = existing.get("lastTransitionTime") if same_status else None
        out.append(condition.to_status(str(since or now)))
        placed = True
    if not placed:
        out.append(condition.to_status(now))
    return out


def _without(current: Sequence[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [c for c in current if c.get("type") not in types]


def ready_conditions(
    current: Sequence[dict[str, Any]],
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
    extra: Sequence[Condition] = (),
) -> list[dict[str, Any]]:
    """Conditions of a successful reconcile: ``Ready=True``; Reconciling and Stalled gone."""
    conditions = _without(current, RECONCILING, STALLED)
    conditions = put_condition(
        conditions, Condition(READY, "True", reason, message, generation), now
    )
    for condition in extra:
        conditions = put_condition(conditions, condition, now)
    return conditions


def failure_conditions(
    current: Sequence[dict[str, Any]],
    error: ReconcileError,
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions of a failed reconcile, as kstatus reads them: ``Ready=False`` with the
    error's reason, plus ``Stalled=True`` (stalled) or ``Reconciling=True`` (transient)."""
    ready = Condition(READY, "False", error.reason, error.message, generation)
    if isinstance(error, Stalled):
        conditions = _without(current, RECONCILING)
        conditions = put_condition(conditions, ready, now)
        stalled = Condition(STALLED, "True", error.reason, error.message, generation)
        return put_condition(conditions, stalled, now)
    conditions = _without(current, STALLED)
    conditions = put_condition(conditions, ready, now)
    progressing = Condition(RECONCILING, "True", "ProgressingWithRetry", error.message, generation)
    return put_condition(conditions, progressing, now)
