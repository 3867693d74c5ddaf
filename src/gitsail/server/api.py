"""The JSON API under ``/api/v1``: Argo CD's paths and shapes where Argo CD has the
endpoint, the Flux kinds and ApplicationSets/AppProjects at paths of their own.

Every handler authenticates (``user_of``) and checks RBAC (``Service.require``/``get``);
an object the user may not get answers 404 like a missing one, and lists and streams leave
such objects out. The OpenAPI document (``/api/docs/openapi.json``) is generated from the
``endpoint`` table below.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gitsail.kube import InvalidName, check_names
from gitsail.server.http import (
    COOKIE,
    ENDPOINTS,
    endpoint,
    error_response,
    json_body,
    service_of,
    user_of,
)
from gitsail.server.service import ApiError, User
from gitsail.server.state import KINDS
from gitsail.server.views import FilterError, Filters, filter_objects, paginate, resource_tree

__all__ = ["api_routes", "openapi"]

SSE_KEEPALIVE = 15.0


def _names(namespace: str, name: str) -> tuple[str, str]:
    try:
        check_names("", "object", name, namespace)
    except InvalidName as exc:
        raise ApiError(400, str(exc)) from None
    return namespace, name


def _app_ns(request: Request) -> str:
    return request.query_params.get("appNamespace") or service_of(request).control_namespace


def _filters(request: Request) -> Filters:
    try:
        return Filters.parse({k: request.query_params.getlist(k) for k in request.query_params})
    except FilterError as exc:
        raise ApiError(400, str(exc)) from None


def _list(request: Request, user: User, path: str) -> dict[str, Any]:
    service = service_of(request)
    spec = KINDS[path]
    if path in service.state.unavailable:
        return {"metadata": {}, "items": []}
    rows = filter_objects(
        spec.kind, service.visible(user, spec, service.state.items(path)), _filters(request)
    )
    try:
        offset, limit = paginate(
            len(rows), request.query_params.get("offset"), request.query_params.get("limit")
        )
    except FilterError as exc:
        raise ApiError(400, str(exc)) from None
    page = rows[offset : offset + limit]
    remaining = max(0, len(rows) - offset - len(page))
    meta: dict[str, Any] = {"total": len(rows)}
    if remaining:
        meta["remainingItemCount"] = remaining
        meta["continue"] = str(offset + limit)
    return {"metadata": meta, "items": [obj for obj, _ in page]}


# -- session --------------------------------------------------------------------------


@endpoint(
    "POST",
    "/api/v1/session",
    "Sign in: {username, password} → {token}",
    body="{username, password}",
    auth=False,
)
async def create_session(request: Request) -> Response:
    body = await json_body(request)
    token, claims = await service_of(request).login(body.get("username"), body.get("password"))  # type: ignore[arg-type]
    response = JSONResponse({"token": token})
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(60, claims.expires - int(time.time())),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@endpoint("DELETE", "/api/v1/session", "Sign out: the session token is revoked")
async def delete_session(request: Request) -> Response:
    user = await user_of(request)
    service_of(request).logout(user.claims)
    response = JSONResponse({})
    response.delete_cookie(COOKIE, path="/")
    return response


@endpoint("GET", "/api/v1/session/userinfo", "Who is signed in")
async def userinfo(request: Request) -> Response:
    user = await user_of(request)
    return JSONResponse(
        {"loggedIn": True, "username": user.name, "iss": "gitsail", "groups": list(user.groups)}
    )


@endpoint(
    "POST",
    "/api/v1/account/{name}/token",
    "Create an API token of an account (apiKey capability)",
    body="{expiresIn: seconds, 0 = never}",
)
async def create_token(request: Request) -> Response:
    user = await user_of(request)
    body = await json_body(request)
    seconds = body.get("expiresIn", 0)
    if not isinstance(seconds, int):
        raise ApiError(422, "expiresIn is an integer number of seconds")
    return JSONResponse(
        await service_of(request).create_api_token(user, request.path_params["name"], seconds)
    )


@endpoint("DELETE", "/api/v1/account/{name}/token/{id}", "Revoke an API token")
async def delete_token(request: Request) -> Response:
    user = await user_of(request)
    await service_of(request).delete_api_token(
        user, request.path_params["name"], request.path_params["id"]
    )
    return JSONResponse({})


@endpoint(
    "POST",
    "/api/v1/projects/{project}/roles/{role}/token",
    "Create a token of an AppProject role (recorded in the project)",
    body="{expiresIn: seconds, 0 = never, id}",
)
async def create_project_token(request: Request) -> Response:
    user = await user_of(request)
    body = await json_body(request)
    seconds = body.get("expiresIn", 0)
    token_id = body.get("id") or None
    if not isinstance(seconds, int):
        raise ApiError(422, "expiresIn is an integer number of seconds")
    if token_id is not None and not isinstance(token_id, str):
        raise ApiError(422, "id is a string")
    _names(service_of(request).control_namespace, request.path_params["project"])
    return JSONResponse(
        await service_of(request).create_project_token(
            user, request.path_params["project"], request.path_params["role"], seconds, token_id
        )
    )


@endpoint(
    "DELETE",
    "/api/v1/projects/{project}/roles/{role}/token/{iat}",
    "Revoke the token of an AppProject role issued at iat",
)
async def delete_project_token(request: Request) -> Response:
    user = await user_of(request)
    raw = request.path_params["iat"]
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, "iat is the token's issue time (seconds since the epoch)")
    _names(service_of(request).control_namespace, request.path_params["project"])
    await service_of(request).delete_project_token(
        user, request.path_params["project"], request.path_params["role"], int(raw)
    )
    return JSONResponse({})


# -- Applications (Argo CD's paths) -------------------------------------------------------


@endpoint(
    "GET",
    "/api/v1/applications",
    "List Applications (filters: projects, appNamespace, cluster, sync, health, selector, "
    "search; offset, limit)",
)
async def list_applications(request: Request) -> Response:
    user = await user_of(request)
    return JSONResponse(_list(request, user, "applications"))


@endpoint(
    "GET",
    "/api/v1/applications/{name}",
    "Get an Application (?appNamespace=; ?refresh=normal|hard asks for a refresh)",
)
async def get_application(request: Request) -> Response:
    user = await user_of(request)
    service = service_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    refresh = request.query_params.get("refresh")
    if refresh:
        if refresh not in ("normal", "hard"):
            raise ApiError(400, "refresh is normal or hard")
        return JSONResponse(await service.refresh(user, ns, name, hard=refresh == "hard"))
    return JSONResponse(service.get(user, "applications", ns, name))


@endpoint(
    "POST",
    "/api/v1/applications/{name}/sync",
    "Sync: writes the operation the controller runs",
    body="{revision, prune, dryRun, resources: [{group, kind, namespace, name}], "
    "syncOptions: {items}, strategy: {apply: {force}}, appNamespace}",
)
async def sync_application(request: Request) -> Response:
    user = await user_of(request)
    body = await json_body(request)
    ns = str(body.get("appNamespace") or _app_ns(request))
    ns, name = _names(ns, request.path_params["name"])
    return JSONResponse(await service_of(request).sync(user, ns, name, body))


@endpoint(
    "PUT",
    "/api/v1/applications/{name}/rollback",
    "Roll back to a history entry",
    body="{id, prune, dryRun, appNamespace}",
)
async def rollback_application(request: Request) -> Response:
    user = await user_of(request)
    body = await json_body(request)
    ns, name = _names(
        str(body.get("appNamespace") or _app_ns(request)), request.path_params["name"]
    )
    history_id = body.get("id")
    if not isinstance(history_id, int):
        raise ApiError(422, "id is the integer id of a history entry")
    return JSONResponse(
        await service_of(request).rollback(
            user, ns, name, history_id, bool(body.get("prune")), bool(body.get("dryRun"))
        )
    )


@endpoint(
    "DELETE",
    "/api/v1/applications/{name}/operation",
    "Terminate the running operation (or withdraw one not started yet)",
)
async def terminate_operation(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    await service_of(request).terminate(user, ns, name)
    return JSONResponse({})


@endpoint(
    "DELETE",
    "/api/v1/applications/{name}",
    "Delete an Application (?cascade=false keeps its resources)",
)
async def delete_application(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    cascade = request.query_params.get("cascade", "true").lower() != "false"
    await service_of(request).delete(user, ns, name, cascade)
    return JSONResponse({})


@endpoint(
    "GET",
    "/api/v1/applications/{name}/resource-tree",
    "The resource tree: managed resources and the objects Kubernetes derived from them",
)
async def app_resource_tree(request: Request) -> Response:
    user = await user_of(request)
    service = service_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    app = service.get(user, "applications", ns, name)
    return JSONResponse(resource_tree(app, await service.state.derived_items()))


@endpoint(
    "GET",
    "/api/v1/applications/{name}/managed-resources",
    "Live and desired state and the diff of each resource (Secret values masked)",
)
async def managed_resources(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    comparison = await service_of(request).compare(user, ns, name)
    items = []
    for d in sorted(comparison.diffs, key=lambda d: d.key):
        items.append(
            {
                "group": d.key.group,
                "kind": d.key.kind,
                "namespace": d.key.namespace,
                "name": d.key.name,
                "liveState": json.dumps(d.live) if d.live is not None else "null",
                "targetState": json.dumps(d.desired) if d.desired is not None else "null",
                "normalizedLiveState": json.dumps(d.live) if d.live is not None else "null",
                "predictedLiveState": json.dumps(d.desired) if d.desired is not None else "null",
                "diff": d.unified,
                "modified": not d.synced,
                "requiresPruning": d.requires_pruning,
            }
        )
    return JSONResponse({"items": items})


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise ApiError(400, f"{name} is a non-negative integer")
    return int(raw)


@endpoint(
    "GET",
    "/api/v1/applications/{name}/revisions/diff",
    "The diff between two history entries (?from=ID&to=ID): each rendered again from its "
    "source and revision; Secret values masked",
)
async def revisions_diff(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    return JSONResponse(
        await service_of(request).revision_diff(
            user, ns, name, _int_param(request, "from"), _int_param(request, "to")
        )
    )


@endpoint(
    "GET",
    "/api/v1/applications/{name}/drift",
    "Who changed each out-of-sync field (field managers, from managedFields) and the "
    "controller's last report (status.drift)",
)
async def app_drift(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    return JSONResponse(await service_of(request).drift(user, ns, name))


@endpoint(
    "GET",
    "/api/v1/applications/{name}/logs",
    "Logs of a Pod of the app's tree (?podName=&namespace=&container=&tailLines=); "
    "available: false with the API server's message when the cluster has none",
)
async def app_logs(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    pod_ns, pod = _names(
        request.query_params.get("namespace") or "", request.query_params.get("podName") or ""
    )
    tail = min(_int_param(request, "tailLines", 1000), 10000)
    return JSONResponse(
        await service_of(request).pod_logs(
            user, ns, name, pod_ns, pod, request.query_params.get("container") or None, tail
        )
    )


@endpoint("GET", "/api/v1/applications/{name}/events", "Kubernetes Events of the Application")
async def app_events(request: Request) -> Response:
    user = await user_of(request)
    ns, name = _names(_app_ns(request), request.path_params["name"])
    return JSONResponse(
        {"metadata": {}, "items": await service_of(request).events(user, "applications", ns, name)}
    )


@endpoint(
    "GET",
    "/api/v1/stream/applications",
    "Server-Sent Events: the Applications the user may get (?name=, ?appNamespace=, ?projects=)",
)
async def stream_applications(request: Request) -> Response:
    user = await user_of(request)
    service = service_of(request)
    spec = KINDS["applications"]
    only_name = request.query_params.get("name")
    filters = _filters(request)

    def wanted(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if only_name and meta.get("name") != only_name:
            return False
        if only_name and meta.get("namespace") != _app_ns(request):
            return False
        if not filter_objects(spec.kind, [obj], filters):
            return False
        return service.can(user, spec.resource, "get", service.object_of(spec, obj))

    async def events() -> AsyncIterator[str]:
        async with service.state.listen() as queue:
            for obj in service.state.items("applications"):
                if wanted(obj):
                    yield _sse({"result": {"type": "ADDED", "application": obj}})
            while service.state.listening(queue):
                try:
                    change = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if change is None:
                    return
                if change.path == "applications" and wanted(change.obj):
                    # Permissions may have changed since: checked per event, per user.
                    yield _sse({"result": {"type": change.type, "application": change.obj}})

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(value: Any) -> str:
    return f"data: {json.dumps(value, separators=(',', ':'))}\n\n"


# -- the other kinds ----------------------------------------------------------------------


def _kind_routes() -> None:
    for path, spec in KINDS.items():
        if path == "applications":
            continue

        async def list_kind(request: Request, path: str = path) -> Response:
            user = await user_of(request)
            return JSONResponse(_list(request, user, path))

        async def get_kind(request: Request, path: str = path) -> Response:
            user = await user_of(request)
            ns, name = _names(request.path_params["namespace"], request.path_params["name"])
            return JSONResponse(service_of(request).get(user, path, ns, name))

        async def kind_events(request: Request, path: str = path) -> Response:
            user = await user_of(request)
            ns, name = _names(request.path_params["namespace"], request.path_params["name"])
            return JSONResponse(
                {"metadata": {}, "items": await service_of(request).events(user, path, ns, name)}
            )

        endpoint(
            "GET",
            f"/api/v1/{path}",
            f"List {spec.kind}s (filters and pagination as for applications)",
        )(list_kind)
        endpoint("GET", f"/api/v1/{path}/{{namespace}}/{{name}}", f"Get a {spec.kind}")(get_kind)
        endpoint(
            "GET", f"/api/v1/{path}/{{namespace}}/{{name}}/events", f"Events of a {spec.kind}"
        )(kind_events)
        if spec.flux is None:
            continue
        for action in ("reconcile", "suspend", "resume"):

            async def act(request: Request, path: str = path, action: str = action) -> Response:
                user = await user_of(request)
                ns, name = _names(request.path_params["namespace"], request.path_params["name"])
                return JSONResponse(
                    await service_of(request).flux_action(user, path, ns, name, action)
                )

            summary = {
                "reconcile": "Ask for a reconcile now (reconcile.fluxcd.io/requestedAt)",
                "suspend": "Suspend (spec.suspend: true)",
                "resume": "Resume and reconcile",
            }[action]
            endpoint(
                "POST", f"/api/v1/{path}/{{namespace}}/{{name}}/{action}", f"{spec.kind}: {summary}"
            )(act)


_kind_routes()


# -- the document -------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``ENDPOINTS``."""
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in _path_params(e.path)
        ]
        op: dict[str, Any] = {
            "summary": e.summary,
            "operationId": e.method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", e.path),
            "parameters": params,
            "responses": {
                "200": {"description": "OK (JSON)"},
                "400": {"description": "bad request"},
                "401": {"description": "no valid session"},
                "403": {"description": "permission denied or CSRF failure"},
                "404": {"description": "not found (or not allowed to get)"},
                "422": {"description": "malformed JSON or fields"},
            },
        }
        if e.body:
            op["requestBody"] = {
                "description": e.body,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        if e.auth:
            op["security"] = [{"bearer": []}, {"cookie": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "gitsail API", "version": "v1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE},
            }
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


async def openapi_json(_request: Request) -> Response:
    return JSONResponse(openapi())


async def docs_page(_request: Request) -> Response:
    rows = "".join(
        f"<tr><td><code>{e.method}</code></td><td><code>{e.path}</code></td><td>{e.summary}</td></tr>"
        for e in ENDPOINTS
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>gitsail API</title>"
        "<link rel=stylesheet href=/static/app.css></head><body><main><h1>gitsail API v1</h1>"
        "<p>Machine-readable: <a href=/api/docs/openapi.json>openapi.json</a>. Authenticate "
        "with <code>POST /api/v1/session</code> and send "
        "<code>Authorization: Bearer TOKEN</code>.</p><table class=grid><thead><tr>"
        f"<th>Method</th><th>Path</th><th>What</th></tr></thead><tbody>{rows}</tbody></table>"
        "</main></body></html>"
    )


def _wrap(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            result: Response = await handler(request)
            return result
        except ApiError as exc:
            return error_response(exc)

    wrapped.__name__ = handler.__name__
    return wrapped


def api_routes() -> list[Route]:
    # Fixed paths before parameterized ones (``/applications/{name}/sync`` before ``{name}``).
    ordered = sorted(ENDPOINTS, key=lambda e: e.path.count("{"))
    routes = [Route(e.path, _wrap(e.handler), methods=[e.method]) for e in ordered]
    routes += [
        Route("/api/docs", docs_page),
        Route("/api/docs/openapi.json", openapi_json),
    ]
    return routes
