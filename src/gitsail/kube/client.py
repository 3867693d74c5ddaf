"""``Kube``: one cluster, reached over one pooled ``httpx.AsyncClient``, objects as dicts.

Every call names its object by (apiVersion, kind, namespace, name). The kind is resolved to
a ``ResourceInfo`` through discovery (loaded on first use; on a miss it is refreshed once, at
most every ``rediscover_interval`` seconds, so a freshly installed CRD becomes usable without
a discovery storm), and the ``ResourceInfo`` builds the URL path.

All requests go through ``_send``: it retries what is safe to retry (``RetryPolicy``:
throttling, 5xx and lost connections for idempotent requests; server-side apply and merge
patches are idempotent, creates and JSON patches are not) and turns failures into the
``KubeError`` tree with a context such as ``apply apps/v1 Deployment shop/web``.

Names never reach a URL unchecked: ``ResourceInfo.path`` refuses a name or namespace that
Kubernetes would not accept (``InvalidName``, nothing sent), so ``.`` and ``..`` can never
turn an object request into one on the collection or the namespace.

Server-side apply is a PATCH with ``Content-Type: application/apply-patch+yaml``; the body is
JSON, which is YAML. ``dry_run=True`` adds ``dryRun=All``: the server runs admission and
defaulting and returns the object it would store, and stores nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from gitsail import codec
from gitsail.kube.auth import KubeAuth, ssl_context
from gitsail.kube.config import KubeConfig
from gitsail.kube.discovery import ResourceInfo, RESTMapper, check_names, fetch_mapper
from gitsail.kube.errors import (
    ConfigError,
    Conflict,
    Invalid,
    InvalidName,
    KubeError,
    NotFound,
    NotFoundKind,
    PreconditionFailed,
    error_from_response,
    error_from_transport,
)
from gitsail.kube.flow import FlowControl, RequestStats
from gitsail.kube.retry import RetryPolicy
from gitsail.kube.transport import Http11Transport
from gitsail.kube.watch import WatchEvent, parse_event
from gitsail.kube.written import WrittenVersions
from gitsail.model import Obj

__all__ = ["Kube", "service_account_user"]

log = logging.getLogger(__name__)
_CONTAINER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
LIST_PAGE_SIZE = 500
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def service_account_user(namespace: str, name: str) -> str:
    """``system:serviceaccount:<namespace>:<name>``, the user a ServiceAccount authenticates
    as; ``InvalidName`` unless ``namespace`` is a DNS label and ``name`` a DNS subdomain."""
    check_names("", "ServiceAccount", name, namespace)
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def _check_identity(what: str, value: str) -> str:
    """A user or group name fit for an ``Impersonate-*`` header: non-empty, printable ASCII
    (no CR/LF or other control characters, which could split or forge headers)."""
    if not value or not all(" " <= c <= "~" for c in value) or value != value.strip():
        raise ConfigError(
            f"impersonation: {what} {value!r} must be non-empty printable ASCII "
            "without control characters or surrounding spaces"
        )
    if value.startswith(SERVICE_ACCOUNT_PREFIX) and what == "user":
        namespace, _, name = value[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        service_account_user(namespace, name)  # the ServiceAccount form must be exact
    return value


@dataclass
class _Discovery:
    """Discovery state, shared by a ``Kube`` and its impersonating views."""

    mapper: RESTMapper | None = None
    discovered_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def describe(
    verb: str, api_version: str, kind: str, name: str | None, namespace: str | None
) -> str:
    """``apply apps/v1 Deployment ns/name``: the context prefix of error messages."""
    target = f"{namespace}/{name}" if namespace and name else (name or namespace or "")
    return f"{verb} {api_version} {kind}" + (f" {target}" if target else "")


# Sent with every request (the header set httpx's client sent, less its cookies).
_HEADERS = (
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", "gitsail"),
)


class Kube:
    """Async access to one cluster; use as ``async with Kube(config) as kube``."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        rediscover_interval: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        # Client-side flow control (``gitsail.kube.flow``): none unless given (the CLI's
        # one-shot commands); the controller passes its --kube-qps/--kube-burst budget.
        # Impersonating views share it: one budget per server, whoever a request acts as.
        self.flow = flow or FlowControl(0, 1)
        self.stats = RequestStats()
        # The versions this client's writes left objects of the tracked kinds at (views
        # share it): what lets a controller trust its watch cache after its own writes.
        self.written = WrittenVersions()
        self.rediscover_interval = rediscover_interval
        tls = ssl_context(config)
        self._auth = KubeAuth(config, tls)

        def pool() -> httpx.AsyncBaseTransport:
            # HTTP/1.1 on asyncio's transports (gitsail.kube.transport): httpcore's pool
            # cost about 1 ms of CPU per request. Every connection made is kept (for 120 s
            # idle): closing them re-does a TLS handshake for most requests under a burst
            # of dry runs, which was 14 % of the controller's CPU.
            return transport or Http11Transport(
                ssl_context=tls, max_connections=256, keepalive_expiry=120
            )

        # Requests go to the transport through ``_exchange``, not through an
        # httpx.AsyncClient: building and sending a request there (URL merging, cookies,
        # redirects, event hooks this client never uses) was a tenth of the controller's
        # CPU. The request and response stay httpx's, and so do the auth flow and errors.
        self._transport = pool()
        self._base = config.server.rstrip("/")
        self._timeout = httpx.Timeout(timeout)
        # Watches hold a connection each for their lifetime: in a pool of their own, so a
        # burst of requests never waits behind them for a connection slot. A stream keeps
        # httpx's client, which reads it piece by piece.
        self._watch_client = httpx.AsyncClient(
            base_url=config.server,
            auth=self._auth,
            timeout=self._timeout,
            headers=dict(_HEADERS),
            transport=pool(),
        )
        self._extensions = (
            {"sni_hostname": config.tls_server_name} if config.tls_server_name else {}
        )
        self._discovery = _Discovery()
        self._impersonation: tuple[tuple[str, str], ...] = ()
        self._owns_client = True

    def __repr__(self) -> str:
        who = "".join(f", {k}={v!r}" for k, v in self._impersonation)
        return f"Kube({self.config.server}, context={self.config.context!r}{who})"

    def impersonating(self, user: str, groups: Sequence[str] = ()) -> Kube:
        """A view of this cluster that acts as ``user`` (and ``groups``): every request
        carries ``Impersonate-User`` / ``Impersonate-Group``, so the API server authorizes
        it as that identity (the credentials here must be allowed to ``impersonate``).

        The view shares the connection pool, retry policy and discovery with this ``Kube``;
        closing it closes nothing (close the original). ``user`` is validated: printable
        ASCII without CR/LF; one that starts with ``system:serviceaccount:`` must be
        ``service_account_user(namespace, name)`` exactly. Without ``groups`` the API
        server adds a ServiceAccount's own groups itself.
        """
        headers = [("Impersonate-User", _check_identity("user", user))]
        headers += [("Impersonate-Group", _check_identity("group", g)) for g in groups]
        view = object.__new__(Kube)
        view.__dict__.update(self.__dict__)
        view._impersonation = tuple(headers)
        view._owns_client = False
        return view

    @property
    def impersonated_user(self) -> str | None:
        """The user this view impersonates, or None for the credentials' own identity."""
        return next((v for k, v in self._impersonation if k == "Impersonate-User"), None)

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_client:
            await self._transport.aclose()
            await self._watch_client.aclose()

    @property
    def namespace(self) -> str:
        """The context's default namespace, used for namespaced objects that name none."""
        return self.config.namespace

    # -- transport ----------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        context: str,
        idempotent: bool,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        """One request with retries; a non-2xx response raises its ``KubeError``."""
        headers = list(self._impersonation)
        if content_type:
            headers.append(("Content-Type", content_type))
        if accept:
            headers.append(("Accept", accept))
        key = "APPLY" if content_type == APPLY_PATCH else method
        if params and "dryRun" in params:
            key += "+dry-run"
        attempt = 0
        while True:
            await self.flow.acquire()
            self.stats.count(key)
            try:
                response = await self._exchange(method, path, params, body, headers)
            except httpx.TransportError as exc:
                # A refused connection never reached the server: safe to repeat anything.
                safe = idempotent or isinstance(exc, httpx.ConnectError)
                if not self.retry.should_retry(attempt, None, idempotent=safe):
                    raise error_from_transport(exc, context=context) from None
                delay = self.retry.delay(attempt)
                log.debug("%s: %s, retrying in %.1fs", context, type(exc).__name__, delay)
            else:
                if response.is_success:
                    return response
                code = response.status_code
                error = error_from_response(response, context=context)
                retry = self.retry.should_retry(attempt, code, idempotent=idempotent)
                if not retry or isinstance(error, Invalid):
                    raise error
                delay = self.retry.delay(attempt, response.headers.get("Retry-After"))
                if code == 429:
                    # The server sheds load (API Priority and Fairness): every request to it
                    # waits, not just this one; Retry-After is bounded by the retry policy.
                    self.stats.throttled_429 += 1
                    self.flow.pause(delay)
                    delay = 0.0  # the next acquire() waits out the pause
                log.debug("%s: HTTP %d, retrying in %.1fs", context, code, delay)
            attempt += 1
            if delay > 0:
                await asyncio.sleep(delay)

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: bytes | None,
        headers: list[tuple[str, str]],
    ) -> httpx.Response:
        """Send one request through the auth flow (a 401 may refresh an exec or file
        credential and send it once more) and read its response whole."""
        request = httpx.Request(
            method,
            httpx.URL(self._base + path, params=params),
            headers=[*(h for h in _HEADERS if h[0] not in {k for k, _ in headers}), *headers],
            content=body,
            extensions={"timeout": self._timeout.as_dict(), **self._extensions},
        )
        flow = self._auth.async_auth_flow(request)
        request = await flow.__anext__()
        while True:
            response = await self._transport.handle_async_request(request)
            response.request = request
            try:
                request = await flow.asend(response)
            except StopAsyncIteration:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return response
            except BaseException:
                await response.aclose()
                raise
            await response.aclose()  # answered again: the flow sends a new request

    async def _json(self, method: str, path: str, **kwargs: Any) -> Obj:
        response = await self._send(method, path, **kwargs)
        result: Obj = codec.loads(response.content)
        return result

    async def _write(
        self, info: ResourceInfo, name: str, ns: str | None, request: Awaitable[Obj]
    ) -> Obj:
        """Send a write to one object, recording the version it left the object at
        (``self.written``: nothing for kinds not tracked)."""
        written = self.written
        if not written.tracks(info.group, info.kind):
            return await request
        written.begin(info.group, info.kind, ns, name)
        result = await request
        written.record(info.group, info.kind, ns, name, result)
        return result

    # -- discovery ----------------------------------------------------------------------

    async def server_version(self) -> dict[str, Any]:
        """``GET /version``: gitVersion, major, minor, platform..."""
        return await self._json("GET", "/version", context="server version", idempotent=True)

    async def discover(self, refresh: bool = False) -> RESTMapper:
        """The RESTMapper, loaded on first call and reloaded when ``refresh`` is true."""
        state = self._discovery
        if state.mapper is not None and not refresh:
            return state.mapper
        async with state.lock:
            started = time.monotonic()
            if state.mapper is not None and (not refresh or state.discovered_at > started):
                return state.mapper
            return await self._load_mapper()

    async def _load_mapper(self) -> RESTMapper:
        async def get_json(path: str, accept: str) -> Any:
            response = await self._send(
                "GET", path, context=f"discover {path}", idempotent=True, accept=accept
            )
            return codec.loads(response.content)

        state = self._discovery
        mapper = await fetch_mapper(get_json)
        state.mapper, state.discovered_at = mapper, time.monotonic()
        if mapper.unavailable:
            log.warning(
                "discovery: unavailable group versions: %s",
                ", ".join(sorted(mapper.unavailable)),
            )
        return mapper

    @property
    def mapper(self) -> RESTMapper:
        """The RESTMapper from the last discovery; ``await kube.discover()`` first."""
        if self._discovery.mapper is None:
            raise RuntimeError("discovery has not run yet: await kube.discover() first")
        return self._discovery.mapper

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        """Like ``mapper.resource_for``, but on a miss refreshes discovery once (rate-limited
        to one refresh per ``rediscover_interval``) and looks again."""
        mapper = await self.discover()
        try:
            return mapper.resource_for(api_version, kind)
        except NotFoundKind:
            pass
        state = self._discovery
        async with state.lock:
            if state.mapper is mapper:
                if time.monotonic() - state.discovered_at >= self.rediscover_interval:
                    mapper = await self._load_mapper()
            else:
                mapper = self.mapper  # someone else refreshed while we waited
        return mapper.resource_for(api_version, kind)

    # -- reads --------------------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """The object, or None if it does not exist."""
        info = await self.resource_for(api_version, kind)
        ns = self._ns(info, namespace)
        context = describe("get", api_version, kind, name, ns)
        try:
            return await self._json("GET", info.path(name, ns), context=context, idempotent=True)
        except NotFound:
            return None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """Every matching object (all namespaces when ``namespace`` is None)."""
        items, _ = await self.list_with_version(
            api_version, kind, namespace, label_selector, field_selector
        )
        return items

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        page_size: int = LIST_PAGE_SIZE,
    ) -> tuple[builtins.list[Obj], str]:
        """Items (with apiVersion and kind filled in) and the list's resourceVersion.

        Pages with ``limit``/``continue``; every page is part of one consistent snapshot.
        """
        info = await self.resource_for(api_version, kind)
        context = describe("list", api_version, kind, None, namespace)
        params = {"limit": str(page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: builtins.list[Obj] = []
        resource_version = ""
        path = info.path(namespace=namespace)
        while True:
            page = await self._json("GET", path, params=params, context=context, idempotent=True)
            meta = page.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = meta.get("continue")
            if not token:
                return items, resource_version
            params["continue"] = str(token)

    async def list_metadata(
        self, info: ResourceInfo, namespace: str, *, limit: int
    ) -> tuple[builtins.list[Obj], bool]:
        """At most ``limit`` objects of ``info`` in ``namespace``, metadata only
        (``PartialObjectMetadataList``: a Secret's data is never read), each with its
        resource's ``apiVersion`` and ``kind``; and whether more were left out. One request."""
        check_names(info.group, info.kind, None, namespace)
        context = describe("list", info.api_version, info.kind, None, namespace)
        page = await self._json(
            "GET",
            info.path(namespace=namespace),
            params={"limit": str(max(1, limit))},
            context=context,
            idempotent=True,
            accept=METADATA_LIST_ACCEPT,
        )
        items: builtins.list[Obj] = []
        for item in (page.get("items") or [])[: max(1, limit)]:
            if isinstance(item, dict):
                meta = item.get("metadata") or {}
                items.append({"apiVersion": info.api_version, "kind": info.kind, "metadata": meta})
        return items, bool((page.get("metadata") or {}).get("continue"))

    # -- writes -------------------------------------------------------------------------

    async def apply(
        self,
        obj: Obj,
        field_manager: str = "gitsail",
        force: bool = False,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> Obj:
        """Server-side apply ``obj``; returns the object as stored (or as it would be)."""
        info, name, ns = await self._locate(obj)
        params = _write_params(field_manager, field_validation, dry_run)
        if force:
            params["force"] = "true"
        verb = "apply (dry run)" if dry_run else "apply"
        request = self._json(
            "PATCH",
            info.path(name, ns),
            params=params,
            body=_dump(obj),
            content_type=APPLY_PATCH,
            context=describe(verb, info.api_version, info.kind, name, ns),
            idempotent=True,
        )
        return await (request if dry_run else self._write(info, name, ns, request))

    async def create(
        self,
        obj: Obj,
        dry_run: bool = False,
        field_manager: str = "gitsail",
        field_validation: str = "Strict",
    ) -> Obj:
        """POST ``obj`` (``metadata.generateName`` works); Conflict if it exists."""
        info, name, ns = await self._locate(obj, need_name=False)
        params = _write_params(field_manager, field_validation, dry_run)
        request = self._json(
            "POST",
            info.path(namespace=ns),
            params=params,
            body=_dump(obj),
            content_type="application/json",
            context=describe("create", info.api_version, info.kind, name or None, ns),
            idempotent=False,
        )
        # A generated name is not known before: nothing of ours can be cached under it.
        return await (request if dry_run or not name else self._write(info, name, ns, request))

    async def proxy_service(
        self,
        method: str,
        namespace: str,
        service: str,
        port: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        max_bytes: int = 1 << 20,
    ) -> bytes:
        """``method`` ``path`` on a Service through the API server's service proxy
        (``services/http:<service>:<port>/proxy<path>``); the answer's body, at most
        ``max_bytes``. A non-2xx answer raises its ``KubeError`` (409 is ``Conflict``)."""
        check_names("", "Service", service, namespace)
        if not port or not all(c.isalnum() or c == "-" for c in port):
            raise InvalidName("port", port, "a port name or number", kind="Service")
        segments = path.split("/")[1:]
        if (
            not path.startswith("/")
            or any(s in (".", "..") for s in segments)
            or any(c in path for c in "?#%\\")
        ):
            raise InvalidName(
                "path",
                path,
                "an absolute path without '.' or '..' segments, '?', '#', '%' or '\\'",
                kind="Service",
            )
        target = f"/api/v1/namespaces/{namespace}/services/http:{service}:{port}/proxy{path}"
        response = await self._send(
            method,
            target,
            body=body,
            content_type=content_type,
            accept="*/*",
            context=f"{method} {path} on service {namespace}/{service}",
            idempotent=method == "GET",
        )
        if len(response.content) > max_bytes:
            raise KubeError(
                413, "TooLarge", f"service {namespace}/{service} answered over {max_bytes} bytes"
            )
        return response.content

    async def pod_logs(
        self,
        name: str,
        namespace: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        limit_bytes: int = 1 << 20,
    ) -> str:
        """``GET pods/<name>/log``: the Pod's log text (the API server asks the kubelet; a
        cluster without one answers an error, raised as its ``KubeError``). At most
        ``limit_bytes``, the last ``tail_lines`` lines when given."""
        check_names("", "Pod", name, namespace)
        params = {"limitBytes": str(max(1, limit_bytes))}
        if container:
            if not _CONTAINER.fullmatch(container):
                raise InvalidName("container", container, "a DNS label", kind="Pod")
            params["container"] = container
        if tail_lines is not None:
            params["tailLines"] = str(max(0, tail_lines))
        response = await self._send(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{name}/log",
            params=params,
            accept="text/plain",
            context=f"logs of pod {namespace}/{name}",
            idempotent=True,
        )
        return response.content[:limit_bytes].decode("utf-8", errors="replace")

    async def create_subresource(
        self,
        api_version: str,
        kind: str,
        name: str,
        subresource: str,
        body: Obj,
        namespace: str | None = None,
    ) -> Obj:
        """POST ``body`` to a subresource, e.g. ``serviceaccounts/<name>/token`` with a
        TokenRequest or ``pods/<name>/eviction`` with an Eviction; returns the answer."""
        info = await self.resource_for(api_version, kind)
        ns = self._ns(info, namespace)
        return await self._json(
            "POST",
            info.path(name, ns, subresource),
            body=_dump(body),
            content_type="application/json",
            context=describe(f"create {subresource} of", api_version, kind, name, ns),
            idempotent=False,
        )

    async def replace(
        self,
        obj: Obj,
        dry_run: bool = False,
        field_manager: str = "gitsail",
        field_validation: str = "Strict",
    ) -> Obj:
        """PUT ``obj``; without a resourceVersion the live one is fetched first (so the
        replace is unconditional), with one it is an optimistic update (Conflict if stale)."""
        info, name, ns = await self._locate(obj)
        context = describe("replace", info.api_version, info.kind, name, ns)
        if not (obj.get("metadata") or {}).get("resourceVersion"):
            live = await self._json("GET", info.path(name, ns), context=context, idempotent=True)
            obj = {
                **obj,
                "metadata": {
                    **obj["metadata"],
                    "resourceVersion": live["metadata"]["resourceVersion"],
                },
            }
        params = _write_params(field_manager, field_validation, dry_run)
        request = self._json(
            "PUT",
            info.path(name, ns),
            params=params,
            body=_dump(obj),
            content_type="application/json",
            context=context,
            idempotent=True,
        )
        return await (request if dry_run else self._write(info, name, ns, request))

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj:
        """JSON merge patch (RFC 7386) of the object or its subresource (e.g. ``status``)."""
        return await self._patch(
            api_version,
            kind,
            name,
            namespace,
            subresource,
            patch,
            content_type=MERGE_PATCH,
            verb="merge-patch",
            params={"fieldManager": field_manager},
            idempotent=True,
        )

    async def json_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        ops: builtins.list[dict[str, Any]],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        """JSON patch (RFC 6902); use a ``test`` op to make it conditional."""
        return await self._patch(
            api_version,
            kind,
            name,
            namespace,
            subresource,
            ops,
            content_type=JSON_PATCH,
            verb="json-patch",
            params=None,
            idempotent=False,
        )

    async def _patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        subresource: str | None,
        body: Any,
        *,
        content_type: str,
        verb: str,
        params: dict[str, str] | None,
        idempotent: bool,
    ) -> Obj:
        """One PATCH of the object or its subresource, recorded in ``written``."""
        info = await self.resource_for(api_version, kind)
        ns = self._ns(info, namespace)
        what = f"{verb} {subresource} of" if subresource else verb
        request = self._json(
            "PATCH",
            info.path(name, ns, subresource),
            params=params,
            body=_dump(body),
            content_type=content_type,
            context=describe(what, api_version, kind, name, ns),
            idempotent=idempotent,
        )
        return await self._write(info, name, ns, request)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = "Foreground",
        dry_run: bool = False,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> bool:
        """Delete the object; False if it was already gone. With ``Foreground`` the object
        stays (with a deletionTimestamp) until its dependents are gone.

        ``preconditions`` (``uid`` and/or ``resourceVersion``, as the caller last saw the
        object) make the server delete only that very object, unchanged since: if it was
        replaced or modified in between, nothing is deleted and ``PreconditionFailed``
        (a ``Conflict``) is raised. A precondition without a value (the caller never saw a
        uid) refuses the same way, without a request: it never becomes an unconditional
        delete.
        """
        info = await self.resource_for(api_version, kind)
        ns = self._ns(info, namespace)
        context = describe("delete", api_version, kind, name, ns)
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            options["propagationPolicy"] = propagation
        if dry_run:
            options["dryRun"] = ["All"]
        if preconditions:
            unknown = set(preconditions) - {"uid", "resourceVersion"}
            if unknown:
                raise ValueError(f"{context}: unknown preconditions {sorted(unknown)}")
            empty = sorted(k for k, v in preconditions.items() if not v)
            if empty:
                raise PreconditionFailed(
                    409,
                    "Conflict",
                    f"not deleted: no {' or '.join(empty)} was read to make the delete "
                    "conditional on",
                    context=context,
                )
            options["preconditions"] = {k: str(v) for k, v in preconditions.items()}
        if not dry_run and self.written.tracks(info.group, info.kind):
            # A delete sets deletionTimestamp (finalizers) or removes: no copy is current.
            self.written.begin(info.group, info.kind, ns, name)
        try:
            await self._send(
                "DELETE",
                info.path(name, ns),
                body=_dump(options),
                content_type="application/json",
                context=context,
                idempotent=True,
            )
        except NotFound:
            return False
        except Conflict as exc:
            if "preconditions" not in options:
                raise
            expected = ", ".join(f"{k} {v}" for k, v in sorted(options["preconditions"].items()))
            raise PreconditionFailed(
                exc.code,
                exc.reason,
                f"not deleted: the object was replaced or changed since it was read "
                f"(expected {expected}): {exc.message}",
                exc.status,
                context=context,
            ) from None
        return True

    # -- watch --------------------------------------------------------------------------

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream.

        Without a resource_version the server first sends ADDED for every existing object.
        Bookmarks are requested. An ERROR event raises (``Gone`` for 410: relist).
        """
        info = await self.resource_for(api_version, kind)
        context = describe("watch", api_version, kind, None, namespace)
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        # The server holds the stream open: no read timeout beyond the requested one.
        read = None if timeout_seconds is None else timeout_seconds + 30.0
        timeout = httpx.Timeout(self._watch_client.timeout.connect or 30.0, read=read)
        request = self._watch_client.build_request(
            "GET",
            info.path(namespace=namespace),
            params=params,
            headers=list(self._impersonation),
            timeout=timeout,
            extensions=self._extensions,
        )
        await self.flow.acquire()
        self.stats.count("WATCH")
        try:
            response = await self._watch_client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, context=context) from None
        try:
            if not response.is_success:
                await response.aread()
                raise error_from_response(response, context=context)
            async for line in response.aiter_lines():
                if line.strip():
                    yield parse_event(line, api_version=api_version, kind=kind, context=context)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, context=context) from None
        finally:
            await response.aclose()

    # -- helpers ------------------------------------------------------------------------

    def _ns(self, info: ResourceInfo, namespace: str | None) -> str | None:
        if not info.namespaced:
            return None
        return namespace or self.namespace

    async def _locate(
        self, obj: Obj, *, need_name: bool = True
    ) -> tuple[ResourceInfo, str, str | None]:
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not api_version or not kind:
            raise KubeError(
                0, "BadRequest", "object has no apiVersion or kind", context=f"object {name or '?'}"
            )
        if need_name and not name:
            raise KubeError(
                0, "BadRequest", "object has no metadata.name", context=f"{api_version} {kind}"
            )
        info = await self.resource_for(api_version, kind)
        ns = self._ns(info, meta.get("namespace"))
        # A create names its object in the body, not the URL: checked here all the same.
        check_names(info.group, info.kind, name or None, ns)
        return info, name, ns


def _write_params(field_manager: str, field_validation: str, dry_run: bool) -> dict[str, str]:
    params = {"fieldManager": field_manager, "fieldValidation": field_validation}
    if dry_run:
        params["dryRun"] = "All"
    return params


def _dump(body: Any) -> bytes:
    return codec.dumps(body)
