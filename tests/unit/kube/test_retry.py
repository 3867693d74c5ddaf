from __future__ import annotations

from gitsail.kube.retry import Backoff, RetryPolicy


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=1, factor=2, maximum=5, jitter=0)
    assert [backoff.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]


def test_backoff_jitter_stays_within_its_spread() -> None:
    backoff = Backoff(initial=10, factor=1, maximum=10, jitter=0.2)
    assert all(8 <= backoff.delay(0) <= 12 for _ in range(100))


def test_throttling_is_retried_even_for_non_idempotent_requests() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(0, 429, idempotent=False)
    assert not policy.should_retry(0, 503, idempotent=False)
    assert policy.should_retry(0, 503, idempotent=True)
    assert not policy.should_retry(0, 422, idempotent=True)
    assert not policy.should_retry(2, 429, idempotent=True)  # attempts used up


def test_no_response_is_retried_only_when_idempotent() -> None:
    policy = RetryPolicy()
    assert policy.should_retry(0, None, idempotent=True)
    assert not policy.should_retry(0, None, idempotent=False)


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(backoff=Backoff(initial=1, jitter=0), max_retry_after=10)
    assert policy.delay(0, "3") == 3
    assert policy.delay(0, "3600") == 10
    assert policy.delay(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 1
    assert policy.delay(1) == 2
