"""Static sharding: the shard function, its bounds, and the dispatch that drops another
shard's keys."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import pytest

from gitsail.controller.sharding import (
    ShardClaimer,
    Sharding,
    ShardingError,
    fnv1a_32,
    shard_from_hostname,
    shard_of,
)
from gitsail.kube import Kube
from tests.unit.controller.test_lease import FakeClock, FakeLeases


def test_fnv1a_32_matches_the_published_test_vectors() -> None:
    # Vectors of the FNV reference (Landon Curt Noll's test suite).
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_every_app_has_exactly_one_owner_and_the_split_is_even() -> None:
    shards = 3
    replicas = [Sharding(shards, i) for i in range(shards)]
    names = [("argocd", f"app-{n}") for n in range(3000)]
    owners = Counter()
    for ns, name in names:
        owning = [r.shard for r in replicas if r.owns(ns, name)]
        assert owning == [shard_of(ns, name, shards)]
        owners[owning[0]] += 1
    assert set(owners) == {0, 1, 2}
    assert all(900 <= count <= 1100 for count in owners.values()), owners


def test_the_shard_depends_on_the_namespace_too() -> None:
    # The same name in other namespaces does not all land on one shard.
    assert len({shard_of(f"team-{n}", "web", 4) for n in range(40)}) == 4
    assert shard_of("team-a", "web", 1) == 0
    assert Sharding().owns("any", "thing")


@pytest.mark.parametrize(("shards", "shard"), [(0, 0), (2, 2), (2, -1), (5000, 0)])
def test_out_of_range_is_refused(shards: int, shard: int) -> None:
    with pytest.raises(ShardingError):
        Sharding(shards, shard)


def test_lease_names() -> None:
    assert Sharding().lease_name("gitsail-controller") == "gitsail-controller"
    assert Sharding(3, 2).lease_name("gitsail-controller") == "gitsail-controller-shard-2"


def test_statefulset_ordinals() -> None:
    assert shard_from_hostname("gitsail-application-controller-2") == 2
    assert shard_from_hostname("gitsail-controller-0") == 0
    assert shard_from_hostname("laptop") is None
    assert shard_from_hostname("pod-12345678") is None


# -- dynamic membership: which free shard Leases a replica claims -------------------------


async def _settle() -> None:
    for _ in range(20):  # let the electors' first attempts run (no timers involved)
        await asyncio.sleep(0)


def _claimer(
    leases: FakeLeases, identity: str, clock: FakeClock, mono: FakeClock, log: list[str]
) -> ShardClaimer:
    async def gain(shard: int) -> None:
        log.append(f"{identity}+{shard}")

    async def loss(shard: int) -> None:
        log.append(f"{identity}-{shard}")

    # Periods far longer than the test: no renewal or retry timer ever fires in it.
    return ShardClaimer(
        cast(Kube, leases),
        Sharding(2, None),
        namespace="ns",
        base_name="gitsail-controller",
        identity=identity,
        on_gain=gain,
        on_loss=loss,
        lease_duration=300,
        renew_deadline=200,
        retry_period=100,
        clock=clock,
        monotonic=mono,
    )


async def _stop(*claimers: ShardClaimer) -> None:
    for claimer in claimers:
        tasks = [task for _, task, _ in claimer._electors.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_replicas_spread_and_a_dead_replicas_shard_moves_after_patience() -> None:
    leases, clock, mono, log = FakeLeases(), FakeClock(), FakeClock(0.0), []
    first = _claimer(leases, "r1", clock, mono, log)
    second = _claimer(leases, "r2", clock, mono, log)
    try:
        await first._round()
        await _settle()
        assert len(first.held) == 1, "a replica with nothing claims one shard, not all"
        (mine,) = first.held
        await second._round()
        await _settle()
        assert second.held == {1 - mine}
        # The first replica sees no free shard: nothing more to claim.
        await first._round()
        assert first.held == {mine}

        # The second replica dies: its Lease is no longer renewed and expires.
        await _stop(second)
        leases.objects[("ns", f"gitsail-controller-shard-{1 - mine}")]["spec"]["holderIdentity"] = (
            "r2"  # a SIGKILL releases nothing
        )
        clock.now += 301
        await first._round()
        await _settle()
        assert first.held == {mine}, "a replica holding a shard waits before taking more"
        mono.now += 200  # the claimer's patience (the renew deadline)
        await first._round()
        await _settle()
        assert first.held == {0, 1}
        # (r2's loss is its stop in this test; a real SIGKILL would not even say so.)
        assert log == [f"r1+{mine}", f"r2+{1 - mine}", f"r2-{1 - mine}", f"r1+{1 - mine}"]
    finally:
        await _stop(first, second)
