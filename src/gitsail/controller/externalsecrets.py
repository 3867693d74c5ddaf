"""External Secrets on the controller: the kinds, their stores' clients and the shared cache.

``ExternalSecrets(kube, options)`` holds what every ExternalSecret shares: the ``FetchCache``
(one fetch per store, key and version, per-store rate limit), the store clients (one per
store and resolved configuration, rebuilt when the store's spec changes) and the metrics.
``kinds()`` are the ``KindFactory``s ``gitsail controller --external-secrets`` passes as
``Controller(kinds=[...])``: ``ExternalSecret``, ``SecretStore``, ``ClusterSecretStore``
and ``ClusterExternalSecret``.

Stores are validated when they change (``Ready`` ``Valid`` / ``InvalidProviderConfig``,
``capabilities: ReadOnly``); their clients are built on first use by an ExternalSecret.
AWS endpoints come from the controller's environment (``AWS_ENDPOINT_URL`` and the
per-service variables), as the AWS SDKs read them.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import Counter, Gauge

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, ObjectKey
from gitsail.kinds.externalsecret import (
    KIND,
    ExternalSecretReconciler,
    ResolvedStore,
)
from gitsail.kinds.externalsecret_cluster import ClusterExternalSecretReconciler
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.secrets.external.aws import AWSConfig, AWSProvider
from gitsail.secrets.external.cache import FetchCache
from gitsail.secrets.external.provider import Provider, ProviderError
from gitsail.secrets.external.simple import FakeProvider, KubernetesProvider
from gitsail.secrets.external.stores import (
    FakeConfig,
    KubernetesConfig,
    StoreConfig,
    admits,
    config_digest,
    store_config,
)
from gitsail.secrets.external.vault import VaultConfig, VaultProvider
from gitsail.source._urls import http_guard
from gitsail.source.errors import SourceError

__all__ = ["ExternalSecrets", "ExternalSecretsOptions", "KubeCredentials"]

log = logging.getLogger(__name__)

GROUP = "external-secrets.io/v1"
MAX_CLIENTS = 1000


@dataclass(frozen=True)
class ExternalSecretsOptions:
    store_rate: float = 10.0  # calls per second to one store
    store_burst: int = 20
    jitter: float = 0.1  # share of the interval (capped at max_jitter seconds)
    max_jitter: float = 5.0


class KubeCredentials:
    """``Credentials`` on the controller's cluster: Secret keys, TokenRequests, SA annotations."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            secret = await self.kube.get("v1", "Secret", name, namespace)
        except KubeError as exc:
            raise ProviderError(
                f"cannot read Secret {namespace}/{name}: {exc.reason}",
                reason="MissingProviderSecret",
            ) from None
        data = (secret or {}).get("data") or {}
        if key not in data:
            raise ProviderError(
                f"Secret {namespace}/{name} {'has no key ' + repr(key) if secret else 'not found'}",
                reason="MissingProviderSecret",
            )
        return base64.b64decode(str(data[key]))

    async def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], seconds: int = 600
    ) -> str:
        spec: dict[str, Any] = {"expirationSeconds": max(600, seconds)}
        if audiences:
            spec["audiences"] = list(audiences)
        try:
            answer = await self.kube.create_subresource(
                "v1",
                "ServiceAccount",
                name,
                "token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
                namespace,
            )
        except KubeError as exc:
            raise ProviderError(
                f"TokenRequest for ServiceAccount {namespace}/{name} failed: {exc.reason}",
                reason="AuthFailed",
            ) from None
        return str((answer.get("status") or {}).get("token") or "")

    async def service_account_annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        try:
            sa = await self.kube.get("v1", "ServiceAccount", name, namespace)
        except KubeError as exc:
            raise ProviderError(
                f"cannot read ServiceAccount {namespace}/{name}: {exc.reason}", reason="AuthFailed"
            ) from None
        if sa is None:
            raise ProviderError(f"ServiceAccount {namespace}/{name} not found", reason="AuthFailed")
        return dict((sa.get("metadata") or {}).get("annotations") or {})


class _Metrics:
    def __init__(self, ctx: KindContext) -> None:
        r = ctx.metrics.registry
        self.sync_calls = Counter(
            "externalsecret_sync_calls", "ExternalSecret syncs", ("name", "namespace"), registry=r
        )
        self.sync_errors = Counter(
            "externalsecret_sync_calls_error",
            "ExternalSecret syncs that failed",
            ("name", "namespace"),
            registry=r,
        )
        self.condition = Gauge(
            "externalsecret_status_condition",
            "ExternalSecret conditions",
            ("name", "namespace", "condition", "status"),
            registry=r,
        )
        self.provider_calls = Gauge(
            "gitsail_externalsecret_fetch",
            "Shared fetch cache: reads, version checks and hits (all ExternalSecrets)",
            ("result",),
            registry=r,
        )
        self.cached = Gauge("gitsail_externalsecret_cache_entries", "Cached values", registry=r)


