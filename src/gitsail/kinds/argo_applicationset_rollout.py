"""Progressive syncs (``strategy.type: RollingSync``): which Applications to sync now.

As Argo CD documents it: each generated Application belongs to the first step whose
``matchExpressions`` match its labels (one that matches no step is never synced by the
set). Generated Applications have their automated sync turned off; the set syncs them
itself, step by step: the Applications of a step that are out of sync are synced, at most
``maxUpdate`` at a time (a count, or a percentage of the step rounded down but at least
one; absent: all), and the next step starts only when every Application of the steps
before it is Synced and Healthy.

``plan`` is pure: Applications (with their status) and the previous
``status.applicationStatus`` in, the Applications to sync and the new
``applicationStatus`` out. Each Application's status there is ``Waiting`` (out of sync,
its turn not come), ``Pending`` (sync requested by this pass), ``Progressing`` (a sync
running, or synced and not yet Healthy) or ``Healthy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitsail.kinds.argo_applicationset import RolloutStep
from gitsail.model import Obj

__all__ = ["RolloutPlan", "plan", "sync_operation", "without_automated_sync"]

WAITING = "Waiting"
PENDING = "Pending"
PROGRESSING = "Progressing"
HEALTHY = "Healthy"


@dataclass(frozen=True)
class RolloutPlan:
    sync: tuple[str, ...]  # Applications to sync now, in order
    statuses: tuple[dict[str, Any], ...]  # status.applicationStatus
    done: bool  # every Application of every step Synced and Healthy


def _labels(app: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((app.get("metadata") or {}).get("labels") or {}).items()}


def _state(app: Obj) -> str:
    status = app.get("status") or {}
    phase = (status.get("operationState") or {}).get("phase")
    if app.get("operation") or phase in ("Running", "Terminating"):
        return PROGRESSING
    synced = (status.get("sync") or {}).get("status") == "Synced"
    healthy = (status.get("health") or {}).get("status") == "Healthy"
    if synced and healthy:
        return HEALTHY
    if synced:
        return PROGRESSING  # applied, not yet healthy
    return WAITING


def plan(
    steps: Sequence[RolloutStep],
    apps: Sequence[Obj],
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> RolloutPlan:
    before = {str(p.get("application")): p for p in previous if isinstance(p, Mapping)}
    by_step: list[list[Obj]] = [[] for _ in steps]
    for app in sorted(apps, key=lambda a: str((a.get("metadata") or {}).get("name"))):
        for i, step in enumerate(steps):
            if step.selector.matches(_labels(app)):
                by_step[i].append(app)
                break
    sync: list[str] = []
    statuses: list[dict[str, Any]] = []
    blocked = False
    for index, (step, members) in enumerate(zip(steps, by_step, strict=True)):
        states = {str(a["metadata"]["name"]): _state(a) for a in members}
        if not blocked:
            busy = sum(1 for s in states.values() if s == PROGRESSING)
            room = max(0, step.limit(len(members)) - busy)
            for name, state in states.items():
                if state == WAITING and room > 0:
                    states[name] = PENDING
                    sync.append(name)
                    room -= 1
        for name, state in states.items():
            message = {
                WAITING: "waiting for its step" if blocked else "waiting: maxUpdate reached",
                PENDING: "sync requested by the ApplicationSet",
                PROGRESSING: "syncing or not yet healthy",
                HEALTHY: "Synced and Healthy",
            }[state]
            old = before.get(name) or {}
            since = old.get("lastTransitionTime") if old.get("status") == state else None
            statuses.append(
                {
                    "application": name,
                    "status": state,
                    "message": message,
                    "step": str(index + 1),
                    "lastTransitionTime": since or now,
                }
            )
        if any(s != HEALTHY for s in states.values()):
            blocked = True
    return RolloutPlan(tuple(sync), tuple(statuses), not blocked)


def without_automated_sync(app: Obj) -> Obj:
    """The Application with ``spec.syncPolicy.automated`` removed (the set syncs it)."""
    policy = (app.get("spec") or {}).get("syncPolicy")
    if not isinstance(policy, dict) or "automated" not in policy:
        return app
    rest = {k: v for k, v in policy.items() if k != "automated"}
    spec = {k: v for k, v in app["spec"].items() if k != "syncPolicy"}
    if rest:
        spec["syncPolicy"] = rest
    return {**app, "spec": spec}


def sync_operation(app: Obj) -> dict[str, Any]:
    """The ``operation`` that asks the Argo CD path to sync ``app`` (as an automated sync;
    ``app`` as generated, so its template's ``automated.prune`` is honoured)."""
    spec = app.get("spec") or {}
    source = spec.get("source") or {}
    automated = (spec.get("syncPolicy") or {}).get("automated") or {}
    sync: dict[str, Any] = {"revision": str(source.get("targetRevision") or "HEAD")}
    if isinstance(automated, dict) and automated.get("prune"):
        sync["prune"] = True
    return {
        "operation": {
            "sync": sync,
            "initiatedBy": {"username": "applicationset-controller", "automated": True},
        }
    }
