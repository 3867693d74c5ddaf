"""The start of a sync attempt (``operationState`` ``Running``) is written once.

A caller that sets the ``operation`` field itself (the controller's automated sync) writes
the start in the same patch; ``AppEngine.sync`` then does not write it again. Any other
state (none, another operation, a failed attempt waiting for its retry) gets its start
written before the sync begins, as Argo CD does. In-memory control plane.
"""

from __future__ import annotations

from typing import Any, cast

from gitsail.app.engine import AppEngine, operation_start
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube
from gitsail.source import GitSource
from tests.unit.app.test_engine import FailingGit, FakeKube, _application

OPERATION = {"sync": {"revision": "main"}, "initiatedBy": {"automated": True}}


class Control(FakeKube):
    def __init__(self, app: dict[str, Any]) -> None:
        super().__init__("control", [app])
        self.states: list[dict[str, Any]] = []

    async def merge_patch(
        self, _api: str, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        if "operationState" in (patch.get("status") or {}):
            self.states.append(patch["status"]["operationState"])
        return await super().merge_patch(_api, kind, name, patch, namespace)


def application(state: dict[str, Any] | None) -> dict[str, Any]:
    obj = {**_application(), "operation": OPERATION}
    if state is not None:
        obj["status"] = {**obj["status"], "operationState": state}
    return obj


async def sync(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    obj = application(state)
    control = Control(obj)
    engine = AppEngine(cast(Kube, control), git=cast(GitSource, FailingGit()))
    outcome = await engine.sync(App.from_application(obj), operation=OPERATION)
    assert outcome.result.phase == "Error"  # the fetch fails: the final state is written
    return control.states


def without_nones(state: dict[str, Any]) -> dict[str, Any]:
    """As the server stores a merge patch: keys set to None are absent."""
    return {k: v for k, v in state.items() if v is not None}


async def test_a_start_written_with_the_operation_is_not_written_again() -> None:
    started = without_nones(operation_start(OPERATION, "2026-12-02T07:00:00Z"))
    (final,) = await sync(started)
    assert final["phase"] == "Error"
    assert final["startedAt"] == "2026-12-02T07:00:00Z"  # the recorded start is kept


async def test_without_a_recorded_start_the_sync_writes_it_first() -> None:
    start, final = await sync(None)
    assert (start["phase"], start["message"]) == ("Running", "sync started")
    assert start["operation"] == OPERATION
    assert final["startedAt"] == start["startedAt"]


async def test_a_failed_attempt_waiting_for_its_retry_is_not_taken_for_a_start() -> None:
    failed = {
        **without_nones(operation_start(OPERATION, "2026-12-02T07:00:00Z")),
        "finishedAt": "2026-12-02T07:00:05Z",
        "retryCount": 1,
        "message": "failed. Retrying attempt #1",
    }
    start, _ = await sync(failed)
    assert start["finishedAt"] is None  # the new attempt clears the failed one's finish


async def test_the_start_of_another_operation_is_not_this_one() -> None:
    other = without_nones(operation_start({"sync": {"revision": "v1"}}, "2026-12-02T06:00:00Z"))
    start, _ = await sync(other)
    assert start["operation"] == OPERATION
