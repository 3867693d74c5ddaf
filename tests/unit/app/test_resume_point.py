"""Which recorded operation state a sync resumes from (``app.engine._resume_point``)."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.app.engine import _resume_point
from gitsail.sync.plan import Phase

OPERATION = {"sync": {"revision": "main"}, "initiatedBy": {"username": "test"}}


def app_with(**state: Any) -> dict[str, Any]:
    recorded = {
        "operation": OPERATION,
        "phase": "Running",
        "message": "waiting for healthy state of apps/Deployment/web",
        "startedAt": "2026-12-02T04:00:00Z",
        "progress": {"syncPhase": "Sync", "wave": 1},
        "syncResult": {
            "revision": "0123abc",
            "resources": [
                {
                    "group": "batch",
                    "version": "v1",
                    "kind": "Job",
                    "namespace": "shop",
                    "name": "migrate-x1",
                    "status": "Synced",
                    "syncPhase": "PreSync",
                    "hookType": "PreSync",
                    "hookPhase": "Succeeded",
                    "uid": "u-1",
                }
            ],
        },
    }
    recorded.update(state)
    return {"operation": OPERATION, "status": {"operationState": recorded}}


def test_an_interrupted_run_of_the_same_operation_is_resumed_at_its_revision() -> None:
    resume = _resume_point(app_with(), dict(OPERATION))
    assert resume is not None
    assert (resume.progress.phase, resume.progress.wave) == (Phase.Sync, 1)
    assert (resume.revision, resume.started) == ("0123abc", "2026-12-02T04:00:00Z")
    (hook,) = resume.progress.results
    assert (hook.key.name, hook.hook_phase, hook.uid) == ("migrate-x1", "Succeeded", "u-1")


@pytest.mark.parametrize(
    ("state", "operation"),
    [
        ({"finishedAt": "2026-12-02T04:01:00Z"}, OPERATION),  # a failed attempt: retry anew
        ({"phase": "Succeeded"}, OPERATION),  # done: a new request starts over
        ({"progress": None}, OPERATION),  # no step recorded yet
        ({}, {**OPERATION, "sync": {"revision": "v2"}}),  # another operation
        ({}, None),  # the CLI's own sync, not a requested operation
    ],
)
def test_anything_else_starts_from_the_beginning(
    state: dict[str, Any], operation: dict[str, Any] | None
) -> None:
    assert _resume_point(app_with(**state), operation) is None
