"""The ``vault`` (and ``openBao``) provider: KV v1 and v2 over Vault's HTTP API.

Paths follow ESO's rules (``docs/external-secrets.md``): with a store ``path`` (the mount)
a KV v2 key ``foo/bar`` is read at ``<path>/data/foo/bar`` (a key starting with the mount
has it stripped first); without one, the key's first segment is the mount and ``data`` is
inserted after it unless it is already there. KV v1 reads ``<path>/<key>``. ``version`` is
the ``?version=`` query. A v2 read answers the ``data`` map as JSON (properties are picked
by the caller); a deleted or destroyed version is "not found".

``current_version`` reads ``<mount>/metadata/<key>`` (``current_version``), a cheaper call
than the data read and one that carries no secret: the fetch cache asks it before re-reading.

Authentication (``auth``): ``tokenSecretRef``; ``appRole`` (``roleId`` or ``roleRef``, and
``secretRef``) at ``auth/<path>/login``; ``kubernetes`` (``mountPath``, ``role``, a token of
``serviceAccountRef`` from the TokenRequest API with its ``audiences``, or ``secretRef``).
A login's token is kept until shortly before its lease ends; a 403 logs in again once.
``namespace`` is sent as ``X-Vault-Namespace``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from gitsail.secrets.external.provider import (
    Credentials,
    Find,
    ProviderError,
    Remote,
    RemoteNotFound,
    safe_path,
)
from gitsail.secrets.external.values import go_regexp

__all__ = ["SecretRef", "VaultAuth", "VaultConfig", "VaultProvider"]

MAX_FIND = 1000  # keys one find may read
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret (``{name, key, namespace}``); the namespace resolved by the caller."""

    namespace: str
    name: str
    key: str


@dataclass(frozen=True)
class VaultAuth:
    method: str  # token | appRole | kubernetes
    token: SecretRef | None = None
    path: str = ""  # appRole path or kubernetes mountPath
    role_id: str = ""
    role_ref: SecretRef | None = None
    secret_ref: SecretRef | None = None
    role: str = ""
    service_account: tuple[str, str] | None = None  # (namespace, name)
    audiences: tuple[str, ...] = ()
    namespace: str = ""  # auth.namespace: where to log in


@dataclass(frozen=True)
class VaultConfig:
    server: str
    path: str = ""
    version: str = "v2"
    namespace: str = ""
    auth: VaultAuth = VaultAuth("token")
    headers: tuple[tuple[str, str], ...] = ()


