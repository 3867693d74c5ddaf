"""Leader election against the real apiserver: Leases, optimistic writes, takeover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gitsail.controller.lease import LeaderElector, format_micro_time, parse_micro_time
from gitsail.dev import cluster as devcluster
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LEASE_DURATION = 2.0
RENEW_DEADLINE = 1.5
RETRY_PERIOD = 0.3


@pytest.fixture(scope="module")
async def api(cluster: devcluster.Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await kube.discover()
        yield kube


def elector(api: Kube, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(
        api,
        namespace=namespace,
        name="gitsail-controller",
        identity=identity,
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY_PERIOD,
    )


async def until(probe: Callable[[], bool], *, within: float, what: str) -> float:
    """Poll ``probe`` until true; return the seconds it took. Fails at the deadline."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def lease(api: Kube, namespace: str) -> Obj:
    obj = await api.get("coordination.k8s.io/v1", "Lease", "gitsail-controller", namespace)
    assert obj is not None
    return obj


async def test_two_electors_have_exactly_one_leader_and_hand_over_on_cancel(
    api: Kube, namespace: str
) -> None:
    a, b = elector(api, namespace, "replica-a"), elector(api, namespace, "replica-b")
    tasks = {a: asyncio.create_task(a.run()), b: asyncio.create_task(b.run())}
    try:
        await until(lambda: a.is_leader or b.is_leader, within=10, what="a first leader")
        # Several renewal periods: never two leaders, never none.
        deadline = time.monotonic() + 4 * RETRY_PERIOD + LEASE_DURATION
        while time.monotonic() < deadline:
            assert [a.is_leader, b.is_leader].count(True) == 1
            await asyncio.sleep(0.02)
        leader, follower = (a, b) if a.is_leader else (b, a)
        spec = (await lease(api, namespace))["spec"]
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseDurationSeconds"] == 2
        transitions = spec["leaseTransitions"]

        await stop(tasks[leader])
        assert not leader.is_leader
        took = await until(
            lambda: follower.is_leader,
            within=LEASE_DURATION + RETRY_PERIOD,
            what=f"{follower.identity} to take over",
        )
        spec = (await lease(api, namespace))["spec"]
        assert spec["holderIdentity"] == follower.identity
        assert spec["leaseTransitions"] == transitions + 1
        # The leader released the Lease, so the takeover did not wait for expiry.
        assert took < LEASE_DURATION
    finally:
        for task in tasks.values():
            await stop(task)
    assert "holderIdentity" not in (await lease(api, namespace))["spec"]


async def test_stale_lease_of_a_dead_holder_is_taken_over_after_expiry(
    api: Kube, namespace: str
) -> None:
    renewed = time.time()
    await api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "gitsail-controller", "namespace": namespace},
            "spec": {
                "holderIdentity": "dead-replica",
                "leaseDurationSeconds": 2,
                "acquireTime": format_micro_time(renewed - 60),
                "renewTime": format_micro_time(renewed),
                "leaseTransitions": 4,
            },
        }
    )
    candidate = elector(api, namespace, "replica-new")
    task = asyncio.create_task(candidate.run())
    try:
        # Not before the dead holder's lease expires...
        while time.time() < renewed + 2 - 0.2:
            assert not candidate.is_leader
            await asyncio.sleep(0.02)
        # ...and within one retry period after it does.
        await until(
            lambda: candidate.is_leader,
            within=0.2 + RETRY_PERIOD + 1.0,
            what="the takeover of the expired lease",
        )
        spec = (await lease(api, namespace))["spec"]
        assert spec["holderIdentity"] == "replica-new"
        assert spec["leaseTransitions"] == 5
        acquired = parse_micro_time(spec["acquireTime"])
        assert acquired is not None
        assert acquired > renewed + 2
    finally:
        await stop(task)


async def test_leader_keeps_renewing_the_lease(api: Kube, namespace: str) -> None:
    a = elector(api, namespace, "replica-a")
    task = asyncio.create_task(a.run())
    try:
        await asyncio.wait_for(a.wait_until_leader(), 10)
        first = parse_micro_time((await lease(api, namespace))["spec"]["renewTime"])
        assert first is not None

        async def renewed_later() -> bool:
            renew = parse_micro_time((await lease(api, namespace))["spec"]["renewTime"])
            return renew is not None and renew > first

        deadline = time.monotonic() + 3 * RETRY_PERIOD + 2
        while not await renewed_later():
            assert time.monotonic() < deadline, "the leader did not renew its lease"
            await asyncio.sleep(0.05)
        assert a.is_leader
    finally:
        await stop(task)
