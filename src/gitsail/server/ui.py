"""The web UI: pages rendered on the server (Jinja2), updated with htmx, live through SSE.

No build chain: the templates are in ``templates/``, the one script is htmx (vendored in
``static/``, see docs/ui.md for its origin) plus ``static/live.js`` (a dozen lines that turn
an ``EventSource`` message into an htmx refresh of the live parts of the page). Every page
and fragment goes through the same ``Service`` as the API: same sign-in, same RBAC, same
actions. Forms carry the session's CSRF token (a hidden field, and a header for htmx).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gitsail.kube import InvalidName, check_names
from gitsail.server.auth import SESSION_SECONDS, csrf_token
from gitsail.server.graph import app_graph, flux_graph
from gitsail.server.history import drift_rows
from gitsail.server.http import COOKIE, form_of, service_of, user_of
from gitsail.server.service import ApiError, User
from gitsail.server.state import KINDS
from gitsail.server.views import (
    FilterError,
    Filters,
    counts,
    filter_objects,
    paginate,
    resource_tree,
    summary,
)

__all__ = ["ui_routes"]

HERE = Path(__file__).parent
ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["q"] = lambda s: quote(str(s), safe="")
SYNC_VALUES = ("Synced", "OutOfSync", "Unknown")
HEALTH_VALUES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")


def _render(
    request: Request, template: str, http_status: int = 200, **context: Any
) -> HTMLResponse:
    html = ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=http_status)


def _context(request: Request, user: User) -> dict[str, Any]:
    service = service_of(request)
    return {
        "user": user,
        "csrf": csrf_token(service.signing_key(), user.claims.token_id),
        "hx": request.headers.get("hx-request") == "true",
    }


async def _guard(request: Request, handler: Any) -> Response:
    try:
        result: Response = await handler()
        return result
    except ApiError as exc:
        if exc.status == 401:
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return _render(request, "error.html", exc.status, message=exc.message, code=exc.status)


class _Form:
    """The first value of each field of a parsed form."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, key: str) -> str:
        values = self.fields.get(key) or [""]
        return values[0]

    def getlist(self, key: str) -> list[str]:
        return list(self.fields.get(key) or [])


def _names(namespace: str, name: str) -> tuple[str, str]:
    try:
        check_names("", "object", name, namespace)
    except InvalidName as exc:
        raise ApiError(400, str(exc)) from None
    return namespace, name


# -- sign in and out ------------------------------------------------------------------


def _sso_name(request: Request) -> str:
    """The SSO button's provider name ("" without SSO, or with a broken configuration)."""
    try:
        provider = service_of(request).oidc()
    except ApiError:
        return ""
    return provider.config.name if provider is not None else ""


async def login_page(request: Request) -> Response:
    return _render(
        request,
        "login.html",
        next=_safe_next(request.query_params.get("next")),
        sso=_sso_name(request),
    )


