"""The controller's HTTP endpoints: ``/healthz``, ``/metrics``, Argo CD's
``POST /api/webhook``, Flux's Receiver webhooks ``POST /hook/<digest>`` (``receiver.py``),
and the artifacts of Flux sources (``GET /gitrepository/<ns>/<name>/<file>``, see
``artifacts_http``) from the controller's ``ArtifactStore`` (or the one given).

The webhook endpoints are reachable by anyone who can reach the controller, so everything
a request makes the process do before its sender is proven is bounded the same way for
both (``WebhookGate`` in ``webhook_gate.py``: declared and streamed body size, body
deadline, concurrent requests, replays). For ``/api/webhook`` the secrets come from a
watch of ``argocd-secret`` that every replica keeps (``Controller.webhook_secrets``), never
from a GET per request; rotating a secret still needs no restart.

Every refusal closes the connection (``Connection: close``), so a client cannot go on
sending a body nobody reads. A push is then recorded as a refresh request on each
Application it touches (``Controller.refresh_for_push``), which the leader, wherever it
runs, picks up from its watch; when that cannot be recorded the answer is 503, so the
sender may retry, and the delivery is not remembered as seen.

``make_server`` gives the uvicorn server the same limits as a second line: concurrent
connections, keep-alive, header size, and a deadline for the request head (uvicorn has
none: a connection that trickles its headers would otherwise be held forever).

A refused request is usually still sending its body. Closing a socket whose unread input
is not empty makes the kernel send a reset, and a reset may reach the client before the
refusal does, so the client would see "connection reset" instead of the 413 or 408. The
server therefore closes as HTTP servers do (a lingering close): it ends its side of the
connection, reads and discards what still arrives for at most ``LINGER_SECONDS`` and
``LINGER_BYTES``, then closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, cast

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from gitsail.controller.artifacts_http import artifact_routes
from gitsail.controller.manager import Controller, RefreshNotRecorded, describe
from gitsail.controller.receiver import FluxReceivers
from gitsail.controller.webhook import (
    WebhookError,
    delivery_keys,
    parse_webhook,
    webhook_provider,
)
from gitsail.controller.webhook_gate import WebhookGate
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
# After the server ends a connection, input is read and discarded this long at most.
LINGER_SECONDS = 1.0
# ... and at most this much of it: a client that floods is reset sooner.
LINGER_BYTES = 1024 * 1024


def make_app(
    controller: Controller,
    policy: Policy = DEFAULT_POLICY,
    artifacts: ArtifactStore | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    gate = WebhookGate(policy, controller.metrics)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", **describe(controller)})

    async def metrics(_request: Request) -> Response:
        return Response(controller.metrics.render(), media_type=controller.metrics.content_type)

    async def webhook(request: Request) -> Response:
        provider = webhook_provider(request.headers)
        try:
            async with gate.admitted(request):
                return await handle(request, provider)
        except WebhookError as exc:
            return gate.refuse(request, provider, exc)

    async def handle(request: Request, provider: str) -> Response:
        body = await gate.body(request)
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
        if not gate.replays.claim(keys):
            raise WebhookError(409, "this delivery was already accepted; a replay is refused")
        try:
            refreshed = await controller.refresh_for_push(event)
        except RefreshNotRecorded as exc:
            gate.replays.release(keys)
            raise WebhookError(503, str(exc), retry_after=5) from None
        except BaseException:
            gate.replays.release(keys)
            raise
        controller.metrics.count_webhook(provider, "accepted")
        names = [f"{ns}/{name}" for ns, name in refreshed]
        log.info(
            "webhook push %s %s refreshes %s", event.revision, event.after[:12], json.dumps(names)
        )
        return JSONResponse({"refreshed": names})

    receivers = FluxReceivers(lambda: controller.kube, gate)
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/api/webhook", webhook, methods=["POST"]),
            receivers.route(),
            *artifact_routes(artifacts if artifacts is not None else controller.artifacts),
            *extra_routes,  # e.g. Sealed Secrets' /v1/cert.pem (controller/sealedsecrets.py)
        ]
    )
    app.state.receivers = receivers  # started on first use
    controller.on_stop(receivers.stop)  # its watches end with the controller's run
    return app


def make_server(
    controller: Controller,
    host: str,
    port: int,
    policy: Policy = DEFAULT_POLICY,
    extra_routes: Sequence[BaseRoute] = (),
) -> uvicorn.Server:
    """The uvicorn server for ``make_app`` with bounded connections, heads and keep-alive."""
    head_timeout = policy.webhook_body_timeout

    class _Protocol(_HeadDeadlineProtocol):
        deadline = head_timeout

    config = uvicorn.Config(
        make_app(controller, policy, extra_routes=extra_routes),
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


class LingeringTransport:
    """A transport whose ``close`` ends the writing side at once and the connection only
    after the peer has closed too, ``linger`` seconds have passed or ``limit`` bytes
    arrived; what arrives meanwhile is dropped (``discard``). Everything else is the
    wrapped transport's."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        linger: float,
        limit: int = LINGER_BYTES,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._linger = linger
        self._left = limit
        self._timer: asyncio.TimerHandle | None = None
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        try:
            self._transport.write_eof()  # flushes what was written, then FIN
        except OSError:
            self._transport.close()
            return
        self._transport.resume_reading()  # drain, even if flow control had paused it
        self._timer = self._loop.call_later(self._linger, self.abort_linger)

    def discard(self, data: bytes) -> None:
        """Input that arrived while lingering: dropped, and counted against the limit."""
        self._left -= len(data)
        if self._left < 0:
            self.abort_linger()

    def abort_linger(self) -> None:
        """End the connection now (the linger is over or the peer closed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._transport.is_closing():
            self._transport.close()


class _HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete
    ``deadline`` seconds after it opened or after its previous response, and closing
    every connection with a lingering close (``LingeringTransport``)."""

    deadline: float = 10.0
    linger: float = LINGER_SECONDS
    _head_timer: asyncio.TimerHandle | None = None
    _lingering: LingeringTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self._lingering = LingeringTransport(transport, self.loop, self.linger)
        super().connection_made(cast(asyncio.Transport, self._lingering))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None and self._lingering.lingering:
            self._lingering.discard(data)  # the response is sent; the rest is dropped
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering is not None and self._lingering.lingering:
            self._lingering.abort_linger()
            return
        super().eof_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._lingering is not None:
            self._lingering.abort_linger()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.deadline, self._head_expired)

    def _head_expired(self) -> None:
        # IDLE: the client has not finished a request head since the timer was armed.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
