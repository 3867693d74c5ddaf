"""The ExternalSecret pass on in-memory seams: Secret written, status as ESO writes it, a
failing store leaves the Secret alone, refreshes are skipped until due, rollouts on change."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gitsail.kinds.externalsecret import (
    ANNOTATION_DATA_HASH,
    ANNOTATION_RESTART,
    LABEL_MANAGED,
    ExternalSecretReconciler,
    ResolvedStore,
)
from gitsail.model import Obj
from gitsail.secrets.external.cache import FetchCache
from gitsail.secrets.external.provider import Find, ProviderError, Remote, RemoteNotFound

SECRET_VALUE = "s3cr3t-value-9f2"


class MemoryKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj else None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace
        ]

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)
        return obj

    async def replace(self, obj: Obj) -> Obj:
        return await self.create(obj)

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj:
        self.patches.append((kind, subresource or "", patch))
        obj = self.objects.setdefault(
            (kind, namespace or "", name),
            {"kind": kind, "metadata": {"name": name, "namespace": namespace}},
        )
        _merge(obj, patch)
        return obj


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class Store:
    kind = "fake"

    def __init__(self) -> None:
        self.values = {"db": json.dumps({"user": "app", "password": SECRET_VALUE}).encode()}
        self.down = False
        self.reads = 0

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        self.reads += 1
        if self.down:
            raise ProviderError(
                "cannot reach http://127.0.0.1:1: ConnectError", reason="ProviderDown"
            )
        if key not in self.values:
            raise RemoteNotFound(f"key {key!r} not found")
        return Remote(self.values[key], "")

    async def current_version(self, key: str) -> str | None:
        return None

    async def find(self, find: Find) -> dict[str, bytes]:
        return {}

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def es(**spec: Any) -> Obj:
    base = {
        "refreshInterval": "1m",
        "secretStoreRef": {"name": "store", "kind": "SecretStore"},
        "target": {"name": "app"},
        "data": [
            {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
            {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
        ],
    }
    base.update(spec)
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "app-es", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


@pytest.fixture
def world() -> tuple[
    MemoryKube, Store, Clock, ExternalSecretReconciler, list[tuple[str, str, str]]
]:
    kube, store, clock = MemoryKube(), Store(), Clock()
    events: list[tuple[str, str, str]] = []

    async def resolve(kind: str, name: str, namespace: str) -> ResolvedStore:
        return ResolvedStore(("SecretStore", namespace, name), store)

    async def record(obj: Obj, type_: str, reason: str, message: str) -> None:
        events.append((type_, reason, message))

    reconciler = ExternalSecretReconciler(
        kube, resolve, FetchCache(rate=0), events=record, clock=clock
    )
    return kube, store, clock, reconciler, events


def _status(kube: MemoryKube) -> dict[str, Any]:
    return kube.objects[("ExternalSecret", "ns", "app-es")]["status"]


async def _pass(kube: MemoryKube, reconciler: ExternalSecretReconciler, obj: Obj) -> float | None:
    live = kube.objects.get(("ExternalSecret", "ns", "app-es"))
    if live is not None:
        obj = {**obj, "status": live.get("status")}
    kube.objects[("ExternalSecret", "ns", "app-es")] = copy.deepcopy(obj)
    return await reconciler.reconcile(obj)


async def test_creates_the_owned_secret_and_writes_esos_status(world: Any) -> None:
    kube, _store, _clock, reconciler, events = world
    delay = await _pass(kube, reconciler, es())
    secret = kube.objects[("Secret", "ns", "app")]
    assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE
    assert base64.b64decode(secret["data"]["user"]) == b"app"
    assert secret["metadata"]["labels"][LABEL_MANAGED] == "true"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert ANNOTATION_DATA_HASH in secret["metadata"]["annotations"]
    status = _status(kube)
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"], ready["message"]) == (
        "Ready",
        "True",
        "SecretSynced",
        "secret synced",
    )
    assert status["refreshTime"] == "2026-12-02T12:00:00Z"
    assert status["syncedResourceVersion"].startswith("1-")
    assert status["binding"] == {"name": "app"}
    assert events == [("Normal", "Created", "Created Secret app")]
    assert delay is not None
    assert 50 <= delay <= 65


async def test_not_due_passes_read_nothing_and_due_ones_refresh(world: Any) -> None:
    kube, store, clock, reconciler, _events = world
    await _pass(kube, reconciler, es())
    reads = store.reads
    clock.now += timedelta(seconds=30)
    delay = await _pass(kube, reconciler, es())
    assert store.reads == reads
    assert delay == pytest.approx(30, abs=1)
    clock.now += timedelta(seconds=31)
    store.values["db"] = json.dumps({"user": "app", "password": "rotated-pw-77"}).encode()
    reconciler.cache._entries.clear()
    await _pass(kube, reconciler, es())
    assert (
        base64.b64decode(kube.objects[("Secret", "ns", "app")]["data"]["password"])
        == b"rotated-pw-77"
    )


async def test_a_store_outage_keeps_the_secret_and_says_why_without_values(world: Any) -> None:
    kube, store, _clock, reconciler, events = world
    await _pass(kube, reconciler, es())
    before = copy.deepcopy(kube.objects[("Secret", "ns", "app")])
    store.down = True
    obj = es()
    obj["metadata"]["annotations"] = {"force-sync": "1"}
    delay = await _pass(kube, reconciler, obj)
    assert kube.objects[("Secret", "ns", "app")] == before
    ready = _status(kube)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "SecretSyncedError")
    assert "could not get secret data from provider" in ready["message"]
    assert "ConnectError" in ready["message"]
    assert events[-1][:2] == ("Warning", "UpdateFailed")
    assert delay == 5.0
    blob = json.dumps([kube.patches, events])
    assert SECRET_VALUE not in blob
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in json.dumps(events)


async def test_template_renders_with_eso_functions(world: Any) -> None:
    kube, _store, _clock, reconciler, _events = world
    obj = es(
        target={
            "name": "app",
            "template": {
                "type": "kubernetes.io/basic-auth",
                "data": {
                    "url": "postgres://{{ .user }}:{{ .password | upper }}@db",
                    "enc": "{{ .user | b64enc }}",
                },
            },
        }
    )
    await _pass(kube, reconciler, obj)
    secret = kube.objects[("Secret", "ns", "app")]
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert (
        base64.b64decode(secret["data"]["url"]).decode()
        == f"postgres://app:{SECRET_VALUE.upper()}@db"
    )
    assert base64.b64decode(secret["data"]["enc"]) == b"YXBw"
    assert set(secret["data"]) == {"url", "enc"}


async def test_merge_policy_needs_an_existing_secret(world: Any) -> None:
    kube, _store, _clock, reconciler, _events = world
    await _pass(kube, reconciler, es(target={"name": "app", "creationPolicy": "Merge"}))
    ready = _status(kube)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "SecretMissing")
    assert ("Secret", "ns", "app") not in kube.objects


async def test_all_keys_missing_with_retain_keeps_the_secret(world: Any) -> None:
    kube, store, _clock, reconciler, _events = world
    await _pass(kube, reconciler, es())
    store.values.clear()
    obj = es()
    obj["metadata"]["annotations"] = {"force-sync": "2"}
    await _pass(kube, reconciler, obj)
    assert ("Secret", "ns", "app") in kube.objects
    ready = _status(kube)["conditions"][0]
    assert ready["message"] == "secret retained due to DeletionPolicy=Retain"


async def test_annotated_workloads_using_a_changed_secret_are_restarted(world: Any) -> None:
    kube, store, _clock, reconciler, events = world
    await _pass(kube, reconciler, es())
    for name, annotated, uses in (
        ("web", True, True),
        ("quiet", False, True),
        ("other", True, False),
    ):
        env = [
            {
                "name": "P",
                "valueFrom": {"secretKeyRef": {"name": "app" if uses else "x", "key": "password"}},
            }
        ]
        kube.objects[("Deployment", "ns", name)] = {
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": "ns",
                "annotations": {ANNOTATION_RESTART: "true"} if annotated else {},
            },
            "spec": {"template": {"spec": {"containers": [{"name": "c", "env": env}]}}},
        }
    store.values["db"] = json.dumps({"user": "app", "password": "changed-value-1"}).encode()
    obj = es()
    obj["metadata"]["annotations"] = {"force-sync": "3"}
    await _pass(kube, reconciler, obj)
    stamped = {
        name
        for (kind, _, name), o in kube.objects.items()
        if kind == "Deployment" and (o["spec"]["template"].get("metadata") or {}).get("annotations")
    }
    assert stamped == {"web"}
    assert ("Normal", "RolloutRestart", "restarted Deployment web: Secret data changed") in events


async def test_a_bad_spec_is_a_condition_naming_the_field(world: Any) -> None:
    kube, _store, _clock, reconciler, _events = world
    delay = await _pass(kube, reconciler, es(target={"name": "app", "creationPolicy": "Sometimes"}))
    assert delay is None
    ready = _status(kube)["conditions"][0]
    assert "spec.target.creationPolicy" in ready["message"]
