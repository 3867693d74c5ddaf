from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gitsail.kinds.sealedsecret import SealedSecretReconciler
from gitsail.secrets.keys import KeyRing, SealingKey
from gitsail.secrets.sealedsecret import seal_secret
from gitsail.secrets.sealing import NO_KEY_MESSAGE

PLAIN = "very-secret-plaintext"


class FakeKube:
    """Secrets in memory; records every write."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, Any]] = []
        self.rv = 0

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        found = self.secrets.get((str(namespace), name))
        return copy.deepcopy(found) if found else None

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.secrets[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create", obj))
        return self._store(obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("replace", obj))
        return self._store(obj)

    async def merge_patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.writes.append(("status", args[3]))
        assert kwargs["subresource"] == "status"
        return {}


def _sealed(key: SealingKey, name: str = "db", **annotations: str) -> dict[str, Any]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "team", "labels": {"app": "db"}},
        "stringData": {"password": PLAIN},
    }
    sealed = seal_secret(key.public_key, secret)
    sealed["metadata"].update({"uid": "uid-1", "generation": 3})
    if annotations:
        sealed["spec"]["template"]["metadata"]["annotations"] = annotations
    return sealed


def _reconciler(
    kube: FakeKube, keys: list[SealingKey], events: list[tuple[str, str, str]]
) -> SealedSecretReconciler:
    calls: list[bool] = []

    async def ring(fresh: bool) -> KeyRing:
        calls.append(fresh)
        return KeyRing(tuple(keys))

    async def record(_obj: Any, type_: str, reason: str, message: str) -> None:
        events.append((type_, reason, message))

    return SealedSecretReconciler(
        kube, ring, events=record, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)
    )


async def test_creates_the_owned_secret_and_reports_synced_in_one_status_patch(
    key: SealingKey,
) -> None:
    kube, events = FakeKube(), []  # type: ignore[var-annotated]
    delay = await _reconciler(kube, [key], events).reconcile(_sealed(key))
    assert delay == 600.0
    assert [w[0] for w in kube.writes] == ["create", "status"]
    secret = kube.secrets[("team", "db")]
    assert base64.b64decode(secret["data"]["password"]).decode() == PLAIN
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    status = kube.writes[1][1]["status"]
    assert status["observedGeneration"] == 3
    assert status["conditions"][0]["type"] == "Synced"
    assert status["conditions"][0]["status"] == "True"
    assert events == [("Normal", "Unsealed", "SealedSecret unsealed successfully")]


async def test_an_unchanged_pass_writes_nothing(key: SealingKey) -> None:
    kube, events = FakeKube(), []  # type: ignore[var-annotated]
    reconciler = _reconciler(kube, [key], events)
    sealed = _sealed(key)
    await reconciler.reconcile(sealed)
    sealed["status"] = kube.writes[-1][1]["status"]
    kube.writes.clear()
    await reconciler.reconcile(sealed)
    assert kube.writes == []


async def test_no_key_fails_with_the_controllers_message_and_no_plaintext(
    key: SealingKey, other_key: SealingKey
) -> None:
    kube, events = FakeKube(), []  # type: ignore[var-annotated]
    delay = await _reconciler(kube, [other_key], events).reconcile(_sealed(key))
    assert delay is None
    assert kube.secrets == {}
    status = kube.writes[-1][1]["status"]
    assert status["conditions"][0]["status"] == "False"
    assert NO_KEY_MESSAGE in status["conditions"][0]["message"]
    assert events[0][:2] == ("Warning", "ErrUnsealFailed")
    assert PLAIN not in json.dumps([kube.writes, events])


async def test_unmanaged_existing_secret_is_refused_and_left_untouched(key: SealingKey) -> None:
    kube, events = FakeKube(), []  # type: ignore[var-annotated]
    mine = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "db", "namespace": "team"},
        "data": {"x": "eA=="},
    }
    await kube.create(mine)
    kube.writes.clear()
    await _reconciler(kube, [key], events).reconcile(_sealed(key))
    assert [w[0] for w in kube.writes] == ["status"]
    assert kube.secrets[("team", "db")]["data"] == {"x": "eA=="}
    assert (
        "is not managed by SealedSecret" in kube.writes[0][1]["status"]["conditions"][0]["message"]
    )
    assert events[0][:2] == ("Warning", "ErrUpdateFailed")


@pytest.mark.parametrize(
    ("annotations", "data", "owned"),
    [
        ({"sealedsecrets.bitnami.com/managed": "true"}, {"password"}, True),
        ({"sealedsecrets.bitnami.com/patch": "true"}, {"password", "x"}, False),
        (
            {
                "sealedsecrets.bitnami.com/patch": "true",
                "sealedsecrets.bitnami.com/managed": "true",
            },
            {"password", "x"},
            True,
        ),
    ],
)
async def test_managed_replaces_and_patch_merges(
    key: SealingKey, annotations: dict[str, str], data: set[str], owned: bool
) -> None:
    kube, events = FakeKube(), []  # type: ignore[var-annotated]
    existing = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "db",
            "namespace": "team",
            "annotations": annotations,
            "labels": {"keep": "me"},
        },
        "data": {"x": "eA=="},
    }
    await kube.create(existing)
    await _reconciler(kube, [key], events).reconcile(_sealed(key))
    secret = kube.secrets[("team", "db")]
    assert set(secret["data"]) == data
    assert bool(secret["metadata"].get("ownerReferences")) is owned
    if "sealedsecrets.bitnami.com/patch" in annotations:
        assert secret["metadata"]["labels"] == {"keep": "me", "app": "db"}
    else:
        assert secret["metadata"]["labels"] == {"app": "db"}


async def test_a_key_added_since_the_last_list_is_found_by_a_fresh_list(
    key: SealingKey, other_key: SealingKey
) -> None:
    kube = FakeKube()
    calls: list[bool] = []

    async def ring(fresh: bool) -> KeyRing:
        calls.append(fresh)
        return KeyRing((key,) if fresh else (other_key,))

    await SealedSecretReconciler(kube, ring).reconcile(_sealed(key))
    assert calls == [False, True]
    assert ("team", "db") in kube.secrets
