"""The controller's HTTP endpoints: ``/healthz``, ``/metrics`` and ``POST /api/webhook``.

Webhook secrets are read from the ``argocd-secret`` Secret on every request (as Argo CD
reads them), so rotating a secret needs no restart. A refused request changes nothing.
"""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gitsail.controller.manager import Controller, describe
from gitsail.controller.webhook import WebhookError, WebhookSecrets, parse_webhook

__all__ = ["make_app"]

log = logging.getLogger(__name__)


def _provider(request: Request) -> str:
    headers = request.headers
    if "x-github-event" in headers:
        return "github"
    if "x-gitlab-event" in headers:
        return "gitlab"
    return "generic"


def make_app(controller: Controller) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", **describe(controller)})

    async def metrics(_request: Request) -> Response:
        return Response(controller.metrics.render(), media_type=controller.metrics.content_type)

    async def webhook(request: Request) -> Response:
        provider = _provider(request)
        body = await request.body()
        secrets = WebhookSecrets.from_argocd_secret(await controller.webhook_secrets_source())
        try:
            event = parse_webhook(dict(request.headers), body, secrets)
        except WebhookError as exc:
            controller.metrics.count_webhook(provider, "refused")
            log.warning("webhook from %s refused: %s", request.client, exc)
            return PlainTextResponse(str(exc), status_code=exc.status)
        if event is None:
            controller.metrics.count_webhook(provider, "ignored")
            return JSONResponse({"refreshed": []})
        keys = controller.refresh_for_push(event)
        controller.metrics.count_webhook(provider, "accepted")
        log.info(
            "webhook push %s %s refreshes %s",
            event.revision,
            event.after[:12],
            json.dumps([f"{ns}/{name}" for ns, name in keys]),
        )
        return JSONResponse({"refreshed": [f"{ns}/{name}" for ns, name in keys]})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/api/webhook", webhook, methods=["POST"]),
        ]
    )
