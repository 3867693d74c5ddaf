import asyncio

from gitsail.controller.queue import Key, WorkQueue


async def test_one_key_is_never_processed_twice_at_once_and_reasons_coalesce() -> None:
    running: set[Key] = set()
    overlaps = 0
    calls: list[frozenset[str]] = []
    gate = asyncio.Event()

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        calls.append(reasons)
        if len(calls) == 1:
            await gate.wait()
        running.discard(key)
        return None

    queue = WorkQueue(handler, concurrency=4)
    queue.start()
    queue.add(("ns", "a"), "first")
    while not calls:
        await asyncio.sleep(0)
    queue.add(("ns", "a"), "second")
    queue.add(("ns", "a"), "third")
    gate.set()
    while len(calls) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await queue.stop()
    assert overlaps == 0
    assert calls == [frozenset({"first"}), frozenset({"second", "third"})]


async def test_keys_run_in_parallel_up_to_the_concurrency() -> None:
    active = 0
    peak = 0
    done = 0

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        done += 1
        return None

    queue = WorkQueue(handler, concurrency=3)
    queue.start()
    for i in range(9):
        queue.add(("ns", f"app{i}"))
    while done < 9:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert peak == 3


async def test_requeue_after_a_delay_and_the_earliest_schedule_wins() -> None:
    seen: list[tuple[Key, frozenset[str]]] = []

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        seen.append((key, reasons))
        return None

    queue = WorkQueue(handler)
    queue.start()
    queue.add_after(("ns", "a"), 10.0, "late")
    queue.add_after(("ns", "a"), 0.05, "soon")
    await asyncio.sleep(0.2)
    await queue.stop()
    assert seen == [(("ns", "a"), frozenset({"soon"}))]


async def test_a_failing_reconcile_is_retried_after_the_error_delay() -> None:
    attempts = 0

    async def handler(key: Key, reasons: frozenset[str]) -> float | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("transient")
        return None

    queue = WorkQueue(handler, error_delay=0.05)
    queue.start()
    queue.add(("ns", "a"))
    deadline = asyncio.get_running_loop().time() + 2
    while attempts < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert attempts == 2
