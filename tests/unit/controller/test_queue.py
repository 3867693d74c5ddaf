import asyncio
import itertools

from gitsail.controller.queue import Key, WorkQueue
from gitsail.controller.registry import ObjectKey


class Calls:
    """Records handler calls; ``wait(n)`` returns once ``n`` calls happened (or fails)."""

    def __init__(self) -> None:
        self.reasons: list[frozenset[str]] = []
        self._changed = asyncio.Condition()

    async def record(self, reasons: frozenset[str]) -> None:
        async with self._changed:
            self.reasons.append(reasons)
            self._changed.notify_all()

    async def wait(self, n: int, timeout: float = 2.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.reasons) >= n), timeout)


async def test_one_key_is_never_processed_twice_at_once_and_reasons_coalesce() -> None:
    running: set[Key] = set()
    overlaps = 0
    calls = Calls()
    gate = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        nonlocal overlaps
        overlaps += key in running
        running.add(key)
        await calls.record(reasons)
        if len(calls.reasons) == 1:
            await gate.wait()
        running.discard(key)
        return None

    queue = WorkQueue(handler, concurrency=4)
    queue.start()
    queue.add(ObjectKey("Application", "ns", "a"), "first")
    await calls.wait(1)
    queue.add(ObjectKey("Application", "ns", "a"), "second")
    queue.add(ObjectKey("Application", "ns", "a"), "third")
    gate.set()
    await calls.wait(2)
    await queue.stop()
    assert overlaps == 0
    assert calls.reasons == [frozenset({"first"}), frozenset({"second", "third"})]


async def test_keys_run_in_parallel_up_to_the_concurrency() -> None:
    active = 0
    peak = 0
    calls = Calls()
    release = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await calls.record(reasons)
        await release.wait()
        active -= 1
        return None

    queue = WorkQueue(handler, concurrency=3)
    queue.start()
    for i in range(9):
        queue.add(ObjectKey("Application", "ns", f"app{i}"))
    await calls.wait(3)
    assert active == 3
    release.set()
    await calls.wait(9)
    await queue.stop()
    assert peak == 3


async def test_requeue_after_a_delay_and_the_earliest_schedule_wins() -> None:
    calls = Calls()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        await calls.record(reasons)
        return None

    queue = WorkQueue(handler)
    queue.start()
    queue.add_after(ObjectKey("Application", "ns", "a"), 10.0, "late")
    queue.add_after(ObjectKey("Application", "ns", "a"), 0.05, "soon")
    await calls.wait(1)
    await queue.stop()
    assert calls.reasons == [frozenset({"soon"})]


async def test_a_failing_reconcile_is_retried_after_the_error_delay() -> None:
    calls = Calls()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        await calls.record(reasons)
        if len(calls.reasons) == 1:
            raise RuntimeError("transient")
        return None

    queue = WorkQueue(handler, error_delay=0.05)
    queue.start()
    queue.add(ObjectKey("Application", "ns", "a"), "first")
    await calls.wait(2)
    await queue.stop()
    assert calls.reasons[1] == frozenset({"requeue"})


async def test_an_event_runs_the_key_now_and_does_not_postpone_its_scheduled_run() -> None:
    calls = Calls()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        await calls.record(reasons)
        return None

    queue = WorkQueue(handler)
    queue.start()
    queue.add_after(ObjectKey("Application", "ns", "a"), 0.2, "poll")
    queue.add(ObjectKey("Application", "ns", "a"), "event")
    await calls.wait(2)
    await queue.stop()
    assert calls.reasons == [frozenset({"event"}), frozenset({"poll"})]


async def test_consecutive_failures_back_off_exponentially_and_a_success_resets() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    calls = Calls()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        times.append(loop.time())
        await calls.record(reasons)
        if len(times) <= 3:
            raise RuntimeError("apiserver unavailable")
        return None

    queue = WorkQueue(handler, error_delay=0.05, max_error_delay=0.15)
    queue.start()
    queue.add(ObjectKey("Application", "ns", "a"), "first")
    await calls.wait(4, timeout=3)
    await queue.stop()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.05, then doubled to 0.1, then capped at 0.15 (timers may fire a tick early).
    assert 0.04 <= gaps[0] < 0.09
    assert 0.09 <= gaps[1] < 0.14
    assert 0.14 <= gaps[2] < 0.25


