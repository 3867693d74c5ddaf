"""``gitsail server``: the API and the web UI, a process of its own (it scales apart from
the controller and never reconciles anything).

``run_server`` connects to the cluster, makes sure the signing key and the admin's first
password exist (``Service.ensure_admin``), starts the watch caches (``ServerState``) and
serves ``make_app`` with uvicorn, with the controller's connection limits.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gitsail.kube import Kube, KubeConfig
from gitsail.policy import Policy
from gitsail.server.api import api_routes
from gitsail.server.service import INITIAL_ADMIN_SECRET, Service
from gitsail.server.sso import sso_routes
from gitsail.server.state import ServerState
from gitsail.server.ui import ui_routes

__all__ = ["make_app", "run_server", "start_service"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1000
KEEP_ALIVE_SECONDS = 5
MAX_HEAD_BYTES = 16 * 1024


def make_app(service: Service) -> Starlette:
    async def healthz(_request: Request) -> Response:
        # Unauthenticated: says it is up and which kinds it serves, nothing about objects.
        return JSONResponse({"status": "ok", "unavailable": sorted(service.state.unavailable)})

    app = Starlette(routes=[*api_routes(), *sso_routes(), *ui_routes()])
    app.add_route("/healthz", healthz)
    app.state.service = service

    app.add_middleware(_SecurityHeaders)
    return app


class _SecurityHeaders:
    """No sniffing, no framing, scripts and styles from this server only."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (
            b"content-security-policy",
            b"default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' "
            b"'unsafe-inline' 'unsafe-eval'; frame-ancestors 'none'",
        ),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def start_service(
    kube: Kube, control_namespace: str, namespaces: tuple[str, ...], policy: Policy
) -> tuple[Service, str | None]:
    """The service with its caches started, and the admin's first password if it was made
    now (None when one already existed)."""
    state = ServerState(kube, control_namespace, namespaces)
    service = Service(state, kube, policy)
    password = await service.ensure_admin()
    await state.start()
    return service, password


async def run_server(
    config: KubeConfig,
    host: str,
    port: int,
    control_namespace: str,
    namespaces: tuple[str, ...],
    policy: Policy,
) -> None:
    async with Kube(config) as kube:
        service, created = await start_service(kube, control_namespace, namespaces, policy)
        try:
            if created:
                # The password itself is never logged: it is in the Secret.
                print(
                    f"gitsail server: the admin's first password is in Secret "
                    f"{control_namespace}/{INITIAL_ADMIN_SECRET} (key password)",
                    file=sys.stderr,
                )
            server = uvicorn.Server(
                uvicorn.Config(
                    make_app(service),
                    host=host,
                    port=port,
                    log_level="warning",
                    lifespan="off",
                    limit_concurrency=MAX_CONNECTIONS,
                    timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                    timeout_graceful_shutdown=2,  # SSE streams never end on their own
                )
            )
            print(f"gitsail server: listening on http://{host}:{port}", file=sys.stderr)
            await server.serve()
        finally:
            await service.state.stop()
