"""Sharding of the reconciled objects across controller replicas.

``gitsail controller --shards N --shard I`` (Argo CD's ``ARGOCD_CONTROLLER_REPLICAS`` and
shard index, or the ordinal of a StatefulSet pod's hostname) reconciles only the objects
whose shard is ``I``. ``--shard auto`` reconciles the shards whose Leases the replica
holds (``ShardClaimer``: dynamic membership; a dead replica's shards move to the others).
Every replica still watches and caches every object (webhooks read the cache; a shard
changing hands needs no new list), but the work queue's dispatch drops a key it does not
own before reading or writing anything, so a non-owned object is never reconciled,
compared, synced or written.

**The shard of an object** is ``fnv1a_32(f"{namespace}/{name}") mod N``: 32-bit FNV-1a
over the UTF-8 bytes of the object's namespace and name. It is stable across processes,
machines and Python versions (Python's own ``hash`` of a string is salted per process, so
two replicas would disagree), cheap, and spreads names well even when they differ only in
a suffix (``app-1``, ``app-2``). Argo CD's legacy algorithm hashes the destination
*cluster* with FNV-32a instead, which puts every app of one cluster on one replica: right
when the cost is the cluster's watches, wrong for gitsail's usual shape (many apps on one
cluster, where the cost is per app). Hashing by app spreads that load; its price is that
every replica watches the managed objects of every cluster its apps deploy to. ``mod N``
(not a hash ring) moves most apps when N changes, which is only at a restart with a new
``--shards``; nothing is moved while the count stays.

**Fencing.** A shard is reconciled only while its Lease, ``<lease-name>-shard-<I>``
(``gitsail-controller-shard-0``, ...), is held: always with ``--shard auto``; with a static
shard when leader election is on (the default), so two replicas started for the same shard
(a rolling update, a standby) never reconcile it at once, and a standby takes a dead
replica's shard within the lease duration. The elector stops a replica's work before its
Lease can expire (renew deadline < lease duration), and a replica that loses one shard's
Lease stops every reconcile in flight before going on with the shards it still holds. One
shard (``--shards 1``, the default) keeps the plain ``gitsail-controller`` Lease.

Every kind is sharded the same way, by its own object's namespace and name; Flux objects
that depend on each other across shards work as they do across controllers (through each
other's status).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable

from gitsail.controller.lease import LEASE_API_VERSION, LEASE_KIND, LeaderElector, lease_expired
from gitsail.kube import Kube, KubeError

__all__ = [
    "MAX_SHARDS",
    "ShardClaimer",
    "Sharding",
    "ShardingError",
    "fnv1a_32",
    "shard_from_hostname",
    "shard_of",
]

log = logging.getLogger(__name__)

MAX_SHARDS = 1024  # a sanity bound: one Lease per shard, one replica at least per shard

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_ORDINAL = re.compile(r"-(\d{1,4})$")


class ShardingError(ValueError):
    """A shard count or index that cannot be used."""


def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a of ``data``."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard (0 .. shards-1) of the object ``namespace/name``."""
    if shards <= 1:
        return 0
    return fnv1a_32(f"{namespace}/{name}".encode()) % shards


def shard_from_hostname(hostname: str) -> int | None:
    """The ordinal of a StatefulSet pod's hostname (``gitsail-controller-2`` -> 2)."""
    found = _ORDINAL.search(hostname)
    return int(found.group(1)) if found else None


class Sharding:
    """Which objects this replica reconciles: those of the shards it owns, out of ``shards``.

    Static (``--shard I``): it owns shard ``I``, always. Dynamic (``--shard auto``): it owns
    the shards whose Leases it holds (``ShardClaimer``), none at first."""

    def __init__(self, shards: int = 1, shard: int | None = 0) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ShardingError(f"--shards must be between 1 and {MAX_SHARDS}, not {shards}")
        if shard is not None and not 0 <= shard < shards:
            raise ShardingError(
                f"--shard must be between 0 and {shards - 1} (--shards {shards}), not {shard}"
            )
        if shard is None and shards == 1:
            raise ShardingError("--shard auto needs --shards 2 or more")
        self.shards = shards
        self.shard = shard  # None: dynamic
        self.owned: set[int] = set() if shard is None else {shard}

    @property
    def dynamic(self) -> bool:
        return self.shard is None

    def __repr__(self) -> str:
        return f"Sharding({sorted(self.owned)} of {self.shards})"

    def owns(self, namespace: str, name: str) -> bool:
        return self.shards == 1 or shard_of(namespace, name, self.shards) in self.owned

    def lease_name(self, base: str, shard: int | None = None) -> str:
        """The Lease that fences a shard (this replica's static shard by default); the plain
        ``base`` with one shard."""
        if self.shards == 1:
            return base
        return f"{base}-shard-{self.shard if shard is None else shard}"


