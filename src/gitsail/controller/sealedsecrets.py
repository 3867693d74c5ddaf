"""Sealed Secrets on the controller: the ``SealedSecret`` kind, its keys and its endpoints.

``SealedSecrets`` holds the ``KeyStore`` of the key namespace. ``kind(ctx)`` is the
``KindFactory`` the controller builds when it starts leading: it starts the key renewal task
(a key at once when there is none, then a new one every renewal period, as the Bitnami
controller does) and returns the reconciler. ``routes()`` are the endpoints kubeseal and
``gitsail seal`` call through the API server's service proxy, served by every replica:

- ``GET /v1/cert.pem``: the newest certificate (``application/x-pem-file``);
- ``POST /v1/verify``: a SealedSecret; 200 when it decrypts, 409 when it does not;
- ``POST /v1/rotate``: a SealedSecret re-sealed with the newest key (JSON).

The two POSTs are an oracle on the keys, so, like upstream, they are rate-limited (2 per
second, burst 2, process-wide) and their bodies are bounded; nothing they answer carries a
plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults
from gitsail.controller.sealedsecrets_metrics import KeyUsage
from gitsail.diff.sealed import Opened, open_with_ring
from gitsail.kinds.sealedsecret import API_VERSION, KIND, SealedSecretReconciler
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets.keys import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_NAMESPACE,
    DEFAULT_RENEW_PERIOD,
    KeyRing,
)
from gitsail.secrets.keystore import KeyStore
from gitsail.secrets.sealedsecret import reencrypt, unsealed_values
from gitsail.secrets.sealing import SealingError

__all__ = ["MAX_BODY", "SealedSecrets", "SealedSecretsOptions"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class SealedSecretsOptions:
    key_namespace: str = DEFAULT_NAMESPACE
    key_prefix: str = DEFAULT_KEY_PREFIX
    renew_period: timedelta = DEFAULT_RENEW_PERIOD
    key_size: int = 4096
    common_name: str = ""
    accept_v1_data: bool = True
    cutoff: datetime | None = None  # upstream --key-cutoff-time
    # /v1/verify and /v1/rotate: requests per second and burst (upstream --rate-limit*)
    rate_limit: float = 2.0
    rate_limit_burst: int = 2


class _TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _SealedSecretKind(KindDefaults):
    def __init__(
        self,
        inner: SealedSecretReconciler,
        ctx: KindContext,
        store: KeyStore | None = None,
        keys_seen: Callable[[KeyRing], None] = lambda _ring: None,
    ) -> None:
        self.keys_seen = keys_seen
        self.inner = inner
        self.api = KindAPI(API_VERSION, KIND)
        self.control_namespace = ctx.settings.control_namespace
        self.store = store
        self.usage = KeyUsage(ctx.metrics.registry)

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        after = await self.inner.reconcile(obj, reasons)
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            self.usage.forget(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        elif self.store is not None:
            try:
                ring = await self.store.ring()
                self.keys_seen(ring)
                await asyncio.to_thread(self.usage.observe, obj, ring)
            except (KubeError, SealingError) as exc:
                log.debug("key usage of SealedSecret %s: %s", meta.get("name"), exc)
        return after


class SealedSecrets:
    """See the module docstring."""

    def __init__(self, kube: Kube, options: SealedSecretsOptions | None = None) -> None:
        self.options = options or SealedSecretsOptions()
        self.store = KeyStore(
            kube,
            namespace=self.options.key_namespace,
            prefix=self.options.key_prefix,
            renew_period=self.options.renew_period,
            key_size=self.options.key_size,
            common_name=self.options.common_name,
            cutoff=self.options.cutoff,
        )
        self._renewal: asyncio.Task[None] | None = None
        self._ring = KeyRing(())  # the last keys read: opens SealedSecrets for the diff
        self._bucket = _TokenBucket(self.options.rate_limit, self.options.rate_limit_burst)

    # -- the kind ------------------------------------------------------------------------

    def kind(self, ctx: KindContext) -> _SealedSecretKind:
        if self._renewal is not None:
            self._renewal.cancel()
        self._renewal = asyncio.create_task(self._renew_keys(), name="sealed-secrets-keys")
        # Argo CD Applications delivering SealedSecrets: a value re-sealed without a change of
        # plaintext compares as in sync (gitsail.diff.sealed).
        ctx.engine.open_sealed = self.open_sealed

        async def event(obj: Obj, type_: str, reason: str, message: str) -> None:
            await ctx.events.record(obj, reason=reason, message=message, type=type_)

        inner = SealedSecretReconciler(
            ctx.kube,
            lambda fresh: self.store.ring(fresh=fresh),
            events=event,
            accept_v1_data=self.options.accept_v1_data,
        )
        return _SealedSecretKind(inner, ctx, self.store, self._keys_seen)

    async def _renew_keys(self) -> None:
        while True:
            try:
                ring = await self.store.ensure()
                self._ring = ring
            except (KubeError, OSError) as exc:
                log.warning("sealing keys in %s: %s", self.options.key_namespace, exc)
                await asyncio.sleep(30)
                continue
            newest = ring.newest
            period = self.options.renew_period
            if newest is None or period <= timedelta(0):
                await asyncio.sleep(3600)
                continue
            due = newest.not_before + period - datetime.now(UTC)
            await asyncio.sleep(min(max(due.total_seconds(), 1.0), 3600.0))

    def _keys_seen(self, ring: KeyRing) -> None:
        self._ring = ring

    def open_sealed(self, ciphertext: str, label: bytes) -> Opened | None:
        """A value's plaintext and key rank with the last keys read, or None (for the diff
        only)."""
        return open_with_ring(self._ring, ciphertext, label)

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal

    # -- HTTP ------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/cert.pem", self._cert, methods=["GET"]),
            Route("/v1/verify", self._verify, methods=["POST"]),
            Route("/v1/rotate", self._rotate, methods=["POST"]),
        ]

    async def _cert(self, _request: Request) -> Response:
        try:
            ring = await self.store.ring()
        except KubeError as exc:
            return Response(f"cannot read the sealing keys: {exc}\n", status_code=503)
        if ring.newest is None:
            return Response("no sealing key yet\n", status_code=503)
        return Response(ring.newest.cert_pem(), media_type="application/x-pem-file")

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        if not self._bucket.take():
            return Response("too many requests\n", status_code=429)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return Response("request body too large\n", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return Response("request body too large\n", status_code=413)
        try:
            doc = json.loads(body)
        except ValueError:
            return Response("the body is not a JSON SealedSecret\n", status_code=400)
        if not isinstance(doc, dict):
            return Response("the body is not a JSON SealedSecret\n", status_code=400)
        return doc

    async def _verify(self, request: Request) -> Response:
        doc = await self._body(request)
        if isinstance(doc, Response):
            return doc
        ring = await self.store.ring()
        try:
            unsealed_values(doc, ring.private_keys(), accept_v1_data=self.options.accept_v1_data)
        except SealingError:
            return Response("unable to decrypt sealed secret\n", status_code=409)
        return Response("", status_code=200)

    async def _rotate(self, request: Request) -> Response:
        doc = await self._body(request)
        if isinstance(doc, Response):
            return doc
        ring = await self.store.ring()
        if ring.newest is None:
            return Response("no sealing key yet\n", status_code=503)
        try:
            rotated = reencrypt(doc, ring.private_keys(), ring.newest.public_key)
        except SealingError as exc:
            return Response(f"{exc}\n", status_code=409)
        return JSONResponse(rotated)
