"""HTTP plumbing shared by the API and the pages: who is asking, CSRF, errors, the
endpoint table the OpenAPI document is generated from."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gitsail.server.auth import csrf_token
from gitsail.server.service import ApiError, Service, User

__all__ = [
    "COOKIE",
    "ENDPOINTS",
    "Endpoint",
    "endpoint",
    "error_response",
    "form_of",
    "json_body",
    "user_of",
]

COOKIE = "argocd.token"  # Argo CD's cookie name: its scripts read it
CSRF_HEADER = "x-csrf-token"
MAX_JSON_BYTES = 1024 * 1024
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Handler
    body: str = ""  # a short description of the JSON body, for the OpenAPI document
    auth: bool = True


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str, path: str, summary: str, *, body: str = "", auth: bool = True
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(Endpoint(method, path, summary, handler, body, auth))
        return handler

    return register


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def token_of(request: Request) -> tuple[str, bool]:
    """The bearer token (header first) and whether it came from the cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(COOKIE, ""), True


async def user_of(request: Request) -> User:
    """The signed-in user; ApiError 401 without a valid token, 403 on a CSRF failure."""
    service = service_of(request)
    token, from_cookie = token_of(request)
    if not token:
        raise ApiError(401, "no session: sign in (POST /api/v1/session) or send a bearer token")
    user = (
        await service.authenticate_bearer(token) if not from_cookie else service.authenticate(token)
    )
    if from_cookie and request.method in UNSAFE:
        expected = csrf_token(service.signing_key(), user.claims.token_id)
        given = request.headers.get(CSRF_HEADER, "")
        if not given:
            given = (await form_of(request)).get("_csrf", [""])[0]
        if not given or not hmac.compare_digest(given, expected):
            raise ApiError(403, "CSRF token missing or wrong: reload the page")
    return user


async def _read(request: Request) -> bytes:
    """The body, at most ``MAX_JSON_BYTES`` (413 past it), read once per request."""
    cached = getattr(request.state, "raw_body", None)
    if isinstance(cached, bytes):
        return cached
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise ApiError(413, f"request body is larger than {MAX_JSON_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, f"request body is larger than {MAX_JSON_BYTES} bytes")
    request.state.raw_body = raw
    return raw


async def form_of(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body ({} for any other type)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    raw = await _read(request)
    try:
        return parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, "malformed form") from None


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 422 for anything else, 413 past the size limit."""
    raw = await _read(request)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the request body is a JSON object")
    return value


def error_response(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return JSONResponse(
        {"error": exc.message, "message": exc.message, "code": exc.status},
        status_code=exc.status,
        headers=headers,
    )
