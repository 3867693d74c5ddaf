"""The bounds every webhook endpoint shares, before its sender is proven.

Argo CD's ``POST /api/webhook`` and Flux's ``POST /hook/<digest>`` (``receiver.py``) are
reachable by anyone who can reach the controller, so what a request can make the process
do before it is verified is bounded by the operator's ``Policy``, the same way for both:

1. ``Content-Length`` over ``webhook_body_bytes`` is refused (413) before a byte of the
   body is read; a malformed one is refused (400);
2. at most ``webhook_concurrency`` requests are handled at once, over all webhook
   endpoints; one more is answered 503 with ``Retry-After`` at once, without reading its
   body;
3. the body is streamed with a cap (413 as soon as it grows past ``webhook_body_bytes``,
   also without a ``Content-Length``) and a deadline (408 when the whole body has not
   arrived within ``webhook_body_timeout`` seconds, however slowly it trickles);
4. after verification, a delivery that was accepted before is refused (409): ``replays``
   (a ``ReplayGuard``) is shared by the endpoints; keys carry the provider's name.

Every refusal closes the connection (``Connection: close``), so a client cannot go on
sending a body nobody reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from gitsail.controller.metrics import Metrics
from gitsail.controller.webhook import ReplayGuard, WebhookError
from gitsail.policy import Policy

__all__ = ["WebhookGate"]

log = logging.getLogger(__name__)


class WebhookGate:
    """The limits of one HTTP server's webhook endpoints (see the module docstring)."""

    def __init__(self, policy: Policy, metrics: Metrics) -> None:
        self.policy = policy
        self.metrics = metrics
        self.replays = ReplayGuard(policy.webhook_replay_window)
        self._slots = asyncio.Semaphore(max(1, policy.webhook_concurrency))

    @asynccontextmanager
    async def admitted(self, request: Request) -> AsyncIterator[None]:
        """Hold one of the concurrent slots; 413/400 on the declared length, 503 if full."""
        _check_declared_length(request, self.policy.webhook_body_bytes)
        if self._slots.locked():
            raise WebhookError(
                503,
                f"too many webhook requests at once (limit {self.policy.webhook_concurrency}); "
                "retry later",
                retry_after=1,
            )
        async with self._slots:
            yield

    async def body(self, request: Request) -> bytes:
        """The body, streamed: 413 once it passes the limit, 408 if not all there in time."""
        return await _read_body(
            request, self.policy.webhook_body_bytes, self.policy.webhook_body_timeout
        )

    def refuse(self, request: Request, provider: str, exc: WebhookError) -> Response:
        """The answer to a refused request (counted, logged without the payload)."""
        self.metrics.count_webhook(provider, "refused")
        level = logging.DEBUG if exc.status in (404, 503) else logging.WARNING
        log.log(level, "webhook from %s refused: %s", client_of(request), exc.message)
        headers = {"Connection": "close"}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return PlainTextResponse(exc.message, status_code=exc.status, headers=headers)


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise WebhookError(400, "webhook request has a malformed Content-Length header")
    size = int(declared)
    if size > limit:
        raise WebhookError(
            413,
            f"webhook payload declares {size} bytes, over the limit of {limit}; "
            "send smaller payloads or raise GITSAIL_WEBHOOK_BODY_BYTES",
        )


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise WebhookError(
                        413,
                        f"webhook payload is over the limit of {limit} bytes; "
                        "send smaller payloads or raise GITSAIL_WEBHOOK_BODY_BYTES",
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise WebhookError(
            408,
            f"webhook body was not received within {seconds:g} s "
            f"({size} bytes arrived); send it at once",
        ) from None
    except ClientDisconnect:
        raise WebhookError(400, "webhook client disconnected before sending its body") from None
    return b"".join(chunks)


def client_of(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown client"
