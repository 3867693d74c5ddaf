"""How far a sync operation got, as data: so a restarted controller resumes it.

gitops-engine runs a sync as resumable steps: every task's result is kept in the
operation state, and a sync started again reads those results back, skips what is done and
goes on from the first step that is not. gitsail does the same with two records:

- ``ResourceResult``: one row of Argo CD's ``operationState.syncResult.resources[]``
  (``group``, ``version``, ``kind``, ``namespace``, ``name``, ``status``, ``message``,
  ``syncPhase``, and for hooks ``hookType`` and ``hookPhase``). A hook row also carries the
  ``uid`` of the hook object it created (a gitsail field Argo CD ignores), so that a resumed
  operation waits on *that* object instead of starting the hook again.
- ``OperationProgress``: the step reached (``phase`` PreSync/Sync/PostSync/SyncFail and
  ``wave``), the message a person reads (Argo CD's "waiting for completion of hook
  batch/Job/x", "waiting for healthy state of apps/Deployment/web") and the results so far.
  It is written under ``operationState`` as Argo CD's ``phase: Running``, ``message`` and
  ``syncResult.resources``, plus ``progress: {syncPhase, wave}``.

What a resume does with it (``gitsail.sync.engine``): a task of a step *before* the recorded
one whose result says it completed is not run again (its result is carried over); a hook that
succeeded is never run again; a hook recorded ``Running`` whose object still has the
recorded uid is waited on, not recreated; the recorded step itself is applied again
(server-side apply is idempotent) and waited on. An operation recorded in ``SyncFail`` had
already failed: only its SyncFail hooks that have not succeeded run, and it ends Failed with
the recorded message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitsail.model import ResourceKey
from gitsail.sync.plan import Phase

__all__ = ["OperationProgress", "ResourceResult", "object_ref"]


@dataclass(frozen=True)
class ResourceResult:
    """One line of ``operationState.syncResult.resources`` (Argo CD's shape)."""

    key: ResourceKey
    version: str
    status: str  # Synced | SyncFailed | Pruned | PruneSkipped
    message: str = ""
    sync_phase: str = "Sync"
    hook_type: str = ""
    hook_phase: str = ""  # Running | Succeeded | Failed for hooks
    uid: str = ""  # hooks: the uid of the object this run created

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.key.group,
            "version": self.version,
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "status": self.status,
            "message": self.message,
            "syncPhase": self.sync_phase,
        }
        if self.hook_type:
            out["hookType"] = self.hook_type
            out["hookPhase"] = self.hook_phase
            if self.uid:
                out["uid"] = self.uid
        return out

    @classmethod
    def from_status(cls, row: Mapping[str, Any]) -> ResourceResult:
        """A row of ``syncResult.resources`` as written by ``to_status`` (or Argo CD)."""
        return cls(
            key=ResourceKey.from_ref(row),
            version=str(row.get("version") or ""),
            status=str(row.get("status") or ""),
            message=str(row.get("message") or ""),
            sync_phase=str(row.get("syncPhase") or "Sync"),
            hook_type=str(row.get("hookType") or ""),
            hook_phase=str(row.get("hookPhase") or ""),
            uid=str(row.get("uid") or ""),
        )

    @property
    def completed(self) -> bool:
        """The task is done and need not run again (a hook: it succeeded)."""
        if self.hook_type:
            return self.hook_phase == "Succeeded"
        return self.status in ("Synced", "Pruned", "PruneSkipped")


def object_ref(group: str, kind: str, name: str) -> str:
    """``apps/Deployment/web``, ``batch/Job/x``, ``/ConfigMap/c``: how Argo CD names an object
    in an operation message."""
    return f"{group}/{kind}/{name}"


def _rank(phase: Phase) -> int:
    return list(Phase).index(phase)


@dataclass(frozen=True)
class OperationProgress:
    """The step a running operation reached and what it did so far."""

    phase: Phase
    wave: int
    message: str
    results: tuple[ResourceResult, ...] = ()

    def before(self, phase: Phase, wave: int) -> bool:
        """Whether step (``phase``, ``wave``) comes before the one recorded here."""
        return (_rank(phase), wave) < (_rank(self.phase), self.wave)

    def to_state(self) -> dict[str, Any]:
        """The fields of ``operationState`` this progress sets (merge into the state; the
        caller adds ``syncResult.revision`` and ``source``)."""
        return {
            "phase": "Running",
            "message": self.message,
            "progress": {"syncPhase": str(self.phase), "wave": self.wave},
            "syncResult": {"resources": [r.to_status() for r in self.results]},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OperationProgress | None:
        """The progress recorded in an ``operationState``; None when it has none (an
        operation that has not started a step, or was written by someone else)."""
        progress = state.get("progress")
        if not isinstance(progress, Mapping):
            return None
        try:
            phase = Phase(str(progress.get("syncPhase")))
            wave = int(progress.get("wave", 0))
        except (ValueError, TypeError):
            return None
        rows = (state.get("syncResult") or {}).get("resources") or []
        results = tuple(ResourceResult.from_status(r) for r in rows if isinstance(r, Mapping))
        return cls(phase, wave, str(state.get("message") or ""), results)
