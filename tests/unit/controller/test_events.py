from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any, cast

import pytest

from gitsail.controller.events import (
    AGGREGATION_WINDOW,
    MAX_PENDING,
    WRITERS,
    EventRecorder,
    Reason,
)
from gitsail.kube import Kube, NotFound, ServerError
from gitsail.model import Obj

APP: Obj = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "web", "namespace": "argocd", "uid": "u-1", "resourceVersion": "42"},
}


class FakeEvents:
    """In-memory core/v1 Events: create and merge-patch."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], Obj] = {}
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None  # set: creates wait for it
        self.creating = 0  # creates waiting at the gate now

    async def create(self, obj: Obj) -> Obj:
        if self.gate is not None:
            self.creating += 1
            try:
                await self.gate.wait()
            finally:
                self.creating -= 1
        if self.fail:
            raise self.fail
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.events[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    async def merge_patch(
        self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: str
    ) -> Obj:
        if self.fail:
            raise self.fail
        if (namespace, name) not in self.events:
            raise NotFound(404, "NotFound", f'events "{name}" not found')
        self.events[(namespace, name)].update(patch)
        return copy.deepcopy(self.events[(namespace, name)])


def recorder(fake: FakeEvents) -> EventRecorder:
    return EventRecorder(cast(Kube, fake), host="ctl-0")


async def test_event_names_the_object_and_the_reporter() -> None:
    fake = FakeEvents()
    await recorder(fake).record(APP, reason=Reason.OPERATION_STARTED, message="sync to abc")
    [event] = fake.events.values()
    assert event["metadata"]["namespace"] == "argocd"
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "name": "web",
        "namespace": "argocd",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert (event["reason"], event["message"], event["type"]) == (
        "OperationStarted",
        "sync to abc",
        "Normal",
    )
    assert event["source"] == {"component": "gitsail-controller", "host": "ctl-0"}
    assert event["reportingComponent"] == "gitsail-controller"
    assert event["reportingInstance"] == "ctl-0"
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_repeats_bump_count_and_differences_make_new_events() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    for _ in range(3):
        await rec.record(APP, reason="DriftDetected", message="3 resources differ")
    await rec.record(APP, reason="DriftDetected", message="4 resources differ")
    await rec.record(APP, reason="DriftDetected", message="4 resources differ", type="Warning")
    counts = sorted((e["message"], e["type"], e["count"]) for e in fake.events.values())
    assert counts == [
        ("3 resources differ", "Normal", 3),
        ("4 resources differ", "Normal", 1),
        ("4 resources differ", "Warning", 1),
    ]


async def test_repeat_after_the_window_creates_a_new_event() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    await rec.record(APP, reason="SelfHealed", message="healed")
    for written in rec._index.values():  # as if the window had passed
        written.last_seen -= AGGREGATION_WINDOW + 1
    await rec.record(APP, reason="SelfHealed", message="healed")
    assert [e["count"] for e in fake.events.values()] == [1, 1]


async def test_repeat_of_a_vanished_event_creates_it_again() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    await rec.record(APP, reason="SyncFailed", message="boom", type="Warning")
    fake.events.clear()  # expired by the apiserver's event TTL
    await rec.record(APP, reason="SyncFailed", message="boom", type="Warning")
    assert [e["count"] for e in fake.events.values()] == [1]


async def test_long_messages_are_truncated() -> None:
    fake = FakeEvents()
    await recorder(fake).record(APP, reason="SyncFailed", message="x" * 5000, type="Warning")
    [event] = fake.events.values()
    assert len(event["message"]) == 1024
    assert event["message"].endswith("...")


async def test_failures_are_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeEvents()
    fake.fail = ServerError(503, "ServiceUnavailable", "apiserver down")
    with caplog.at_level(logging.WARNING, logger="gitsail.controller.events"):
        await recorder(fake).record(APP, reason="SyncFailed", message="boom")
    assert "could not record event SyncFailed on Application argocd/web" in caplog.text


async def test_invalid_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Normal or Warning"):
        await recorder(FakeEvents()).record(APP, reason="X", message="m", type="Info")


async def test_cluster_scoped_objects_get_events_in_default() -> None:
    fake = FakeEvents()
    node = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "uid": "u"}}
    await recorder(fake).record(node, reason="ResourceDeleted", message="pruned")
    [(namespace, _)] = fake.events
    assert namespace == "default"
    assert "namespace" not in fake.events[(namespace, _)]["involvedObject"]


async def test_a_urls_password_never_reaches_an_event() -> None:
    fake = FakeEvents()
    message = "fetch of https://alice:hunter2@git.example/r.git failed"
    await recorder(fake).record(APP, reason="SyncFailed", message=message, type="Warning")
    [event] = fake.events.values()
    assert event["message"] == "fetch of https://git.example/r.git failed"


async def test_emit_returns_before_the_write_and_drain_waits_for_it() -> None:
    fake = FakeEvents()
    fake.gate = gate = asyncio.Event()
    rec = recorder(fake)
    rec.emit(APP, reason=Reason.OPERATION_STARTED, message="sync to abc")
    assert rec.in_flight == 1
    assert fake.events == {}
    gate.set()
    await rec.drain()
    assert rec.in_flight == 0
    assert [e["reason"] for e in fake.events.values()] == ["OperationStarted"]


async def test_emit_keeps_the_time_it_was_called() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    rec.emit(APP, reason="SyncFailed", message="boom", type="Warning")
    await rec.drain()
    (event,) = fake.events.values()
    assert event["firstTimestamp"] == event["lastTimestamp"]
    assert event["firstTimestamp"].endswith("Z")


async def test_emit_drops_events_beyond_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeEvents()
    fake.gate = gate = asyncio.Event()
    rec = recorder(fake)
    for i in range(MAX_PENDING + 3):
        rec.emit(APP, reason="DriftDetected", message=f"change {i}")
    assert rec.in_flight == MAX_PENDING
    assert rec.dropped == 3
    assert "dropped event DriftDetected" in caplog.text
    gate.set()
    await rec.drain()
    assert len(fake.events) == MAX_PENDING


async def test_emitted_events_are_sent_a_few_at_a_time() -> None:
    """A burst of Events does not open a connection each: WRITERS are sent at once."""
    fake = FakeEvents()
    fake.gate = gate = asyncio.Event()
    rec = recorder(fake)
    for i in range(3 * WRITERS):
        rec.emit(APP, reason="DriftDetected", message=f"change {i}")
    for _ in range(20):  # let every emitted task run as far as it can
        await asyncio.sleep(0)
    assert fake.creating == WRITERS
    assert rec.in_flight == 3 * WRITERS
    gate.set()
    await rec.drain()
    assert len(fake.events) == 3 * WRITERS


async def test_emit_refuses_an_invalid_type_at_once() -> None:
    with pytest.raises(ValueError, match="Normal or Warning"):
        recorder(FakeEvents()).emit(APP, reason="X", message="m", type="Info")
