from __future__ import annotations

from gitsail.kinds.status import (
    Condition,
    Stalled,
    Transient,
    failure_conditions,
    put_condition,
    ready_conditions,
)


def test_a_condition_keeps_its_transition_time_while_its_status_stays() -> None:
    first = put_condition([], Condition("Ready", "True", "Succeeded", "applied a", 1), "t1")
    again = put_condition(first, Condition("Ready", "True", "Succeeded", "applied b", 2), "t2")
    assert again == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Succeeded",
            "message": "applied b",
            "lastTransitionTime": "t1",
            "observedGeneration": 2,
        }
    ]
    flipped = put_condition(again, Condition("Ready", "False", "BuildFailed", "x", 2), "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_a_stalled_failure_sets_stalled_and_drops_reconciling() -> None:
    start = failure_conditions([], Transient("ArtifactFailed", "git down"), generation=3, now="t")
    assert {c["type"]: c["status"] for c in start} == {"Ready": "False", "Reconciling": "True"}
    stalled = failure_conditions(start, Stalled("BuildFailed", "bad path"), generation=3, now="u")
    assert {c["type"]: c["reason"] for c in stalled} == {
        "Ready": "BuildFailed",
        "Stalled": "BuildFailed",
    }


def test_success_clears_the_failure_conditions() -> None:
    failed = failure_conditions([], Stalled("BuildFailed", "bad"), generation=1, now="t")
    ok = ready_conditions(
        failed, reason="ReconciliationSucceeded", message="ok", generation=2, now="u"
    )
    assert [(c["type"], c["status"]) for c in ok] == [("Ready", "True")]
    assert ok[0]["lastTransitionTime"] == "u"


def test_a_condition_message_never_shows_a_urls_password() -> None:
    error = Transient(
        "GitOperationFailed",
        "fetching https://alice:hunter2@git.example/r.git timed out; "
        "also ssh://git:hunter2@git.example/r.git",
    )
    conditions = failure_conditions([], error, generation=1, now="t")
    messages = [c["message"] for c in conditions]
    assert (
        messages
        == ["fetching https://git.example/r.git timed out; also ssh://git@git.example/r.git"] * 2
    )
