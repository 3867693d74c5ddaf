"""The controller's sealing keys, read from (and renewed into) their Secrets in the cluster.

``KeyStore.ring()`` lists the key Secrets (label ``sealedsecrets.bitnami.com/sealed-secrets-key
=active`` in the key namespace) at most once per ``refresh_interval`` and parses only Secrets
it has not seen at that ``resourceVersion``, so a reconcile costs no key parsing and a key
added by someone else (bring your own, or the other controller) is picked up within the
interval, or at once when a value does not decrypt (``ring(fresh=True)``).

``ensure()`` (the leader only) adds a key when none exists or the newest is older than the
renewal period, exactly as the Bitnami controller does; old keys stay for decryption.
Generating a 4096-bit key takes a second or more, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gitsail.secrets.keys import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_KEY_SIZE,
    DEFAULT_KEY_TTL,
    DEFAULT_RENEW_PERIOD,
    KEY_LABEL_SELECTOR,
    KeyRing,
    SealingKey,
    generate_key,
    key_secret,
    keyring_from_secrets,
    renewal_due,
)

__all__ = ["KeyClient", "KeyStore"]


class KeyClient(Protocol):
    """The part of ``gitsail.kube.Kube`` the store uses (a fake in unit tests)."""

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]: ...

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    """The active keys of one key namespace, cached; see the module docstring."""

    def __init__(
        self,
        kube: KeyClient,
        *,
        namespace: str,
        prefix: str = DEFAULT_KEY_PREFIX,
        renew_period: timedelta = DEFAULT_RENEW_PERIOD,
        key_size: int = DEFAULT_KEY_SIZE,
        key_ttl: timedelta = DEFAULT_KEY_TTL,
        common_name: str = "",
        cutoff: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        refresh_interval: float = 10.0,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.prefix = prefix
        self.renew_period = renew_period
        self.key_size = key_size
        self.key_ttl = key_ttl
        self.common_name = common_name
        self.cutoff = cutoff
        self.labels = dict(labels or {})
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.monotonic = monotonic
        self._ring = KeyRing(())
        self._read_at: float | None = None
        self._parsed: dict[tuple[str, str], SealingKey | None] = {}
        self.problems: list[str] = []
        self._lock = asyncio.Lock()

    async def ring(self, *, fresh: bool = False) -> KeyRing:
        """The active keys, listed again when stale (or ``fresh``)."""
        async with self._lock:
            now = self.monotonic()
            stale = self._read_at is None or now - self._read_at >= self.refresh_interval
            if fresh or stale:
                await self._reload()
                self._read_at = now
            return self._ring

    async def _reload(self) -> None:
        secrets = await self.kube.list(
            "v1", "Secret", self.namespace, label_selector=KEY_LABEL_SELECTOR
        )
        wanted = list(secrets)
        seen: dict[tuple[str, str], SealingKey | None] = {}
        fresh: list[dict[str, Any]] = []
        for secret in wanted:
            meta = secret.get("metadata") or {}
            ident = (str(meta.get("name") or ""), str(meta.get("resourceVersion") or ""))
            if ident in self._parsed:
                seen[ident] = self._parsed[ident]
            else:
                fresh.append(secret)
        ring, problems = keyring_from_secrets(fresh)
        for key in ring.keys:
            match = next(i for i in (_ident(s) for s in fresh) if i[0] == key.secret_name)
            seen[match] = key
        self._parsed = seen
        self.problems = problems
        keys = sorted(
            (k for k in seen.values() if k is not None),
            key=lambda k: (k.not_before, k.secret_name),
        )
        self._ring = KeyRing(tuple(keys))

    async def ensure(self) -> KeyRing:
        """The ring after adding a key if one is due (none yet, or the newest too old)."""
        ring = await self.ring(fresh=True)
        now = self.clock()
        if not renewal_due(ring, now=now, period=self.renew_period, cutoff=self.cutoff):
            return ring
        key = await asyncio.to_thread(
            generate_key,
            now=now,
            key_size=self.key_size,
            ttl=self.key_ttl,
            common_name=self.common_name,
        )
        await self.kube.create(
            key_secret(key, namespace=self.namespace, prefix=self.prefix, labels=self.labels)
        )
        return await self.ring(fresh=True)


def _ident(secret: Mapping[str, Any]) -> tuple[str, str]:
    meta = secret.get("metadata") or {}
    return str(meta.get("name") or ""), str(meta.get("resourceVersion") or "")