class VaultProvider:
    """See the module docstring."""

    kind = "vault"

    def __init__(
        self,
        config: VaultConfig,
        credentials: Credentials,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self._login_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # -- paths -----------------------------------------------------------------------------

    def data_path(self, key: str) -> str:
        key = safe_path(key)
        mount = safe_path(self.config.path, what="path") if self.config.path else ""
        if self.config.version == "v1":
            return f"{mount}/{key}" if mount else key
        if mount:
            if key.startswith(mount + "/"):
                key = key[len(mount) + 1 :]
            return f"{mount}/data/{key}"
        first, sep, rest = key.partition("/")
        if not sep:
            raise ProviderError(
                f"key {key!r} names no mount (set the store's path)", reason="InvalidKey"
            )
        if rest.startswith("data/"):
            return key
        return f"{first}/data/{rest}"

    def metadata_path(self, key: str) -> str:
        data = self.data_path(key)
        mount = safe_path(self.config.path, what="path") if self.config.path else ""
        if mount:
            return f"{mount}/metadata/{data[len(mount) + len('/data/') :]}"
        first, _, rest = data.partition("/data/")
        return f"{first}/metadata/{rest}"

    # -- HTTP ------------------------------------------------------------------------------

    def _headers(self, token: str | None, namespace: str) -> dict[str, str]:
        headers = dict(self.config.headers)
        if token:
            headers["X-Vault-Token"] = token
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        token: str | None = None,
        namespace: str | None = None,
    ) -> tuple[int, Any]:
        url = f"{self.config.server.rstrip('/')}/v1/{path}"
        try:
            answer = await self.http.request(
                method,
                url,
                params=params,
                content=json.dumps(body) if body is not None else None,
                headers=self._headers(
                    token, self.config.namespace if namespace is None else namespace
                ),
            )
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"cannot reach {self.config.server}: {type(exc).__name__}", reason="ProviderDown"
            ) from None
        if len(answer.content) > MAX_BODY:
            raise ProviderError(f"{path}: the answer is over {MAX_BODY} bytes")
        doc: Any = None
        if answer.content:
            try:
                doc = answer.json()
            except ValueError:
                doc = None
        return answer.status_code, doc

    async def _request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """An authenticated call; a 403 logs in again once."""
        for attempt in (0, 1):
            token = await self._login(fresh=attempt == 1)
            status, doc = await self._call(method, path, params=params, token=token)
            if status != 403 or attempt == 1:
                return status, doc
        raise AssertionError("unreachable")

    @staticmethod
    def _errors(doc: Any) -> str:
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors:
            # Vault's error strings name paths and roles, never values.
            return "; ".join(str(e)[:200] for e in errors[:3])
        return "no detail"

    # -- auth ------------------------------------------------------------------------------

    async def _login(self, *, fresh: bool = False) -> str:
        async with self._login_lock:
            if self._token and not fresh and self.clock() < self._token_until:
                return self._token
            auth = self.config.auth
            if auth.method == "token":
                if auth.token is None:
                    raise ProviderError("tokenSecretRef is empty", reason="InvalidProviderConfig")
                self._token = await self._secret(auth.token)
                self._token_until = self.clock() + 300.0
                return self._token
            if auth.method == "appRole":
                role_id = auth.role_id
                if auth.role_ref is not None:
                    role_id = await self._secret(auth.role_ref)
                if auth.secret_ref is None:
                    raise ProviderError("appRole needs secretRef", reason="InvalidProviderConfig")
                body = {"role_id": role_id, "secret_id": await self._secret(auth.secret_ref)}
                mount = safe_path(auth.path or "approle", what="appRole.path")
            else:
                if auth.service_account is not None:
                    ns, name = auth.service_account
                    jwt = await self.credentials.service_account_token(ns, name, auth.audiences)
                elif auth.secret_ref is not None:
                    jwt = await self._secret(auth.secret_ref)
                else:
                    raise ProviderError(
                        "kubernetes auth needs serviceAccountRef or secretRef",
                        reason="InvalidProviderConfig",
                    )
                body = {"role": auth.role, "jwt": jwt}
                mount = safe_path(auth.path or "kubernetes", what="kubernetes.mountPath")
            status, doc = await self._call(
                "POST", f"auth/{mount}/login", body=body, namespace=auth.namespace or None
            )
            if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("auth"), dict):
                raise ProviderError(
                    f"{auth.method} login at auth/{mount} refused ({status}): {self._errors(doc)}",
                    reason="AuthFailed",
                )
            token = str(doc["auth"].get("client_token") or "")
            lease = doc["auth"].get("lease_duration") or 300
            self._token = token
            self._token_until = self.clock() + max(5.0, float(lease) * 0.8)
            return token

    async def _secret(self, ref: SecretRef) -> str:
        return (await self.credentials.secret_key(ref.namespace, ref.name, ref.key)).decode()

    # -- reads -----------------------------------------------------------------------------

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        if metadata:
            if self.config.version != "v2":
                raise ProviderError("metadataPolicy Fetch needs KV v2", reason="InvalidKey")
            status, doc = await self._request("GET", self.metadata_path(key))
            self._check(status, doc, key)
            meta = doc.get("data") or {}
            out = dict(meta.get("custom_metadata") or {})
            for field in ("created_time", "current_version", "delete_version_after"):
                if field in meta:
                    out[field] = str(meta[field])
            return Remote(
                json.dumps(out, sort_keys=True).encode(), str(meta.get("current_version", ""))
            )
        params = {"version": version} if version and self.config.version == "v2" else None
        if version and not version.isdigit():
            raise ProviderError(
                f"key {key!r}: version {version!r} is not a number", reason="InvalidKey"
            )
        status, doc = await self._request("GET", self.data_path(key), params=params)
        self._check(status, doc, key)
        data = doc.get("data") if isinstance(doc, dict) else None
        if self.config.version == "v2":
            inner = data.get("data") if isinstance(data, dict) else None
            if inner is None or not isinstance(data, dict):
                raise RemoteNotFound(f"key {key!r}: the version is deleted or destroyed")
            meta = data.get("metadata") or {}
            return Remote(
                json.dumps(inner, sort_keys=True).encode(), str(meta.get("version") or "")
            )
        if not isinstance(data, dict):
            raise RemoteNotFound(f"key {key!r} not found")
        return Remote(json.dumps(data, sort_keys=True).encode(), "")

    def _check(self, status: int, doc: Any, key: str) -> None:
        if status == 404:
            raise RemoteNotFound(f"key {key!r} not found")
        if status == 403:
            raise ProviderError(f"key {key!r}: permission denied", reason="PermissionDenied")
        if status >= 300 or not isinstance(doc, dict):
            raise ProviderError(f"key {key!r}: the server answered {status}: {self._errors(doc)}")

    async def current_version(self, key: str) -> str | None:
        if self.config.version != "v2":
            return None
        status, doc = await self._request("GET", self.metadata_path(key))
        self._check(status, doc, key)
        return str((doc.get("data") or {}).get("current_version") or "") or None

    async def find(self, find: Find) -> dict[str, bytes]:
        if self.config.version != "v2":
            raise ProviderError("find needs KV v2", reason="InvalidKey")
        pattern = go_regexp(find.name, where="find.name.regexp") if find.name else None
        mount = safe_path(self.config.path, what="path") if self.config.path else ""
        if not mount:
            raise ProviderError("find needs the store's path (the mount)", reason="InvalidKey")
        root = safe_path(find.path, what="find.path") if find.path else ""
        names: list[str] = []
        pending = [root]
        while pending and len(names) < MAX_FIND:
            folder = pending.pop()
            listing = f"{mount}/metadata/{folder}" if folder else f"{mount}/metadata"
            status, doc = await self._request("GET", listing, params={"list": "true"})
            if status == 404:
                continue
            self._check(status, doc, folder or "/")
            for entry in (doc.get("data") or {}).get("keys") or []:
                name = f"{folder}/{entry}" if folder else str(entry)
                if name.endswith("/"):
                    pending.append(name.rstrip("/"))
                else:
                    names.append(name)
        out: dict[str, bytes] = {}
        for name in sorted(names)[:MAX_FIND]:
            if pattern is not None and not pattern.search(name):
                continue
            if find.tags:
                meta = json.loads((await self.read(name, "", metadata=True)).value)
                if any(meta.get(k) != v for k, v in find.tags):
                    continue
            out[name] = (await self.read(name, "")).value
        return out
