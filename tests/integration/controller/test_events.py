"""Events against the real apiserver: aggregation and lookup by the involved object."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gitsail.controller.events import EventRecorder, Reason
from gitsail.dev import cluster as devcluster
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def api(cluster: devcluster.Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await kube.discover()
        yield kube


async def involved(api: Kube, namespace: str, name: str) -> Obj:
    return await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"k": "v"},
        }
    )


async def events_about(api: Kube, namespace: str, name: str) -> list[Obj]:
    return await api.list("v1", "Event", namespace, field_selector=f"involvedObject.name={name}")


async def test_recording_twice_gives_one_event_with_count_two(api: Kube, namespace: str) -> None:
    obj = await involved(api, namespace, "guestbook")
    recorder = EventRecorder(api, host="gitsail-controller-0")
    for _ in range(2):
        await recorder.record(
            obj, reason=Reason.DRIFT_DETECTED, message="Deployment guestbook-ui differs"
        )
    [event] = await events_about(api, namespace, "guestbook")
    assert event["count"] == 2
    assert event["reason"] == "DriftDetected"
    assert event["type"] == "Normal"
    assert event["message"] == "Deployment guestbook-ui differs"
    assert event["source"]["component"] == "gitsail-controller"
    assert event["reportingComponent"] == "gitsail-controller"
    assert event["reportingInstance"] == "gitsail-controller-0"
    assert event["involvedObject"]["uid"] == obj["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "ConfigMap"
    assert event["lastTimestamp"] >= event["firstTimestamp"]


async def test_different_reasons_are_separate_events(api: Kube, namespace: str) -> None:
    obj = await involved(api, namespace, "shop")
    recorder = EventRecorder(api)
    await recorder.record(obj, reason=Reason.OPERATION_STARTED, message="sync started")
    await recorder.record(obj, reason=Reason.SYNC_FAILED, message="x" * 3000, type="Warning")
    found = await events_about(api, namespace, "shop")
    assert sorted((e["reason"], e["type"], e["count"]) for e in found) == [
        ("OperationStarted", "Normal", 1),
        ("SyncFailed", "Warning", 1),
    ]
    failed = next(e for e in found if e["reason"] == "SyncFailed")
    assert len(failed["message"]) == 1024


async def test_recording_in_a_missing_namespace_is_swallowed(api: Kube) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "namespace": "no-such-namespace-gitsail", "uid": "u"},
    }
    await EventRecorder(api).record(ghost, reason=Reason.RESOURCE_DELETED, message="pruned")
