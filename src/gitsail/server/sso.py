"""The browser's side of OIDC sign-in: ``/auth/login`` and ``/auth/callback`` (Argo CD's
paths), see ``gitsail.server.oidc`` for the flow and what is checked."""

from __future__ import annotations

import hmac
import logging
import time
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gitsail.server.auth import SESSION_SECONDS
from gitsail.server.http import COOKIE, service_of
from gitsail.server.oidc import OidcError, StateCookie
from gitsail.server.service import ApiError

__all__ = ["STATE_COOKIE", "safe_next", "sso_routes"]

log = logging.getLogger(__name__)

STATE_COOKIE = "gitsail.oidc"


def safe_next(value: str | None) -> str:
    """Only a local path: never a redirect to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/applications"


def _redirect_uri(request: Request) -> str:
    base = service_of(request).external_url() or str(request.base_url).rstrip("/")
    return f"{base}/auth/callback"


def _failed(message: str, status: int = 401) -> Response:
    # The message names what failed (never a token or a secret); the page offers a retry.
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign-in failed · gitsail"
        '</title><link rel=stylesheet href="/static/style.css"></head><body><main class=card>'
        f'<h1>Sign-in failed</h1><p role="alert">{escape(message)}</p>'
        '<p><a href="/login">Back to sign in</a></p></main></body></html>'
    )
    return HTMLResponse(html, status_code=status)


async def sso_login(request: Request) -> Response:
    service = service_of(request)
    try:
        provider = service.oidc()
        if provider is None:
            return _failed("SSO is not configured (oidc.config in argocd-cm)", 404)
        state = StateCookie.fresh(safe_next(request.query_params.get("return_url")))
        target = await provider.authorization_url(_redirect_uri(request), state)
        key = service.signing_key()
    except ApiError as exc:
        return _failed(exc.message, exc.status)
    except OidcError as exc:
        log.warning("SSO sign-in cannot start: %s", exc)
        return _failed(f"the SSO provider cannot be reached: {exc}", 502)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        state.encode(key),
        max_age=state.expires - int(time.time()),
        httponly=True,
        samesite="lax",  # sent on the issuer's redirect back (a top-level GET)
        secure=request.url.scheme == "https",
        path="/auth",
    )
    return response


async def sso_callback(request: Request) -> Response:
    service = service_of(request)
    params = request.query_params
    try:
        provider = service.oidc()
        if provider is None:
            return _failed("SSO is not configured (oidc.config in argocd-cm)", 404)
        state = StateCookie.decode(service.signing_key(), request.cookies.get(STATE_COOKIE, ""))
        if params.get("error"):
            raise OidcError(f"the provider refused: {params.get('error', '')[:100]}")
        given = params.get("state", "")
        if not given or not hmac.compare_digest(given, state.state):
            raise OidcError("the sign-in state does not match: start again")
        id_token = await provider.exchange(
            params.get("code", ""), _redirect_uri(request), state.verifier
        )
        claims = await provider.verify(id_token, state.nonce)
        token, session = await service.sso_login(claims)
    except ApiError as exc:
        return _failed(exc.message, exc.status)
    except OidcError as exc:
        log.warning("SSO sign-in failed: %s", exc)
        return _failed(str(exc))
    # A page, not a redirect: the session cookie is SameSite=Strict, and a browser does not
    # send it on a redirect chain that began at the issuer's (another) site.
    target = escape(state.next, quote=True)
    response = HTMLResponse(
        f'<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv="refresh" '
        f'content="0;url={target}"><title>Signed in · gitsail</title></head><body>'
        f'<p>Signed in. <a href="{target}">Continue</a></p></body></html>'
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(STATE_COOKIE, path="/auth")
    log.info("SSO sign-in of %s", session.subject)
    return response


def sso_routes() -> list[Route]:
    return [
        Route("/auth/login", sso_login, methods=["GET"]),
        Route("/auth/callback", sso_callback, methods=["GET"]),
    ]
