"""Client-side flow control: the token bucket, its urgent lane, 429 pauses — on a fake clock."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gitsail.kube import FlowControl, Kube, KubeConfig, RetryPolicy, urgent
from gitsail.kube.flow import NORMAL, URGENT, RequestStats, current_lane


class FakeTime:
    """A clock that moves only when a waiter sleeps: ``sleep(s)`` advances it by ``s``."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_a_burst_passes_at_once_then_requests_wait_for_the_rate() -> None:
    t = FakeTime()
    flow = FlowControl(10, 3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await flow.acquire()
    assert t.now == 1000.0  # the burst cost no time
    await flow.acquire()
    assert t.now == pytest.approx(1000.1)  # one token at 10/s
    await asyncio.gather(*(flow.acquire() for _ in range(5)))
    assert t.now == pytest.approx(1000.6)
    assert flow.throttled == 6


async def test_tokens_accumulate_up_to_the_burst_only() -> None:
    t = FakeTime()
    flow = FlowControl(10, 2, clock=t.clock, sleep=t.sleep)
    await flow.acquire()
    await flow.acquire()
    t.now += 60  # a minute idle refills 2, not 600
    await flow.acquire()
    await flow.acquire()
    start = t.now
    await flow.acquire()
    assert t.now - start == pytest.approx(0.1)


async def test_urgent_waiters_are_served_before_a_queue_of_normal_ones() -> None:
    t = FakeTime()
    flow = FlowControl(1, 1, clock=t.clock, sleep=t.sleep)
    await flow.acquire()  # the bucket is empty now
    order: list[str] = []

    async def request(name: str, lane: int) -> None:
        await flow.acquire(lane)
        order.append(name)

    tasks = [asyncio.create_task(request(f"rollout-{i}", NORMAL)) for i in range(20)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(request("heal", URGENT)))
    await asyncio.gather(*tasks)
    # The heal arrived after 20 rollout requests and was served after at most the one
    # already being granted.
    assert order.index("heal") <= 1
    assert len(order) == 21


async def test_the_lane_comes_from_the_context() -> None:
    assert current_lane() == NORMAL
    with urgent():
        assert current_lane() == URGENT

        async def inner() -> int:
            return current_lane()

        assert await asyncio.create_task(inner()) == URGENT  # tasks inherit it
        with urgent(False):
            assert current_lane() == URGENT  # urgent(False) keeps what is there
    assert current_lane() == NORMAL


async def test_a_pause_holds_every_request_even_without_a_rate_limit() -> None:
    t = FakeTime()
    flow = FlowControl(0, 1, clock=t.clock, sleep=t.sleep)
    await flow.acquire()
    assert t.now == 1000.0
    flow.pause(3)
    await flow.acquire()
    assert t.now == pytest.approx(1003.0)
    flow.pause(1)
    flow.pause(0.5)  # the longest pause wins
    await flow.acquire()
    assert t.now == pytest.approx(1004.0)


async def test_a_cancelled_waiter_does_not_take_a_token() -> None:
    t = FakeTime()
    flow = FlowControl(1, 1, clock=t.clock, sleep=t.sleep)
    await flow.acquire()
    gone = asyncio.create_task(flow.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    await flow.acquire()
    assert t.now == pytest.approx(1001.0)  # the next token went to the living waiter


def test_a_rate_limit_needs_a_burst() -> None:
    with pytest.raises(ValueError, match="burst"):
        FlowControl(5, 0)


def test_request_stats_tell_writes_from_reads_and_dry_runs() -> None:
    stats = RequestStats()
    for key in ("GET", "GET", "WATCH", "APPLY+dry-run", "APPLY", "PATCH", "POST", "DELETE"):
        stats.count(key)
    assert stats.total == 8
    assert stats.writes == 4


def _kube(handler: httpx.MockTransport, flow: FlowControl) -> Kube:
    config = KubeConfig(server="https://kube.test", context="test", namespace="default")
    retry = RetryPolicy(attempts=3)
    return Kube(config, transport=handler, flow=flow, retry=retry)


async def test_the_client_pauses_its_budget_on_429_and_counts_requests() -> None:
    t = FakeTime()
    flow = FlowControl(0, 1, clock=t.clock, sleep=t.sleep)
    answers = iter([429, 200, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        code = next(answers)
        if code == 429:
            return httpx.Response(
                429,
                headers={"Retry-After": "2"},
                json={"kind": "Status", "code": 429, "reason": "TooManyRequests"},
            )
        return httpx.Response(200, json={"kind": "Namespace", "metadata": {"name": "x"}})

    async with _kube(httpx.MockTransport(handle), flow) as kube:
        response = await kube._send("GET", "/api/v1/namespaces/x", context="get", idempotent=True)
        assert response.status_code == 200
        assert kube.stats.throttled_429 == 1
        assert kube.stats.requests == {"GET": 2}
        assert t.now == pytest.approx(1002.0)  # the retry waited Retry-After on the budget
        flow.pause(5)
        await kube._send("GET", "/api/v1/namespaces/x", context="get", idempotent=True)
        assert t.now == pytest.approx(1007.0)  # and a pause holds every request


@pytest.mark.parametrize(
    ("qps", "burst"), [(-1.0, 10), (float("nan"), 10), (1e9, 10), (50.0, 0), (50.0, 10**9)]
)
def test_the_controller_refuses_a_budget_out_of_range(qps: float, burst: int) -> None:
    from gitsail.controller.kube_metrics import kube_flow

    with pytest.raises(ValueError, match="--kube-"):
        kube_flow(qps, burst)


def test_the_controller_budget_and_no_limit() -> None:
    from gitsail.controller.kube_metrics import KUBE_BURST, KUBE_QPS, kube_flow

    assert kube_flow(KUBE_QPS, KUBE_BURST).limited
    assert not kube_flow(0, 1).limited