class _ExternalSecretKind(KindDefaults):
    field_manager = "externalsecrets.external-secrets.io"

    def __init__(
        self, inner: ExternalSecretReconciler, owner: ExternalSecrets, ctx: KindContext
    ) -> None:
        self.inner = inner
        self.owner = owner
        self.api = KindAPI(GROUP, KIND)
        self.control_namespace = ctx.settings.control_namespace
        self.metrics = owner.metrics(ctx)

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        delay = await self.inner.reconcile(obj, reasons)
        outcome = self.inner.last.pop((ns, name), None)
        if outcome is not None:
            self.metrics.sync_calls.labels(name, ns).inc()
            if outcome.error:
                self.metrics.sync_errors.labels(name, ns).inc()
            ready = "False" if outcome.error else "True"
            other = "True" if ready == "False" else "False"
            self.metrics.condition.labels(name, ns, "Ready", ready).set(1)
            self.metrics.condition.labels(name, ns, "Ready", other).set(0)
        cache = self.owner.cache
        self.metrics.provider_calls.labels("read").set(cache.reads)
        self.metrics.provider_calls.labels("check").set(cache.checks)
        self.metrics.provider_calls.labels("hit").set(cache.hits)
        self.metrics.cached.set(len(cache))
        return delay

    def forget(self, key: ObjectKey) -> None:
        for status in ("True", "False"):
            with contextlib.suppress(KeyError):
                self.metrics.condition.remove(key.name, key.namespace, "Ready", status)

    def keys_for_managed(self, obj: Obj) -> list[ObjectKey]:
        if obj.get("kind") != "Secret":
            return []
        meta = obj.get("metadata") or {}
        return [
            ObjectKey(KIND, str(meta.get("namespace") or ""), str(r.get("name")))
            for r in meta.get("ownerReferences") or []
            if r.get("kind") == KIND and r.get("controller")
        ]


class _StoreKind(KindDefaults):
    """SecretStore / ClusterSecretStore: validate the provider spec, write ``Ready``."""

    field_manager = "externalsecrets.external-secrets.io"

    def __init__(self, kind: str, owner: ExternalSecrets, ctx: KindContext) -> None:
        self.api = KindAPI(GROUP, kind)
        self.owner = owner
        self.kube = ctx.kube
        self.control_namespace = ctx.settings.control_namespace

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        meta = obj.get("metadata") or {}
        try:
            store_config(obj, str(meta.get("namespace") or "default"))
            admits(obj, "default", {})
        except ProviderError as exc:
            ready, reason, message = "False", "InvalidProviderConfig", str(exc)
        else:
            ready, reason, message = "True", "Valid", "store validated"
        old = obj.get("status") or {}
        previous: dict[str, Any] = next(
            (c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": "Ready",
            "status": ready,
            "reason": reason,
            "message": message,
            "lastTransitionTime": previous.get("lastTransitionTime")
            if previous.get("status") == ready
            else now,
        }
        status = {**old, "conditions": [condition], "capabilities": "ReadOnly"}
        if status != old:
            await self.kube.merge_patch(
                GROUP,
                self.api.kind,
                str(meta.get("name")),
                {"status": status},
                namespace=meta.get("namespace"),
                subresource="status",
                field_manager=self.field_manager,
            )
        self.owner.forget_clients(
            self.api.kind, str(meta.get("namespace") or ""), str(meta.get("name"))
        )
        return None


class _ClusterExternalSecretKind(KindDefaults):
    field_manager = "externalsecrets.external-secrets.io"

    def __init__(self, inner: ClusterExternalSecretReconciler, ctx: KindContext) -> None:
        self.inner = inner
        self.api = KindAPI(GROUP, "ClusterExternalSecret")
        self.control_namespace = ctx.settings.control_namespace

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        return await self.inner.reconcile(obj)


def guarded_http(policy: Policy, timeout: float = 10.0) -> httpx.AsyncClient:
    """The HTTP client of every store: the operator's URL policy on every request (no host
    in ``GITSAIL_DENIED_NETWORKS``: cloud metadata, link-local), no redirects followed."""
    hooks = http_guard(policy)

    async def on_request(request: httpx.Request) -> None:
        try:
            for hook in hooks["request"]:
                await hook(request)
        except SourceError as exc:
            raise ProviderError(str(exc), reason="DeniedHost") from None

    async def on_response(response: httpx.Response) -> None:
        try:
            for hook in hooks["response"]:
                await hook(response)
        except SourceError as exc:
            raise ProviderError(str(exc), reason="DeniedHost") from None

    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        event_hooks={"request": [on_request], "response": [on_response]},
    )


