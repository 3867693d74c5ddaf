"""Static sharding: the shard function, its bounds, and the dispatch that drops another
shard's keys."""

from __future__ import annotations

from collections import Counter

import pytest

from gitsail.controller.sharding import (
    Sharding,
    ShardingError,
    fnv1a_32,
    shard_from_hostname,
    shard_of,
)


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
