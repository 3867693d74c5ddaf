from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from gitsail.secrets.keys import KEY_LABEL_SELECTOR, SealingKey, key_secret
from gitsail.secrets.keystore import KeyStore

from .conftest import NOW


class FakeSecrets:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lists = 0

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        assert label_selector == KEY_LABEL_SELECTOR
        self.lists += 1
        return copy.deepcopy([i for i in self.items if i["metadata"]["namespace"] == namespace])

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"]["name"] = obj["metadata"].pop("generateName") + str(len(self.items))
        obj["metadata"]["resourceVersion"] = "1"
        self.items.append(obj)
        return obj


def _store(fake: FakeSecrets, clock: list[float], now: list[Any]) -> KeyStore:
    return KeyStore(
        fake,
        namespace="keys",
        key_size=1024,
        clock=lambda: now[0],
        monotonic=lambda: clock[0],
        refresh_interval=10.0,
    )


async def test_a_key_is_generated_when_none_and_renewed_after_the_period() -> None:
    fake, clock, now = FakeSecrets(), [0.0], [NOW]
    store = _store(fake, clock, now)
    ring = await store.ensure()
    assert len(ring.keys) == 1
    assert fake.items[0]["metadata"]["name"] == "sealed-secrets-key0"
    now[0] = NOW + timedelta(days=29)
    assert len((await store.ensure()).keys) == 1
    now[0] = NOW + timedelta(days=30)
    ring = await store.ensure()
    assert len(ring.keys) == 2  # the old key stays, for decryption
    assert ring.newest is not None
    assert ring.newest.not_before == NOW + timedelta(days=30)


async def test_ring_is_cached_until_stale_and_picks_up_a_key_brought_by_the_user(
    key: SealingKey,
) -> None:
    fake, clock, now = FakeSecrets(), [0.0], [NOW]
    store = _store(fake, clock, now)
    assert (await store.ring()).keys == ()
    user_key = key_secret(key, namespace="keys")
    user_key["metadata"].update({"name": "byok", "resourceVersion": "5"})
    fake.items.append(user_key)
    assert (await store.ring()).keys == ()  # cached
    assert fake.lists == 1
    clock[0] = 10.0
    ring = await store.ring()
    assert [k.secret_name for k in ring.keys] == ["byok"]
    assert (await store.ring(fresh=True)).keys[0] is ring.keys[0]  # parsed once
