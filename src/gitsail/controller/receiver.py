"""Flux's Receiver webhooks: ``POST /hook/<sha256(token+name+namespace)>``.

A request goes through, in this order (nothing about a payload is looked at before its
sender is proven):

1. the bounds every webhook endpoint shares (``WebhookGate``: declared length, one of the
   concurrent slots, then the body streamed with a cap and a deadline);
2. the path: looked up in an index built from two kinds of watches, never from a LIST or
   GET per request: a cluster-wide watch of Receivers, and one watch per Secret a
   Receiver names (a field selector on its name, so no other Secret is held in memory).
   The index maps each Receiver's path, computed from its token as Flux does, to the
   Receiver and its token; it is rebuilt when one of those watches has moved. An unknown
   path is 404 before the body is read; a suspended Receiver is 503;
3. verification by ``spec.type`` (``verify_delivery``, pure): ``github`` HMAC-SHA256 of
   the body in ``X-Hub-Signature-256`` (SHA-1 ``X-Hub-Signature`` when that is all there
   is), ``gitlab`` ``X-Gitlab-Token``, ``generic-hmac`` ``X-Signature`` with ``sha1``,
   ``sha256`` or ``sha512``; constant-time comparisons, 401 when they fail; ``generic``
   has only the secret path;
4. the event filter: a GitHub ``ping`` is answered (200, nothing reconciled, even when
   ``spec.events`` does not list it, so that creating the hook succeeds), an event not in
   ``spec.events`` is answered 200 with ``ignored`` and reconciles nothing (Flux answers
   400; the sender did nothing wrong);
5. replays (409): the forge's delivery id, and for a GitHub push the digest of the
   signed body (it names the commit), as for ``/api/webhook``. A generic-hmac body is
   not remembered: CI tools send the same body to ask again, and a replay can only ask
   for a reconcile;
6. each resource is annotated with ``reconcile.fluxcd.io/requestedAt: <RFC 3339 now>``
   (a merge patch; ``name: "*"`` lists the kind by ``matchLabels`` first, after
   verification only). The answer lists what was requested and what was missing; when
   the apiserver refuses or is unreachable the answer is 503 and the delivery is not
   remembered, so the sender may retry.

``FluxReceivers.start`` starts the watches; the route starts them on first use when
nobody did, and answers 503 until they are listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gitsail.controller.webhook import WebhookError, check_hmac, delivery_id_keys
from gitsail.controller.webhook_gate import WebhookGate
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_receiver import (
    API_VERSION,
    KIND,
    REQUESTED_AT,
    Receiver,
    ResourceRef,
    parse_receiver,
    receiver_token,
    rfc3339_nano,
)
from gitsail.kinds.status import Transient
from gitsail.kube import Kube, KubeError, NotFound, WatchCache, WatchEvent
from gitsail.kube.cache import NamedSource

__all__ = ["Delivery", "FluxReceivers", "ReceiverIndex", "verify_delivery"]

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{64}")
# Annotations sent at once for one delivery (one PATCH each).
ANNOTATE_CONCURRENCY = 8
FIELD_MANAGER = "gitsail-receiver"
# Seconds between attempts to start the watches after one failed.
START_RETRY = 10.0
# Metrics label per receiver type (the webhook metric has a closed set of providers).
_METRIC_PROVIDER = {
    "github": "github",
    "gitlab": "gitlab",
    "generic": "generic",
    "generic-hmac": "generic",
}


@dataclass(frozen=True)
class Delivery:
    """A verified request: the forge's event type ("" when the type has none), and whether
    to act on it (``False``: a ping, or an event ``spec.events`` does not list)."""

    event: str
    act: bool
    note: str = ""


def verify_delivery(
    receiver: Receiver, token: str, headers: Mapping[str, str], body: bytes
) -> Delivery:
    """Check a request against ``receiver``'s type and token; ``WebhookError(401)`` when it
    is not proven. ``headers`` are lower-case."""
    kind = receiver.type
    if kind == "generic":
        return Delivery("", True)
    if kind == "generic-hmac":
        check_hmac(
            "generic-hmac",
            "X-Signature",
            headers.get("x-signature"),
            body,
            token,
            ("sha1", "sha256", "sha512"),
        )
        return Delivery("", True)
    if kind == "github":
        if headers.get("x-hub-signature-256") or not headers.get("x-hub-signature"):
            value = headers.get("x-hub-signature-256")
            check_hmac("GitHub", "X-Hub-Signature-256", value, body, token)
        else:
            value = headers.get("x-hub-signature")
            check_hmac("GitHub", "X-Hub-Signature", value, body, token, ("sha1",))
        event = headers.get("x-github-event", "").strip()
        if event.lower() == "ping":
            return Delivery(event, False, "pong")
        return _filtered(receiver, event)
    if kind == "gitlab":
        given = headers.get("x-gitlab-token", "")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise WebhookError(401, "GitLab webhook token (X-Gitlab-Token) is missing or wrong")
        return _filtered(receiver, headers.get("x-gitlab-event", "").strip())
    raise WebhookError(501, f"Receiver type {kind} is not implemented")  # parse refuses it


def _filtered(receiver: Receiver, event: str) -> Delivery:
    if receiver.wants(event):
        return Delivery(event, True)
    return Delivery(event, False, f"event {event!r} is not in spec.events")


def delivery_keys(
    receiver: Receiver, delivery: Delivery, headers: Mapping[str, str], body: bytes
) -> tuple[str, ...]:
    """What a replay of this delivery would share (see the module docstring)."""
    label = f"receiver:{receiver.namespace}/{receiver.name}"
    keys = delivery_id_keys(label, headers)
    if receiver.type == "github" and delivery.event.lower() == "push":
        keys += (f"{label}:body:{hashlib.sha256(body).hexdigest()}",)
    return keys


# -- the index ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    receiver: Receiver
    token: str = field(repr=False)  # never in a log line or an error


class ReceiverIndex:
    """Webhook path → (Receiver, token), from watches (see the module docstring)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.receivers: WatchCache | None = None
        self.secrets: dict[tuple[str, str], WatchCache] = {}
        self._paths: dict[str, _Entry] = {}
        self._built_from: tuple[str, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.receivers is not None

    async def start(self) -> None:
        """List Receivers and their Secrets, then follow them (idempotent)."""
        async with self._start_lock:
            if self.receivers is not None:
                return
            cache = WatchCache(self.kube, API_VERSION, KIND)
            await cache.start()
            events = cache.subscribe()
            self.receivers = cache
            await self._sync_secret_watches()
            self._task = asyncio.create_task(self._follow(events), name="receiver-index")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        caches = list(self.secrets.values())
        if self.receivers is not None:
            caches.append(self.receivers)
        self.receivers = None
        self.secrets = {}
        for cache in caches:
            await cache.stop()

    def lookup(self, path: str) -> _Entry | None:
        if self.receivers is None:
            return None
        signature = self._signature()
        if signature != self._built_from:
            self._paths = self._build()
            self._built_from = signature
        return self._paths.get(path)

    async def secret(self, namespace: str, name: str) -> dict[str, object] | None:
        """The Secret from its watch (for ``ReceiverReconciler``), or a GET when unwatched."""
        cache = self.secrets.get((namespace, name))
        if cache is None:
            return await self.kube.get("v1", "Secret", name, namespace)
        return cache.get(namespace, name)

    def _signature(self) -> tuple[str, ...]:
        # Every event and relist moves a cache's resourceVersion: a cheap "has it changed".
        assert self.receivers is not None
        return (
            self.receivers.resource_version,
            *(f"{k}={c.resource_version}" for k, c in sorted(self.secrets.items())),
        )

    def _build(self) -> dict[str, _Entry]:
        assert self.receivers is not None
        paths: dict[str, _Entry] = {}
        for obj in self.receivers.items():
            try:
                receiver = parse_receiver(obj)
            except SpecError:
                continue  # its status says why (ReceiverReconciler)
            cache = self.secrets.get((receiver.namespace, receiver.secret_name))
            secret = cache.get(receiver.namespace, receiver.secret_name) if cache else None
            try:
                token = receiver_token(secret, receiver)
            except Transient:
                continue
            paths[receiver.path(token)] = _Entry(receiver, token)
        return paths

    async def _follow(self, events: asyncio.Queue[WatchEvent]) -> None:
        while True:
            await events.get()
            while not events.empty():  # a burst of changes: one pass
                events.get_nowait()
            await self._sync_secret_watches()

    async def _sync_secret_watches(self) -> None:
        """One Secret watch per Secret a valid Receiver names; stop the others."""
        assert self.receivers is not None
        wanted: set[tuple[str, str]] = set()
        for obj in self.receivers.items():
            with contextlib.suppress(SpecError):  # names validated before they are watched
                receiver = parse_receiver(obj)
                wanted.add((receiver.namespace, receiver.secret_name))
        for key in sorted(set(self.secrets) - wanted):
            await self.secrets.pop(key).stop()
        for namespace, name in sorted(wanted - set(self.secrets)):
            try:
                cache = WatchCache(NamedSource(self.kube, name), "v1", "Secret", namespace)
                await cache.start()
            except KubeError as exc:
                log.warning(
                    "cannot watch Secret %s/%s for a Receiver (%s); its webhook is 404 "
                    "until the next change of a Receiver",
                    namespace,
                    name,
                    exc,
                )
                continue
            self.secrets[(namespace, name)] = cache


# -- the endpoint -------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class FluxReceivers:
    """The ``/hook/{digest}`` route over a ``ReceiverIndex``.

    ``kube`` is called once, when the index starts (the controller's client, which may
    not exist yet when the route is built).
    """

    def __init__(
        self,
        kube: Callable[[], Kube],
        gate: WebhookGate,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._kube = kube
        self.gate = gate
        self.clock = clock
        self._index: ReceiverIndex | None = None
        self._failed_at: float | None = None  # monotonic time the last start failed

    @property
    def kube(self) -> Kube:
        return self.index.kube

    @property
    def index(self) -> ReceiverIndex:
        if self._index is None:
            self._index = ReceiverIndex(self._kube())
        return self._index

    async def start(self) -> None:
        await self.index.start()

    async def stop(self) -> None:
        if self._index is not None:
            await self._index.stop()

    async def _start_once(self) -> None:
        """Start the index for a request; after a failure, at most once per
        ``START_RETRY`` seconds (a flood of requests is not a flood of LISTs)."""
        loading = WebhookError(
            503, "Receivers are not loaded yet; retry in a few seconds", retry_after=5
        )
        now = time.monotonic()
        if self._failed_at is not None and now - self._failed_at < START_RETRY:
            raise loading
        try:
            await self.index.start()
        except KubeError as exc:
            self._failed_at = now
            log.warning("cannot watch Receivers (is the Receiver CRD installed?): %s", exc)
            raise loading from None
        self._failed_at = None

    def route(self) -> Route:
        return Route("/hook/{digest}", self._hook, methods=["POST"])

    async def _hook(self, request: Request) -> Response:
        provider = "unknown"
        try:
            async with self.gate.admitted(request):
                entry = await self._find(request.path_params.get("digest", ""))
                provider = _METRIC_PROVIDER.get(entry.receiver.type, "unknown")
                return await self._handle(request, entry.receiver, entry.token, provider)
        except WebhookError as exc:
            return self.gate.refuse(request, provider, exc)

    async def _find(self, digest: str) -> _Entry:
        if not self.index.ready:
            await self._start_once()
        entry = self.index.lookup(f"/hook/{digest}") if _DIGEST.fullmatch(digest) else None
        if entry is None:
            raise WebhookError(404, "no ready Receiver has this webhook path")
        if entry.receiver.suspend:
            raise WebhookError(
                503,
                f"Receiver {entry.receiver.namespace}/{entry.receiver.name} is suspended",
                retry_after=60,
            )
        return entry

    async def _handle(
        self, request: Request, receiver: Receiver, token: str, provider: str
    ) -> Response:
        body = await self.gate.body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        delivery = verify_delivery(receiver, token, headers, body)
        subject = f"Receiver {receiver.namespace}/{receiver.name}"
        if not delivery.act:
            self.gate.metrics.count_webhook(provider, "ignored")
            log.info("%s: %s; nothing to reconcile", subject, delivery.note)
            return JSONResponse({"requested": [], "ignored": delivery.note})
        keys = delivery_keys(receiver, delivery, headers, body)
        if not self.gate.replays.claim(keys):
            raise WebhookError(409, "this delivery was already accepted; a replay is refused")
        try:
            requested, missing = await self._request(receiver)
        except KubeError as exc:
            self.gate.replays.release(keys)
            log.warning("%s: cannot request reconciles: %s", subject, exc)
            raise WebhookError(
                503, "the reconcile requests could not be recorded; retry", retry_after=5
            ) from None
        except BaseException:
            self.gate.replays.release(keys)
            raise
        self.gate.metrics.count_webhook(provider, "accepted")
        log.info(
            "%s: %s event; reconcile requested for %s%s",
            subject,
            delivery.event or receiver.type,
            ", ".join(requested) or "nothing",
            f" (missing: {', '.join(missing)})" if missing else "",
        )
        return JSONResponse({"requested": requested, "missing": missing})

    async def _request(self, receiver: Receiver) -> tuple[list[str], list[str]]:
        """Annotate every resource; (requested, missing) as ``Kind/namespace/name``."""
        stamp = rfc3339_nano(self.clock())
        targets: list[tuple[ResourceRef, str]] = []
        missing: list[str] = []
        for ref in receiver.resources:
            if ref.name != "*":
                targets.append((ref, ref.name))
                continue
            try:
                found = await self.kube.list(
                    ref.api_version, ref.kind, ref.namespace, label_selector=ref.label_selector
                )
            except NotFound:
                found = []
            if not found:
                missing.append(f"{ref.kind}/{ref.namespace}/*[{ref.label_selector}]")
            for obj in found:
                targets.append((ref, str((obj.get("metadata") or {}).get("name"))))
        slots = asyncio.Semaphore(ANNOTATE_CONCURRENCY)

        async def annotate(ref: ResourceRef, name: str) -> bool:
            async with slots:
                try:
                    await self.kube.merge_patch(
                        ref.api_version,
                        ref.kind,
                        name,
                        {"metadata": {"annotations": {REQUESTED_AT: stamp}}},
                        namespace=ref.namespace,
                        field_manager=FIELD_MANAGER,
                    )
                except NotFound:
                    return False
                return True

        done = await asyncio.gather(*(annotate(ref, name) for ref, name in targets))
        requested: list[str] = []
        for (ref, name), ok in zip(targets, done, strict=True):
            (requested if ok else missing).append(f"{ref.kind}/{ref.namespace}/{name}")
        return requested, missing
