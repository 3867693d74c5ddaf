"""Retry and backoff policies, as data.

A ``Backoff`` says how long to wait before attempt *n* (exponential, capped, with jitter so
many clients that failed together do not retry together). A ``RetryPolicy`` says which
failures of a single request are worth repeating and how often: throttling (429, honouring
``Retry-After``), server errors (5xx) and requests that got no response. Whether a request may
be repeated at all is the caller's knowledge (``idempotent``); a 429 and a refused connection
are always safe because the server did not act on the request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "RetryPolicy"]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``attempt`` (0-based): ``initial * factor**attempt``, at most
    ``maximum``, spread by ±``jitter`` (a fraction)."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt))
        if self.jitter <= 0 or base <= 0:
            return base
        spread = base * self.jitter
        return max(0.0, base + random.uniform(-spread, spread))  # noqa: S311 (not crypto)


@dataclass(frozen=True)
class RetryPolicy:
    """How a single request is retried: ``attempts`` in total (1 means never retry)."""

    attempts: int = 4
    backoff: Backoff = Backoff()
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    max_retry_after: float = 30.0

    def should_retry(self, attempt: int, status: int | None, *, idempotent: bool) -> bool:
        """Whether attempt ``attempt`` (0-based), which failed with HTTP ``status`` (None: no
        response), is followed by another. 429 is retried even for non-idempotent requests."""
        if attempt + 1 >= self.attempts:
            return False
        if status is None:
            return idempotent
        if status == 429:
            return True
        return idempotent and status in self.retry_statuses

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``; a numeric ``Retry-After`` wins."""
        if retry_after:
            try:
                return min(self.max_retry_after, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return self.backoff.delay(attempt)
