"""The cache byte budget: whole entries, least recently used first, never while in use."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from gitsail.model import Artifact
from gitsail.source._cache import CacheLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _entry(base: Path, name: str, size: int) -> Path:
    entry = base / name
    (entry / "sub").mkdir(parents=True)
    (entry / "sub" / "blob").write_bytes(bytes(size))
    return entry


def _artifact(root: Path) -> Artifact:
    return Artifact(url="u", revision="r", requested="r", root=root, path=".", digest="")


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_least_recently_used_entries_go_first_until_the_budget_fits(
    tmp_path: Path, clock: Clock
) -> None:
    charts = tmp_path / "charts"
    ledger = CacheLedger([charts], limit=2500, keep_recent=10, clock=clock)
    a = _entry(charts, "a", 1000)
    await ledger.record(a)
    clock.now += 100
    b = _entry(charts, "b", 1000)
    await ledger.record(b)
    clock.now += 100
    ledger.touch(a)  # a is now more recent than b
    clock.now += 100
    c = _entry(charts, "c", 1000)
    await ledger.record(c)
    assert not b.exists()
    assert a.exists()
    assert c.exists()
    assert ledger.total == 2000
    assert ledger.evictions == 1
    assert sorted(p.name for p in charts.iterdir()) == ["a", "c"]  # no hidden leftovers


async def test_entries_in_use_or_used_recently_are_never_evicted(
    tmp_path: Path, clock: Clock
) -> None:
    charts = tmp_path / "charts"
    ledger = CacheLedger([charts], limit=500, keep_recent=60, clock=clock)
    held = _entry(charts, "held", 1000)
    await ledger.record(held)
    leased = _entry(charts, "leased", 1000)
    await ledger.record(leased)
    artifact = _artifact(leased)
    ledger.lease(leased, artifact)
    clock.now += 120
    with ledger.hold(held):
        clock.now += 120
        recent = _entry(charts, "recent", 1000)
        await ledger.record(recent)  # over budget, but everything is in use or recent
        assert held.exists()
        assert leased.exists()
        assert recent.exists()
    clock.now += 120
    await ledger.evict()
    assert not held.exists()  # released: it can go now
    assert leased.exists()  # the Artifact is still alive
    del artifact
    gc.collect()
    await ledger.evict()
    assert not leased.exists()


async def test_last_use_survives_a_restart_through_the_entry_mtime(
    tmp_path: Path, clock: Clock
) -> None:
    repos, checkouts = tmp_path / "repos", tmp_path / "checkouts"
    old = _entry(repos, "old.git", 1000)
    newer = _entry(checkouts, "newer", 1000)
    os.utime(old, (clock.now - 5000, clock.now - 5000))
    os.utime(newer, (clock.now - 1000, clock.now - 1000))
    leftover = _entry(checkouts, ".dead.1234.evicted", 10)
    (checkouts / ".x.partial").mkdir()  # work in progress elsewhere: left alone

    ledger = CacheLedger([repos, checkouts], limit=2500, keep_recent=10, clock=clock)
    fresh = _entry(checkouts, "fresh", 1000)
    await ledger.record(fresh)
    assert not old.exists()
    assert newer.exists()
    assert fresh.exists()
    assert not leftover.exists()
    assert (checkouts / ".x.partial").exists()


async def test_read_only_entries_are_evicted_too(tmp_path: Path, clock: Clock) -> None:
    charts = tmp_path / "charts"
    ledger = CacheLedger([charts], limit=100, keep_recent=0, clock=clock)
    sealed = _entry(charts, "sealed", 1000)
    for path in (sealed / "sub" / "blob", sealed / "sub", sealed):
        path.chmod(0o555 if path.is_dir() else 0o444)
    await ledger.record(sealed)
    clock.now += 1
    await ledger.evict()
    assert not sealed.exists()
    assert list(charts.iterdir()) == []