class ExternalSecrets:
    """See the module docstring."""

    def __init__(
        self,
        kube: Kube,
        options: ExternalSecretsOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        policy: Policy | None = None,
    ) -> None:
        self.kube = kube
        self.options = options or ExternalSecretsOptions()
        self.cache = FetchCache(
            rate=self.options.store_rate, burst=self.options.store_burst, clock=clock
        )
        self.credentials = KubeCredentials(kube)
        env = os.environ if environ is None else environ
        self.endpoints = {k: v for k, v in env.items() if k.startswith("AWS_ENDPOINT_URL")}
        self._clients: dict[Hashable, Provider] = {}
        self.http = guarded_http(policy or Policy())
        self._metrics: dict[int, _Metrics] = {}

    def metrics(self, ctx: KindContext) -> _Metrics:
        """The kind's metrics, registered once per registry (a replica that leads again
        builds its kinds again; a metric must not be registered twice)."""
        key = id(ctx.metrics.registry)
        if key not in self._metrics:
            self._metrics[key] = _Metrics(ctx)
        return self._metrics[key]

    # -- stores ------------------------------------------------------------------------------

    async def resolve(self, kind: str, name: str, namespace: str) -> ResolvedStore:
        """The store ``kind``/``name`` as an ExternalSecret of ``namespace`` reads it."""
        store_ns = namespace if kind == "SecretStore" else None
        try:
            store = await self.kube.get(GROUP, kind, name, store_ns)
        except KubeError as exc:
            raise ProviderError(
                f"cannot read {kind} {name}: {exc.reason}", reason="InvalidStoreRef"
            ) from None
        if store is None:
            raise ProviderError(f"{kind} {name} not found", reason="InvalidStoreRef")
        if kind == "ClusterSecretStore":
            ns_obj = await self.kube.get("v1", "Namespace", namespace)
            labels = ((ns_obj or {}).get("metadata") or {}).get("labels") or {}
            if not admits(store, namespace, labels):
                raise ProviderError(
                    f"ClusterSecretStore {name} does not admit namespace {namespace} "
                    "(spec.conditions)",
                    reason="InvalidStoreRef",
                )
        config = store_config(store, namespace)
        identity = (kind, store_ns or "", name, config_digest(config))
        client = self._clients.get(identity)
        if client is None:
            self.forget_clients(kind, store_ns or "", name)
            if len(self._clients) >= MAX_CLIENTS:
                oldest = next(iter(self._clients))
                await self._clients.pop(oldest).close()
            client = self._clients[identity] = self._provider(config)
        return ResolvedStore(identity, client)

    def _provider(self, config: StoreConfig) -> Provider:
        if isinstance(config, VaultConfig):
            return VaultProvider(config, self.credentials, http=self.http)
        if isinstance(config, AWSConfig):
            return AWSProvider(config, self.credentials, endpoints=self.endpoints, http=self.http)
        if isinstance(config, KubernetesConfig):
            return KubernetesProvider(config.remote_namespace, *self._secret_readers(config))
        if isinstance(config, FakeConfig):
            return FakeProvider(config.entries)
        raise ProviderError("unknown provider", reason="InvalidProviderConfig")

    def _secret_readers(self, config: KubernetesConfig) -> tuple[Any, Any]:
        kube = self.kube
        if config.service_account is not None:
            ns, name = config.service_account
            kube = kube.impersonating(f"system:serviceaccount:{ns}:{name}")

        async def read(namespace: str, name: str) -> Mapping[str, str] | None:
            try:
                secret = await kube.get("v1", "Secret", name, namespace)
            except KubeError as exc:
                raise ProviderError(
                    f"cannot read Secret {namespace}/{name}: {exc.reason}",
                    reason="PermissionDenied",
                ) from None
            return None if secret is None else dict(secret.get("data") or {})

        async def list_(namespace: str) -> list[tuple[str, Mapping[str, str], Mapping[str, str]]]:
            try:
                items = await kube.list("v1", "Secret", namespace)
            except KubeError as exc:
                raise ProviderError(
                    f"cannot list Secrets of {namespace}: {exc.reason}", reason="PermissionDenied"
                ) from None
            return [
                (
                    str(s["metadata"]["name"]),
                    dict(s["metadata"].get("labels") or {}),
                    dict(s.get("data") or {}),
                )
                for s in items
            ]

        return read, list_

    def forget_clients(self, kind: str, namespace: str, name: str) -> None:
        for identity in [
            i for i in self._clients if isinstance(i, tuple) and i[:3] == (kind, namespace, name)
        ]:
            self._clients.pop(identity, None)
            self.cache.forget_store(identity)

    # -- the kinds ---------------------------------------------------------------------------

    def kinds(self) -> list[Callable[[KindContext], KindDefaults]]:
        def external_secret(ctx: KindContext) -> _ExternalSecretKind:
            async def event(obj: Obj, type_: str, reason: str, message: str) -> None:
                await ctx.events.record(obj, reason=reason, message=message, type=type_)

            inner = ExternalSecretReconciler(
                ctx.kube,
                self.resolve,
                self.cache,
                events=event,
                jitter=self.options.jitter,
                max_jitter=self.options.max_jitter,
            )
            return _ExternalSecretKind(inner, self, ctx)

        def secret_store(ctx: KindContext) -> _StoreKind:
            return _StoreKind("SecretStore", self, ctx)

        def cluster_secret_store(ctx: KindContext) -> _StoreKind:
            return _StoreKind("ClusterSecretStore", self, ctx)

        def cluster_external_secret(ctx: KindContext) -> _ClusterExternalSecretKind:
            return _ClusterExternalSecretKind(ClusterExternalSecretReconciler(ctx.kube), ctx)

        return [external_secret, secret_store, cluster_secret_store, cluster_external_secret]

    async def stop(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self.http.aclose()