async def test_objects_of_two_kinds_with_one_name_are_two_keys() -> None:
    seen: list[Key] = []
    calls = Calls()
    gate = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        seen.append(key)
        await calls.record(reasons)
        await gate.wait()
        return None

    queue = WorkQueue(handler, concurrency=2)
    queue.start()
    queue.add(ObjectKey("GitRepository", "ns", "podinfo"), "a")
    queue.add(ObjectKey("Kustomization", "ns", "podinfo"), "b")
    await calls.wait(2)  # both run at once: not one key's sequential worker
    gate.set()
    await queue.stop()
    assert sorted(seen) == [
        ObjectKey("GitRepository", "ns", "podinfo"),
        ObjectKey("Kustomization", "ns", "podinfo"),
    ]


async def test_an_urgent_key_runs_before_a_queue_of_normal_ones_in_the_urgent_lane() -> None:
    from gitsail.kube.flow import URGENT, current_lane

    order: list[tuple[str, int]] = []
    calls = Calls()
    release = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        if key.name == "blocker":
            await release.wait()
        order.append((key.name, current_lane()))
        await calls.record(reasons)
        return None

    queue = WorkQueue(handler, concurrency=1, urgent_workers=0)
    queue.start()
    queue.add(ObjectKey("Application", "ns", "blocker"), "first")
    await asyncio.sleep(0)  # the one worker is busy with it
    for i in range(50):
        queue.add(ObjectKey("Application", "ns", f"rollout-{i}"), "added")
    queue.add(ObjectKey("Application", "ns", "rollout-7"), "managed", urgent=True)  # moved up
    queue.add(ObjectKey("Application", "ns", "synced"), "managed", urgent=True)
    release.set()
    await calls.wait(52)
    await queue.stop()
    names = [name for name, _ in order]
    assert names[:3] == ["blocker", "rollout-7", "synced"]
    assert names.count("rollout-7") == 1  # its stale normal entry was skipped
    assert dict(order)["synced"] == URGENT
    assert dict(order)["rollout-7"] == URGENT
    assert dict(order)["rollout-8"] != URGENT


async def test_a_key_made_urgent_while_running_runs_again_in_the_normal_lane() -> None:
    from gitsail.kube.flow import URGENT, current_lane

    lanes: list[int] = []
    calls = Calls()
    gate = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        lanes.append(current_lane())
        await calls.record(reasons)
        if len(lanes) == 1:
            await gate.wait()
        return None

    queue = WorkQueue(handler, concurrency=2)
    queue.start()
    key = ObjectKey("Application", "ns", "a")
    queue.add(key, "added")
    await calls.wait(1)
    queue.add(key, "managed", urgent=True)
    gate.set()
    await calls.wait(2)
    await queue.stop()
    assert lanes[0] != URGENT
    assert lanes[1] != URGENT  # events during its own run coalesce into a normal rerun


async def test_an_urgent_key_runs_while_every_normal_worker_is_busy() -> None:
    calls = Calls()
    release = asyncio.Event()
    ran: list[str] = []

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        ran.append(key.name)
        await calls.record(reasons)
        if key.name.startswith("slow"):
            await release.wait()
        return None

    queue = WorkQueue(handler, concurrency=2, urgent_workers=1)
    queue.start()
    for i in range(5):
        queue.add(ObjectKey("Application", "ns", f"slow-{i}"), "added")
    await calls.wait(2)  # both normal workers hold a slow first sync
    queue.add(ObjectKey("Application", "ns", "healed"), "managed", urgent=True)
    await calls.wait(3)
    assert ran == ["slow-0", "slow-1", "healed"]
    assert queue.depth == 3  # the other slow ones still wait; the urgent worker took none
    release.set()
    await calls.wait(6)
    await queue.stop()
