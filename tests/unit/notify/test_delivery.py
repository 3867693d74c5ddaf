"""The dispatcher with an in-memory transport: retries, give-ups, dedup, bounds."""

from __future__ import annotations

import httpx

from gitsail.notify.delivery import Dispatcher, Notification
from gitsail.notify.providers import Request


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def notification(key: str = "k", url: str = "https://hooks.example.com/x") -> Notification:
    return Notification(key, Request("POST", url, (("X-Token", "t"),), b"{}"), 5.0, f"test {key}")


def recording(statuses: list[int | Exception]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = statuses.pop(0) if statuses else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    return httpx.MockTransport(handler), seen


async def no_sleep(seconds: float) -> None:
    sleeps.append(seconds)


sleeps: list[float] = []


async def test_retries_5xx_and_connection_errors_with_backoff() -> None:
    sleeps.clear()
    transport, seen = recording([503, httpx.ConnectError("refused"), 200])
    d = Dispatcher(transport=transport, sleep=no_sleep, backoff=(1.0, 60.0))
    await d.start()
    assert d.submit(notification())
    await d.drain()
    await d.stop()
    assert len(seen) == 3
    assert d.stats.delivered == 1
    assert d.stats.failed == 0
    assert sleeps == [1.0, 2.0]
    assert seen[0].headers["X-Token"] == "t"


async def test_4xx_is_not_retried_and_attempts_are_bounded() -> None:
    sleeps.clear()
    transport, seen = recording([400])
    d = Dispatcher(transport=transport, sleep=no_sleep)
    await d.start()
    d.submit(notification("a"))
    await d.drain()
    assert len(seen) == 1
    assert d.stats.failed == 1
    transport2, seen2 = recording([500] * 10)
    d2 = Dispatcher(transport=transport2, sleep=no_sleep, attempts=3, backoff=(1.0, 1.5))
    await d2.start()
    d2.submit(notification("b"))
    await d2.drain()
    assert len(seen2) == 3
    assert d2.stats.failed == 1
    assert sleeps == [1.0, 1.5]
    await d.stop()
    await d2.stop()


async def test_duplicates_within_the_window_are_dropped() -> None:
    clock = Clock()
    transport, seen = recording([])
    d = Dispatcher(transport=transport, sleep=no_sleep, clock=clock, dedup_window=300)
    await d.start()
    assert d.submit(notification("same"))
    assert not d.submit(notification("same"))
    clock.now = 301
    assert d.submit(notification("same"))
    await d.drain()
    await d.stop()
    assert len(seen) == 2
    assert d.stats.duplicates == 1


async def test_the_queue_is_bounded() -> None:
    d = Dispatcher(max_queue=2, workers=1, sleep=no_sleep)  # not started: nothing taken off
    assert d.submit(notification("1"))
    assert d.submit(notification("2"))
    assert not d.submit(notification("3"))
    assert d.stats.dropped == 1


async def test_redirects_are_not_followed() -> None:
    transport, seen = recording([302])
    d = Dispatcher(transport=transport, sleep=no_sleep)
    await d.start()
    d.submit(notification())
    await d.drain()
    await d.stop()
    assert len(seen) == 1
    assert d.stats.failed == 1


async def test_denied_networks_are_never_contacted() -> None:
    from gitsail.policy import Policy

    transport, seen = recording([])
    d = Dispatcher(transport=transport, sleep=no_sleep, policy=Policy())
    await d.start()
    d.submit(notification("meta", url="http://169.254.169.254/latest/meta-data"))
    d.submit(notification("ok", url="http://127.0.0.1:9/hook"))
    await d.drain()
    await d.stop()
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:9/hook"]
    assert "denied network" in d.stats.last_error["test meta"]


async def test_one_destination_is_served_in_order_even_across_retries() -> None:
    transport, seen = recording([503, 503])  # the first notification fails twice
    d = Dispatcher(transport=transport, sleep=no_sleep, workers=4)
    await d.start()
    for i in range(3):
        d.submit(notification(str(i), url=f"https://ci.example.com/status/{i}"))
    await d.drain()
    await d.stop()
    assert [r.url.path for r in seen] == [
        "/status/0",
        "/status/0",
        "/status/0",
        "/status/1",
        "/status/2",
    ]
