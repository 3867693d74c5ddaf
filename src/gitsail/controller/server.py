"""The controller's HTTP endpoints: ``/healthz``, ``/metrics``, ``POST /api/webhook``, and
the artifacts of Flux sources (``GET /gitrepository/<ns>/<name>/<file>``, see
``artifacts_http``) when an ``ArtifactStore`` is given.

The webhook endpoint is reachable by anyone who can reach the controller, so everything a
request makes the process do before its sender is proven is bounded (``Policy``):

1. ``Content-Length`` over ``webhook_body_bytes`` is refused (413) before a byte of the
   body is read; a malformed one is refused (400);
2. at most ``webhook_concurrency`` requests are handled at once; one more is answered 503
   with ``Retry-After`` at once, without reading its body;
3. the body is streamed with a cap (413 as soon as it grows past ``webhook_body_bytes``,
   also without a ``Content-Length``) and a deadline (408 when the whole body has not
   arrived within ``webhook_body_timeout`` seconds, however slowly it trickles);
4. the secrets come from a watch of ``argocd-secret`` that every replica keeps
   (``Controller.webhook_secrets``), never from a GET per request; rotating a secret
   still needs no restart;
5. after verification, a delivery that was accepted before is refused (409): see
   ``ReplayGuard`` in ``webhook.py``.

Every refusal closes the connection (``Connection: close``), so a client cannot go on
sending a body nobody reads. A push is then recorded as a refresh request on each
Application it touches (``Controller.refresh_for_push``), which the leader, wherever it
runs, picks up from its watch; when that cannot be recorded the answer is 503, so the
sender may retry, and the delivery is not remembered as seen.

``make_server`` gives the uvicorn server the same limits as a second line: concurrent
connections, keep-alive, header size, and a deadline for the request head (uvicorn has
none: a connection that trickles its headers would otherwise be held forever).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from gitsail.controller.artifacts_http import artifact_routes
from gitsail.controller.manager import Controller, RefreshNotRecorded, describe
from gitsail.controller.webhook import (
    ReplayGuard,
    WebhookError,
    delivery_keys,
    parse_webhook,
    webhook_provider,
)
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.artifacts import ArtifactStore

__all__ = ["make_app", "make_server"]

log = logging.getLogger(__name__)

# Largest request head (request line and headers) uvicorn buffers: webhook headers are
# a few hundred bytes; this is h11's own default, set here so it cannot drift.
MAX_HEAD_BYTES = 16 * 1024
# Idle keep-alive connections are closed after this many seconds.
KEEP_ALIVE_SECONDS = 5
# Connections (and requests) uvicorn serves at once, per webhook slot: room for probes,
# scrapes and keep-alive connections; beyond it uvicorn answers 503 itself.
CONNECTIONS_PER_WEBHOOK_SLOT = 4


def make_app(
    controller: Controller,
    policy: Policy = DEFAULT_POLICY,
    artifacts: ArtifactStore | None = None,
) -> Starlette:
    slots = asyncio.Semaphore(max(1, policy.webhook_concurrency))
    replays = ReplayGuard(policy.webhook_replay_window)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", **describe(controller)})

    async def metrics(_request: Request) -> Response:
        return Response(controller.metrics.render(), media_type=controller.metrics.content_type)

    def refuse(request: Request, provider: str, exc: WebhookError) -> Response:
        controller.metrics.count_webhook(provider, "refused")
        level = logging.DEBUG if exc.status == 503 else logging.WARNING
        log.log(level, "webhook from %s refused: %s", _client(request), exc.message)
        headers = {"Connection": "close"}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return PlainTextResponse(exc.message, status_code=exc.status, headers=headers)

    async def webhook(request: Request) -> Response:
        provider = webhook_provider(request.headers)
        try:
            _check_declared_length(request, policy.webhook_body_bytes)
            if slots.locked():
                raise WebhookError(
                    503,
                    f"too many webhook requests at once (limit {policy.webhook_concurrency}); "
                    "retry later",
                    retry_after=1,
                )
        except WebhookError as exc:
            return refuse(request, provider, exc)
        async with slots:
            try:
                return await handle(request, provider)
            except WebhookError as exc:
                return refuse(request, provider, exc)

    async def handle(request: Request, provider: str) -> Response:
        body = await _read_body(request, policy.webhook_body_bytes, policy.webhook_body_timeout)
        secrets = controller.webhook_secrets()
        if secrets is None:
            raise WebhookError(
                503, "webhook secrets are not loaded yet; retry in a few seconds", retry_after=5
            )
        headers = dict(request.headers)
        event = parse_webhook(headers, body, secrets, max_bytes=policy.webhook_body_bytes)
        if event is None:
            controller.metrics.count_webhook(provider, "ignored")
            return JSONResponse({"refreshed": []})
        keys = delivery_keys(provider, headers, body, event)
        if not replays.claim(keys):
            raise WebhookError(409, "this delivery was already accepted; a replay is refused")
        try:
            refreshed = await controller.refresh_for_push(event)
        except RefreshNotRecorded as exc:
            replays.release(keys)
            raise WebhookError(503, str(exc), retry_after=5) from None
        except BaseException:
            replays.release(keys)
            raise
        controller.metrics.count_webhook(provider, "accepted")
        names = [f"{ns}/{name}" for ns, name in refreshed]
        log.info(
            "webhook push %s %s refreshes %s", event.revision, event.after[:12], json.dumps(names)
        )
        return JSONResponse({"refreshed": names})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/api/webhook", webhook, methods=["POST"]),
            *(artifact_routes(artifacts) if artifacts is not None else []),
        ]
    )


def make_server(
    controller: Controller, host: str, port: int, policy: Policy = DEFAULT_POLICY
) -> uvicorn.Server:
    """The uvicorn server for ``make_app`` with bounded connections, heads and keep-alive."""
    head_timeout = policy.webhook_body_timeout

    class _Protocol(_HeadDeadlineProtocol):
        deadline = head_timeout

    config = uvicorn.Config(
        make_app(controller, policy),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        http=_Protocol,
        limit_concurrency=max(1, policy.webhook_concurrency) * CONNECTIONS_PER_WEBHOOK_SLOT,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    return uvicorn.Server(config)


class _HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete
    ``deadline`` seconds after it opened or after its previous response."""

    deadline: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.deadline, self._head_expired)

    def _head_expired(self) -> None:
        # IDLE: the client has not finished a request head since the timer was armed.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


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
    """The body, streamed: 413 once it passes ``limit``, 408 if not all there in time."""
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


def _client(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown client"