def _safe_next(value: str | None) -> str:
    """Only a local path: never a redirect to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/applications"


async def login_submit(request: Request) -> Response:
    try:
        form = _Form(await form_of(request))
    except ApiError as exc:
        return _render(
            request,
            "login.html",
            exc.status,
            error=exc.message,
            next="/applications",
            sso=_sso_name(request),
        )
    username, password = form.get("username"), form.get("password")
    target = _safe_next(form.get("next"))
    try:
        token, _ = await service_of(request).login(username, password)
    except ApiError as exc:
        return _render(
            request,
            "login.html",
            exc.status,
            error=exc.message,
            next=target,
            username=username,
            sso=_sso_name(request),
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        service_of(request).logout(user.claims)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return await _guard(request, run)


async def root(_request: Request) -> Response:
    return RedirectResponse("/applications", status_code=303)


# -- the app list ---------------------------------------------------------------------


async def applications(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        service = service_of(request)
        spec = KINDS["applications"]
        try:
            filters = Filters.parse(
                {k: request.query_params.getlist(k) for k in request.query_params}
            )
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None
        began = time.perf_counter()
        visible = service.visible(user, spec, service.state.items("applications"))
        everything = [summary(spec.kind, o) for o in visible]  # memoized: filter reuses
        rows = filter_objects(spec.kind, visible, filters)
        try:
            offset, limit = paginate(
                len(rows), request.query_params.get("offset"), request.query_params.get("limit")
            )
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None
        view = "tiles" if request.query_params.get("view") == "tiles" else "table"
        base = {k: v for k, v in request.query_params.multi_items() if k not in ("offset",)}
        context = {
            **_context(request, user),
            "rows": [r for _, r in rows[offset : offset + limit]],
            "total": len(rows),
            "offset": offset,
            "limit": limit,
            "view": view,
            "filters": filters,
            "counts": counts(r for _, r in rows),
            "projects": sorted({r["project"] for r in everything}),
            "namespaces": sorted({r["namespace"] for r in everything}),
            "sync_values": SYNC_VALUES,
            "health_values": HEALTH_VALUES,
            "query": urlencode(list(base.items())),
            "next_query": urlencode([*base.items(), ("offset", offset + limit)])
            if offset + limit < len(rows)
            else "",
            "prev_query": urlencode([*base.items(), ("offset", max(0, offset - limit))])
            if offset
            else "",
            "can_sync": lambda row: service.can(user, "applications", "sync", _obj(service, row)),
            "elapsed": 0.0,
        }
        template = (
            "apps_list.html"
            if context["hx"] and request.headers.get("hx-target") == "app-list"
            else "apps.html"
        )
        response = _render(request, template, **context)
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - began) * 1000:.1f}"
        return response

    return await _guard(request, run)


def _obj(service: Any, row: dict[str, str]) -> str:
    from gitsail.server.rbac import app_object

    return app_object(row["project"], row["namespace"], row["name"], service.control_namespace)


# -- one app --------------------------------------------------------------------------


async def application(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        service = service_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        obj = service.get(user, "applications", ns, name)
        spec = KINDS["applications"]
        tree = resource_tree(obj, await service.state.derived_items())
        status = obj.get("status") or {}
        row = summary("Application", obj)
        tree_view = "list" if request.query_params.get("tree") == "list" else "graph"
        context = {
            **_context(request, user),
            "app": obj,
            "row": row,
            "tree": tree["nodes"],
            "tree_view": tree_view,
            "graph": app_graph(row["name"], row["health"], row["sync"], tree["nodes"])
            if tree_view == "graph"
            else None,
            "status": status,
            "history": list(reversed(status.get("history") or [])),
            "operation": status.get("operationState") or {},
            "pending": bool(obj.get("operation")),
            "can_sync": service.can(user, spec.resource, "sync", service.object_of(spec, obj)),
            "can_delete": service.can(user, spec.resource, "delete", service.object_of(spec, obj)),
            "automated": ((obj.get("spec") or {}).get("syncPolicy") or {}).get("automated")
            is not None,
            "json": json.dumps,
        }
        part = request.query_params.get("part")
        if part == "live":
            return _render(request, "app_live.html", **context)
        return _render(request, "app.html", **context)

    return await _guard(request, run)


async def application_diff(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        service = service_of(request)
        comparison = await service.compare(user, ns, name)
        diffs = sorted(comparison.diffs, key=lambda d: d.key)
        mode = "split" if request.query_params.get("mode") == "split" else "unified"
        obj = service.get(user, "applications", ns, name)
        reported = ((obj.get("status") or {}).get("drift")) or []
        return _render(
            request,
            "app_diff.html",
            diffs=diffs,
            mode=mode,
            ns=ns,
            name=name,
            revision=comparison.artifact.revision,
            yaml=_yaml,
            drift=drift_rows(comparison.diffs, comparison.live, service.engine().field_manager),
            reported=[r for r in reported if isinstance(r, dict)][:500],
        )

    return await _guard(request, run)


def _yaml(obj: Any) -> str:
    import yaml

    if obj is None:
        return ""
    return str(yaml.safe_dump(obj, sort_keys=True, default_flow_style=False))


async def application_history_diff(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        try:
            ends = [int(request.query_params.get(k) or "") for k in ("from", "to")]
        except ValueError:
            raise ApiError(400, "from and to are ids of history entries") from None
        result = await service_of(request).revision_diff(user, ns, name, ends[0], ends[1])
        return _render(request, "history_diff.html", result=result)

    return await _guard(request, run)


async def application_logs(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        pod_ns, pod = _names(
            request.query_params.get("namespace") or "", request.query_params.get("podName") or ""
        )
        logs = await service_of(request).pod_logs(user, ns, name, pod_ns, pod, None, 1000)
        return _render(request, "logs.html", logs=logs)

    return await _guard(request, run)


async def application_events(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        events = await service_of(request).events(user, "applications", ns, name)
        return _render(request, "events.html", events=list(reversed(events)))

    return await _guard(request, run)


async def application_action(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)  # checks the CSRF token of a form post
        service = service_of(request)
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        action = request.path_params["action"]
        form = _Form(await form_of(request))
        if action == "sync":
            resources = []
            for value in form.getlist("resource"):
                group, _, rest = str(value).partition(":")
                kind, _, rest = rest.partition(":")
                rns, _, rname = rest.rpartition("/")
                resources.append({"group": group, "kind": kind, "namespace": rns, "name": rname})
            options = []
            if form.get("applyOutOfSyncOnly"):
                options.append("ApplyOutOfSyncOnly=true")
            body: dict[str, Any] = {
                "prune": bool(form.get("prune")),
                "dryRun": bool(form.get("dryRun")),
                "revision": form.get("revision") or None,
                "resources": resources or None,
                "strategy": {"apply": {"force": bool(form.get("force"))}},
            }
            if options:
                body["syncOptions"] = {"items": options}
            await service.sync(user, ns, name, body)
            message = "Sync requested"
        elif action == "refresh":
            await service.refresh(user, ns, name, hard=bool(form.get("hard")))
            message = "Refresh requested"
        elif action == "rollback":
            try:
                history_id = int(form.get("id"))
            except ValueError:
                raise ApiError(422, "id is the integer id of a history entry") from None
            await service.rollback(user, ns, name, history_id, bool(form.get("prune")), False)
            message = f"Rollback to {history_id} requested"
        elif action == "terminate":
            obj = await service.terminate(user, ns, name)
            phase = ((obj.get("status") or {}).get("operationState") or {}).get("phase")
            message = "Termination requested" if phase == "Terminating" else "Operation withdrawn"
        elif action == "delete":
            await service.delete(user, ns, name, bool(form.get("cascade")))
            return RedirectResponse("/applications", status_code=303)
        else:
            raise ApiError(404, f"no action {action}")
        if request.headers.get("hx-request"):
            return _render(request, "flash.html", message=message)
        return RedirectResponse(f"/applications/{quote(ns)}/{quote(name)}", status_code=303)

    return await _guard(request, run)


# -- Flux -------------------------------------------------------------------------------


async def flux(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        service = service_of(request)
        sections = []
        deliveries: list[dict[str, Any]] = []  # for the dependsOn graph
        for path in (
            "kustomizations",
            "helmreleases",
            "gitrepositories",
            "ocirepositories",
            "helmrepositories",
            "helmcharts",
        ):
            spec = KINDS[path]
            objs = service.visible(user, spec, service.state.items(path))
            rows = []
            for obj, row in filter_objects(spec.kind, objs, Filters()):
                deps = [
                    f"{d.get('namespace') or row['namespace']}/{d.get('name')}"
                    for d in (obj.get("spec") or {}).get("dependsOn") or []
                    if isinstance(d, dict)
                ]
                history = (obj.get("status") or {}).get("history") or []
                rows.append(
                    {
                        **row,
                        "depends": deps,
                        "history": history[:5] if isinstance(history, list) else [],
                        "path": path,
                    }
                )
            if spec.kind in ("Kustomization", "HelmRelease"):
                deliveries.extend(rows)
            sections.append(
                {
                    "path": path,
                    "kind": spec.kind,
                    "rows": rows,
                    "unavailable": path in service.state.unavailable,
                }
            )
        graph = flux_graph(deliveries) if deliveries else None
        return _render(
            request, "flux.html", **_context(request, user), sections=sections, graph=graph
        )

    return await _guard(request, run)


async def flux_action(request: Request) -> Response:
    async def run() -> Response:
        user = await user_of(request)
        path = request.path_params["kind"]
        if path not in KINDS or KINDS[path].flux is None:
            raise ApiError(404, f"no Flux kind {path}")
        ns, name = _names(request.path_params["namespace"], request.path_params["name"])
        action = request.path_params["action"]
        await service_of(request).flux_action(user, path, ns, name, action)
        if request.headers.get("hx-request"):
            return _render(request, "flash.html", message=f"{action} requested for {ns}/{name}")
        return RedirectResponse("/flux", status_code=303)

    return await _guard(request, run)


# -- live updates -----------------------------------------------------------------------


async def ui_stream(request: Request) -> Response:
    """``changed`` events naming the objects the user may get that changed (for htmx)."""

    async def run() -> Response:
        user = await user_of(request)
        service = service_of(request)
        only = request.query_params.get("object")  # "namespace/name" of one app

        async def events() -> AsyncIterator[str]:
            async with service.state.listen() as queue:
                yield "retry: 2000\n\n"
                while service.state.listening(queue):
                    try:
                        change = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if change is None:
                        return
                    spec = KINDS[change.path]
                    meta = change.obj.get("metadata") or {}
                    key = f"{meta.get('namespace')}/{meta.get('name')}"
                    if only and (change.path != "applications" or key != only):
                        continue
                    if not service.can(
                        user, spec.resource, "get", service.object_of(spec, change.obj)
                    ):
                        continue
                    data = json.dumps({"kind": change.path, "key": key})
                    yield f"event: changed\ndata: {data}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return await _guard(request, run)


def ui_routes() -> list[Route | Mount]:
    return [
        Route("/", root),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/applications", applications),
        Route("/applications/{namespace}/{name}", application),
        Route("/applications/{namespace}/{name}/diff", application_diff),
        Route("/applications/{namespace}/{name}/events", application_events),
        Route("/applications/{namespace}/{name}/history-diff", application_history_diff),
        Route("/applications/{namespace}/{name}/logs", application_logs),
        Route("/applications/{namespace}/{name}/{action}", application_action, methods=["POST"]),
        Route("/flux", flux),
        Route("/flux/{kind}/{namespace}/{name}/{action}", flux_action, methods=["POST"]),
        Route("/ui/stream", ui_stream),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
