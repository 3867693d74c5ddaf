"""Watch streams from the real apiserver."""

from __future__ import annotations

import asyncio

import pytest

from gitsail.kube import Kube, WatchEvent
from gitsail.model import Obj

pytestmark = pytest.mark.integration


def configmap(namespace: str, value: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "watched", "namespace": namespace},
        "data": {"v": value},
    }


async def test_watch_sees_added_modified_deleted(api: Kube, namespace: str) -> None:
    _, rv = await api.list_with_version("v1", "ConfigMap", namespace)
    seen: list[WatchEvent] = []

    async def collect() -> None:
        async for event in api.watch(
            "v1", "ConfigMap", namespace, resource_version=rv, timeout_seconds=60
        ):
            if event.type == "BOOKMARK" or event.object["metadata"]["name"] != "watched":
                continue
            seen.append(event)
            if event.type == "DELETED":
                return

    task = asyncio.create_task(collect())
    await api.apply(configmap(namespace, "1"))
    await api.apply(configmap(namespace, "2"))
    # Background: one DELETED (Foreground first MODIFIES it with a deletionTimestamp).
    await api.delete("v1", "ConfigMap", "watched", namespace, propagation="Background")
    await asyncio.wait_for(task, 30)
    assert [(e.type, e.object["data"]["v"]) for e in seen] == [
        ("ADDED", "1"),
        ("MODIFIED", "2"),
        ("DELETED", "2"),
    ]
    assert all(e.object["kind"] == "ConfigMap" for e in seen)
    assert int(seen[-1].resource_version) > int(rv)


async def test_watch_without_version_starts_with_existing_objects(
    api: Kube, namespace: str
) -> None:
    await api.apply(configmap(namespace, "1"))
    second = configmap(namespace, "2")
    second["metadata"]["name"] = "second"
    await api.apply(second)
    names = set()
    async for event in api.watch("v1", "ConfigMap", namespace, timeout_seconds=2):
        assert event.type in ("ADDED", "BOOKMARK")
        if event.type == "ADDED":
            names.add(event.object["metadata"]["name"])
        if {"watched", "second"} <= names:
            break
    assert {"watched", "second"} <= names


async def test_watch_with_label_selector_ends_at_its_timeout(api: Kube, namespace: str) -> None:
    events = [
        e
        async for e in api.watch(
            "v1", "ConfigMap", namespace, label_selector="app=none", timeout_seconds=1
        )
    ]
    assert [e for e in events if e.type != "BOOKMARK"] == []