ShardCallback = Callable[[int], Awaitable[None]]


class ShardClaimer:
    """Dynamic membership: hold free shard Leases, each through its own ``LeaderElector``.

    Every ``retry_period`` the claimer reads the shard Leases it does not hold. A shard is
    free when its Lease does not exist, has no holder or expired (its holder died or cannot
    reach the apiserver). A replica holding no shard claims one free shard at once (picked
    at random, so replicas starting together rarely race for the same one); a replica
    that already holds some waits ``patience`` seconds of the shard staying free, so a
    replica with nothing gets it first, then takes it too. So replicas spread over the
    shards as they start, and the shards of a dead replica move to the living ones once
    its Leases expire (lease duration + patience). A replica joining later takes only
    shards that are free: nobody gives one up for it (no rebalancing on join).

    ``on_gain(i)`` runs when shard ``i``'s Lease is acquired; ``on_loss(i)`` when it is lost
    or released, after which the replica must stop reconciling that shard's objects at
    once (the elector stops before the Lease can expire, so another replica can only take
    it over after that: the shard's Lease fences it).
    """

    def __init__(
        self,
        kube: Kube,
        sharding: Sharding,
        *,
        namespace: str,
        base_name: str,
        identity: str,
        on_gain: ShardCallback,
        on_loss: ShardCallback,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.sharding = sharding
        self.monotonic = monotonic
        self.namespace = namespace
        self.base_name = base_name
        self.identity = identity
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.patience = renew_deadline
        self.clock = clock
        self._electors: dict[int, tuple[LeaderElector, asyncio.Task[None], float]] = {}
        self._free_since: dict[int, float] = {}

    @property
    def held(self) -> set[int]:
        return {i for i, (elector, _, _) in self._electors.items() if elector.is_leader}

    async def run(self) -> None:
        """Claim and hold shards until cancelled; then release every Lease held."""
        try:
            while True:
                await self._round()
                await asyncio.sleep(self.retry_period)
        finally:
            self.sharding.owned.clear()  # shutting down: nothing to go on with
            tasks = [task for _, task, _ in self._electors.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._electors.clear()

    async def _round(self) -> None:
        now = self.monotonic()
        for i, (elector, task, started) in list(self._electors.items()):
            # An elector that lost the race (or its Lease) stops competing; the next
            # round decides again whether the shard is free.
            if task.done() or (not elector.is_leader and now - started > 2 * self.retry_period):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                del self._electors[i]
        free: list[int] = []
        for i in range(self.sharding.shards):
            if i in self._electors:
                continue
            try:
                lease = await self.kube.get(
                    LEASE_API_VERSION, LEASE_KIND, self.sharding.lease_name(self.base_name, i),
                    self.namespace,
                )  # fmt: skip
            except KubeError as exc:
                log.warning("cannot read the Lease of shard %d: %s", i, exc)
                continue
            spec = (lease or {}).get("spec") or {}
            if lease is None or not spec.get("holderIdentity") or lease_expired(spec, self.clock()):
                since = self._free_since.setdefault(i, now)
                if not self.held or now - since >= self.patience:
                    free.append(i)
            else:
                self._free_since.pop(i, None)
        if not free:
            return
        if not self.held:
            free = [random.choice(free)]  # noqa: S311 (spreading, not security)
        for i in free:
            self._free_since.pop(i, None)
            self._claim(i)

    def _claim(self, shard: int) -> None:
        elector = LeaderElector(
            self.kube,
            namespace=self.namespace,
            name=self.sharding.lease_name(self.base_name, shard),
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            clock=self.clock,
        )

        async def gained() -> None:
            await self.on_gain(shard)

        async def lost() -> None:
            await self.on_loss(shard)

        task = asyncio.create_task(
            elector.run(on_started_leading=gained, on_stopped_leading=lost),
            name=f"shard-{shard}-lease",
        )
        self._electors[shard] = (elector, task, self.monotonic())
