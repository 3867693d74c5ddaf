from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from gitsail.controller.lease import (
    LeaderElector,
    format_micro_time,
    lease_expired,
    parse_micro_time,
)
from gitsail.kube import Conflict, Kube, ServerError
from gitsail.model import Obj

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeLeases:
    """An in-memory Lease store with the apiserver's optimistic concurrency."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.version = 0
        self.fail: Exception | None = None
        self.writes = 0

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        self._check()
        obj = self.objects.get((namespace or "", name))
        return copy.deepcopy(obj) if obj else None

    async def create(self, obj: Obj) -> Obj:
        self._check()
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            raise Conflict(409, "AlreadyExists", "already exists")
        return self._store(key, obj)

    async def replace(self, obj: Obj) -> Obj:
        self._check()
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        live = self.objects[key]
        if obj["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        return self._store(key, obj)

    def _store(self, key: tuple[str, str], obj: Obj) -> Obj:
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def spec(self, name: str = "ctl") -> dict[str, Any]:
        spec: dict[str, Any] = self.objects[("ns", name)]["spec"]
        return spec

    def put(self, spec: dict[str, Any], name: str = "ctl") -> None:
        self._store(
            ("ns", name),
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": spec,
            },
        )


def elector(
    leases: FakeLeases,
    identity: str = "a",
    clock: Callable[[], float] = time.time,
    *,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    retry_period: float = 2.0,
) -> LeaderElector:
    return LeaderElector(
        cast(Kube, leases),
        namespace="ns",
        name="ctl",
        identity=identity,
        clock=clock,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )


async def eventually(probe: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# -- time and expiry ----------------------------------------------------------------------


def test_micro_time_format_and_parse() -> None:
    assert format_micro_time(T0 + 0.25) == "2027-01-15T08:00:00.250000Z"
    assert parse_micro_time("2027-01-15T08:00:00.250000Z") == T0 + 0.25
    assert parse_micro_time("2027-01-15T08:00:00Z") == T0
    assert parse_micro_time("2027-01-15T09:00:00+01:00") == T0
    assert parse_micro_time("yesterday") is None
    assert parse_micro_time(None) is None


def test_lease_expires_after_renew_time_plus_duration() -> None:
    spec = {
        "holderIdentity": "b",
        "leaseDurationSeconds": 15,
        "renewTime": format_micro_time(T0),
    }
    assert not lease_expired(spec, T0 + 14.9)
    assert not lease_expired(spec, T0 + 15)
    assert lease_expired(spec, T0 + 15.001)


def test_lease_without_holder_or_times_is_free() -> None:
    assert lease_expired({"leaseDurationSeconds": 15, "renewTime": format_micro_time(T0)}, T0)
    assert lease_expired({"holderIdentity": "b", "leaseDurationSeconds": 15}, T0)
    assert lease_expired({"holderIdentity": "b", "renewTime": format_micro_time(T0)}, T0)


def test_elector_refuses_inconsistent_durations() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        elector(FakeLeases(), lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="identity"):
        elector(FakeLeases(), identity="")


# -- one acquire-or-renew step (fake clock) ------------------------------------------------


async def test_first_elector_creates_the_lease() -> None:
    leases, clock = FakeLeases(), FakeClock()
    assert (await elector(leases, clock=clock)._try_acquire_or_renew()).value == "held"
    assert leases.spec() == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2027-01-15T08:00:00.000000Z",
        "renewTime": "2027-01-15T08:00:00.000000Z",
        "leaseTransitions": 0,
    }


async def test_renewal_moves_renew_time_only() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a = elector(leases, clock=clock)
    await a._try_acquire_or_renew()
    clock.now += 2
    assert (await a._try_acquire_or_renew()).value == "held"
    spec = leases.spec()
    assert spec["renewTime"] == "2027-01-15T08:00:02.000000Z"
    assert spec["acquireTime"] == "2027-01-15T08:00:00.000000Z"
    assert spec["leaseTransitions"] == 0


async def test_valid_lease_of_another_holder_is_not_taken() -> None:
    leases, clock = FakeLeases(), FakeClock()
    await elector(leases, "a", clock)._try_acquire_or_renew()
    b = elector(leases, "b", clock)
    clock.now += 15
    assert (await b._try_acquire_or_renew()).value == "taken"
    assert leases.spec()["holderIdentity"] == "a"


async def test_expired_lease_is_taken_over_and_transitions_counted() -> None:
    leases, clock = FakeLeases(), FakeClock()
    await elector(leases, "a", clock)._try_acquire_or_renew()
    clock.now += 15.5
    assert (await elector(leases, "b", clock)._try_acquire_or_renew()).value == "held"
    spec = leases.spec()
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == spec["renewTime"] == "2027-01-15T08:00:15.500000Z"


async def test_stale_read_loses_with_conflict() -> None:
    leases, clock = FakeLeases(), FakeClock()
    await elector(leases, "a", clock)._try_acquire_or_renew()
    clock.now += 20
    b, c = elector(leases, "b", clock), elector(leases, "c", clock)
    original_get = leases.get

    async def get_then_let_c_win(*args: Any, **kwargs: Any) -> Obj | None:
        stale = await original_get(*args, **kwargs)
        leases.get = original_get  # type: ignore[method-assign]
        await c._try_acquire_or_renew()  # c writes between b's read and b's write
        return stale

    leases.get = get_then_let_c_win  # type: ignore[method-assign]
    assert (await b._attempt()).value == "failed"
    assert leases.spec()["holderIdentity"] == "c"


async def test_api_errors_are_a_failed_attempt() -> None:
    leases = FakeLeases()
    leases.fail = ServerError(503, "ServiceUnavailable", "down")
    assert (await elector(leases)._attempt()).value == "failed"


# -- the loop (tiny real durations) ---------------------------------------------------------


def fast(leases: FakeLeases) -> LeaderElector:
    return elector(leases, lease_duration=1.0, renew_deadline=0.2, retry_period=0.02)


def leading(e: LeaderElector) -> bool:
    return e.is_leader


def recorder(log: list[str], word: str) -> Callable[[], Awaitable[None]]:
    async def callback() -> None:
        log.append(word)

    return callback


async def test_run_leads_renews_and_releases_on_cancel() -> None:
    leases = FakeLeases()
    a = fast(leases)
    calls: list[str] = []
    task = asyncio.create_task(a.run(recorder(calls, "started"), recorder(calls, "stopped")))
    await asyncio.wait_for(a.wait_until_leader(), 2)
    assert leading(a)
    writes = leases.writes
    await eventually(lambda: leases.writes >= writes + 2)  # renewing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not leading(a)
    assert calls == ["started", "stopped"]
    assert "holderIdentity" not in leases.spec()


async def test_leader_steps_down_when_renewal_fails_past_the_deadline() -> None:
    leases = FakeLeases()
    a = fast(leases)
    calls: list[str] = []
    task = asyncio.create_task(a.run(recorder(calls, "started"), recorder(calls, "stopped")))
    await asyncio.wait_for(a.wait_until_leader(), 2)
    leases.fail = ServerError(503, "ServiceUnavailable", "apiserver down")
    await eventually(lambda: not a.is_leader)
    # Leadership is dropped first, then the stop callback runs: wait for it, not a tick.
    await eventually(lambda: calls == ["started", "stopped"])
    leases.fail = None  # the apiserver is back: the lease is still ours, lead again
    await asyncio.wait_for(a.wait_until_leader(), 2)
    await eventually(lambda: calls == ["started", "stopped", "started"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_leader_steps_down_when_another_holder_appears() -> None:
    leases = FakeLeases()
    a = fast(leases)
    task = asyncio.create_task(a.run())
    await asyncio.wait_for(a.wait_until_leader(), 2)
    spec = dict(leases.spec(), holderIdentity="intruder")
    leases.put(spec)
    await eventually(lambda: not a.is_leader)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases.spec()["holderIdentity"] == "intruder"  # not ours: not released


async def test_long_running_leader_work_is_cancelled_on_step_down() -> None:
    leases = FakeLeases()
    a = fast(leases)
    work_cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            work_cancelled.set()
            raise

    task = asyncio.create_task(a.run(work))
    await asyncio.wait_for(a.wait_until_leader(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert work_cancelled.is_set()
