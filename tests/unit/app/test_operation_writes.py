"""What a sync writes to the Application while it runs (in-memory control plane).

The start of an attempt (``phase: Running``, ``startedAt``, the operation, no finish
time) is written with the first checkpoint, where a restart would resume it, not on its
own: a sync with no hook and no wait, or one that fails before it starts, writes only its
final state, which says all of that too.
"""

from __future__ import annotations

from typing import Any, cast

from gitsail.app.engine import AppEngine
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube, KubeError
from gitsail.model import ResourceKey
from gitsail.source import GitSource
from gitsail.sync.plan import Phase
from gitsail.sync.progress import OperationProgress, ResourceResult
from tests.unit.app.test_engine import FailingGit, FakeKube, _application

OPERATION = {"sync": {"revision": "main"}, "initiatedBy": {"username": "t"}}
START = {
    "operation": OPERATION,
    "phase": "Running",
    "message": "sync started",
    "startedAt": "2026-12-02T07:00:00Z",
    "finishedAt": None,
    "syncResult": None,
    "retryCount": None,
    "progress": None,
}


class Control(FakeKube):
    """Records each status patch; ``fail`` refuses the next writes."""

    def __init__(self) -> None:
        super().__init__("control", [_application()])
        self.patches: list[dict[str, Any]] = []
        self.fail = 0

    async def merge_patch(
        self, _api: str, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        if self.fail:
            self.fail -= 1
            raise KubeError(503, "ServiceUnavailable", "try again")
        self.patches.append(patch)
        return await super().merge_patch(_api, kind, name, patch, namespace)

    def states(self) -> list[dict[str, Any]]:
        return [p["status"]["operationState"] for p in self.patches if "status" in p]


def progress(message: str) -> OperationProgress:
    hook = ResourceResult(
        ResourceKey("batch", "Job", "prod", "migrate-1"),
        "v1",
        "Synced",
        "hook started",
        sync_phase="PreSync",
        hook_type="PreSync",
        hook_phase="Running",
        uid="u-1",
    )
    return OperationProgress(Phase.PreSync, 0, message, (hook,))


async def test_the_first_checkpoint_carries_the_start_of_the_attempt() -> None:
    control = Control()
    engine = AppEngine(cast(Kube, control))
    app = App.from_application(_application())
    checkpoint = engine._checkpoint(app, "c0ffee", dict(START))

    await checkpoint(progress("waiting for completion of hook batch/Job/migrate-1"))
    await checkpoint(progress("PreSync hook batch/Job/migrate-1 succeeded"))

    first, second = control.states()
    assert first["operation"] == OPERATION
    assert first["startedAt"] == START["startedAt"]
    assert first["finishedAt"] is None  # a retry's earlier finish time is cleared
    assert first["phase"] == "Running"
    assert first["message"].startswith("waiting for completion of hook")
    assert first["progress"] == {"syncPhase": "PreSync", "wave": 0}
    assert first["syncResult"]["revision"] == "c0ffee"
    assert "startedAt" not in second
    assert "operation" not in second
    assert second["message"].startswith("PreSync hook")


async def test_a_checkpoint_that_failed_leaves_the_start_to_the_next_one() -> None:
    control = Control()
    engine = AppEngine(cast(Kube, control))
    checkpoint = engine._checkpoint(App.from_application(_application()), "c0ffee", dict(START))
    control.fail = 1
    await checkpoint(progress("waiting for completion of hook batch/Job/migrate-1"))  # logged
    await checkpoint(progress("PreSync hook batch/Job/migrate-1 succeeded"))
    (state,) = control.states()
    assert state["startedAt"] == START["startedAt"]
    assert state["message"].startswith("PreSync hook")


async def test_a_resumed_attempt_writes_no_new_start() -> None:
    control = Control()
    engine = AppEngine(cast(Kube, control))
    checkpoint = engine._checkpoint(App.from_application(_application()), "c0ffee")
    await checkpoint(progress("waiting for completion of hook batch/Job/migrate-1"))
    (state,) = control.states()
    assert "startedAt" not in state


async def test_a_sync_that_cannot_compare_writes_only_its_final_state() -> None:
    control = Control()
    engine = AppEngine(cast(Kube, control), git=cast(GitSource, FailingGit()))
    app = App.from_application(_application())

    outcome = await engine.sync(app, operation=OPERATION)

    assert outcome.result.phase == "Error"
    (state,) = control.states()  # no "Running" write before it
    assert state["phase"] == "Error"
    assert state["operation"] == OPERATION
    assert state["startedAt"]
    assert state["finishedAt"]
