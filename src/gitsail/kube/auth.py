"""Transport security and credentials for one ``KubeConfig``.

``ssl_context`` builds the TLS context once per ``Kube``: the cluster's CA (or no
verification when the kubeconfig says ``insecure-skip-tls-verify``) and the client
certificate. Python's ``ssl`` loads a certificate chain only from files, so certificate and
key *data* are written to a 0600 file in a fresh 0700 directory, loaded, and removed at once.

``KubeAuth`` is an ``httpx.Auth`` that sets the ``Authorization`` header per request:

- a static bearer token, or a token file re-read at most every minute (it rotates);
- basic auth from username and password;
- an exec credential plugin (``client.authentication.k8s.io/v1`` and ``v1beta1``): the
  command runs with its args and env and ``KUBERNETES_EXEC_INFO``; its ExecCredential
  ``status`` gives a token or a client certificate and key (loaded into the shared TLS
  context, so new connections use it). The result is cached until ``expirationTimestamp``;
  a 401 drops the cache, reruns the plugin and repeats the request once.

Nothing here logs or formats a credential.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from gitsail.kube.aws import EKSTokenSource
from gitsail.kube.config import ExecConfig, KubeConfig
from gitsail.kube.errors import ConfigError
from gitsail.process import kill_group

__all__ = ["ExecCredential", "KubeAuth", "run_exec_plugin", "ssl_context"]

TOKEN_FILE_TTL = 60.0
EXEC_TIMEOUT = 60.0
# Refresh exec credentials this long before they expire, so a request does not race expiry.
EXPIRY_SKEW = 10.0


def ssl_context(config: KubeConfig) -> ssl.SSLContext:
    """The TLS context for ``config``: trust and (static) client certificate."""
    if config.insecure_skip_tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_data:
        try:
            ctx = ssl.create_default_context(cadata=config.ca_data.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise ConfigError(
                f"context {config.context!r}: certificate-authority is not a PEM certificate"
            ) from None
    else:
        ctx = ssl.create_default_context()
    if config.client_cert_file or config.client_cert_data:
        cert = config.client_cert_data or _read(config.client_cert_file)
        key = config.client_key_data or _read(config.client_key_file)
        load_client_cert(ctx, cert, key, what=f"context {config.context!r}")
    return ctx


def _read(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes, *, what: str) -> None:
    """Load a PEM certificate and key into ``ctx`` through a private file removed at once."""
    with tempfile.TemporaryDirectory(prefix="gitsail-kube-") as tmp:  # mode 0700
        path = Path(tmp) / "client.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert.rstrip(b"\n") + b"\n" + key)
        try:
            ctx.load_cert_chain(str(path))
        except ssl.SSLError:
            # The SSL error text can quote the file; say only what failed.
            raise ConfigError(
                f"{what}: client certificate and key are not a valid PEM pair"
            ) from None


@dataclass(frozen=True)
class ExecCredential:
    """What an exec plugin returned. ``expires`` is a ``time.time()`` value or None."""

    token: str | None = field(default=None, repr=False)
    client_cert: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    expires: float | None = None

    def fresh(self, now: float) -> bool:
        return self.expires is None or now < self.expires - EXPIRY_SKEW


async def run_exec_plugin(
    spec: ExecConfig, cluster_info: dict[str, Any] | None = None
) -> ExecCredential:
    """Run the plugin and parse its ExecCredential (see module doc)."""
    exec_info: dict[str, Any] = {
        "apiVersion": spec.api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if spec.provide_cluster_info and cluster_info:
        exec_info["spec"]["cluster"] = cluster_info
    what = f"exec credential plugin {spec.command!r}"
    if spec.interactive_mode == "Always":
        # gitsail runs unattended (controller, CI): there is no terminal to prompt on.
        raise ConfigError(f"{what} needs an interactive terminal (interactiveMode: Always)")
    env = {**os.environ, **dict(spec.env), "KUBERNETES_EXEC_INFO": json.dumps(exec_info)}
    try:
        proc = await asyncio.create_subprocess_exec(
            spec.command,
            *spec.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        hint = f" ({spec.install_hint.strip()})" if spec.install_hint else ""
        raise ConfigError(f"{what} could not run: {exc.strerror or exc}{hint}") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
    except TimeoutError:
        await kill_group(proc, group=False)
        raise ConfigError(f"{what} did not finish within {EXEC_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        # stderr is the plugin's own diagnostics, meant for people; stdout may hold secrets.
        tail = stderr.decode(errors="replace").strip()[-500:]
        raise ConfigError(f"{what} exited with code {proc.returncode}: {tail}")
    return parse_exec_credential(stdout, spec.api_version, what=what)


def parse_exec_credential(output: bytes, api_version: str, *, what: str) -> ExecCredential:
    try:
        doc = json.loads(output)
    except ValueError:
        raise ConfigError(f"{what} did not print an ExecCredential as JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ConfigError(f"{what} printed something other than an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise ConfigError(
            f"{what} answered with apiVersion {doc.get('apiVersion')!r}, expected {api_version!r}"
        )
    status = doc.get("status") or {}
    token = status.get("token") or None
    cert = status.get("clientCertificateData") or None
    key = status.get("clientKeyData") or None
    if not token and not (cert and key):
        raise ConfigError(f"{what} returned neither a token nor a client certificate and key")
    if bool(cert) != bool(key):
        raise ConfigError(f"{what} returned a client certificate without its key, or the reverse")
    expires = None
    if status.get("expirationTimestamp"):
        try:
            stamp = str(status["expirationTimestamp"]).replace("Z", "+00:00")
            expires = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            raise ConfigError(f"{what} returned an unreadable expirationTimestamp") from None
    return ExecCredential(
        token=token,
        client_cert=cert.encode() if cert else None,
        client_key=key.encode() if key else None,
        expires=expires,
    )


class KubeAuth(httpx.Auth):
    """Sets ``Authorization`` from the config's credential; reruns exec plugins on 401."""

    requires_request_body = True

    def __init__(self, config: KubeConfig, tls: ssl.SSLContext) -> None:
        self._config = config
        self._tls = tls
        self._lock = asyncio.Lock()
        self._exec: ExecCredential | None = None
        self._aws: EKSTokenSource | None = None
        self._loaded_cert: bytes | None = None
        self._file_token: str | None = None
        self._file_read_at = float("-inf")

    def __repr__(self) -> str:
        return f"KubeAuth({self._config.auth_kind})"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await self._authorize(request, refresh=False)
        response = yield request
        if response.status_code == 401 and self._refreshable:
            await response.aread()
            await self._authorize(request, refresh=True)
            yield request

    @property
    def _refreshable(self) -> bool:
        cfg = self._config
        return cfg.exec is not None or cfg.token_file is not None or cfg.aws is not None

    async def _authorize(self, request: httpx.Request, *, refresh: bool) -> None:
        header = await self._header(refresh=refresh)
        if header:
            request.headers["Authorization"] = header

    async def _header(self, *, refresh: bool) -> str | None:
        cfg = self._config
        if cfg.exec is not None:
            cred = await self._exec_credential(refresh=refresh)
            return f"Bearer {cred.token}" if cred.token else None
        if cfg.aws is not None:  # Argo CD's awsAuthConfig
            if self._aws is None:
                self._aws = EKSTokenSource(cfg.aws)
            async with self._lock:
                return f"Bearer {await self._aws.token(refresh=refresh)}"
        if cfg.token:
            return f"Bearer {cfg.token}"
        if cfg.token_file is not None:
            return f"Bearer {await self._token_from_file(refresh=refresh)}"
        if cfg.username is not None:
            pair = f"{cfg.username}:{cfg.password or ''}".encode()
            return f"Basic {base64.b64encode(pair).decode()}"
        return None

    async def _token_from_file(self, *, refresh: bool) -> str:
        path = self._config.token_file
        assert path is not None
        now = time.monotonic()
        if refresh or self._file_token is None or now - self._file_read_at > TOKEN_FILE_TTL:
            try:
                text = await asyncio.to_thread(path.read_text)
            except OSError as exc:
                raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
            self._file_token = text.strip()
            self._file_read_at = now
        return self._file_token

    async def _exec_credential(self, *, refresh: bool) -> ExecCredential:
        spec = self._config.exec
        assert spec is not None
        stale = self._exec
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            current = self._exec
            fresh = current is not None and current.fresh(time.time())
            if current is not None and fresh and (not refresh or current is not stale):
                return current
            cred = await run_exec_plugin(spec, dict(self._config.cluster_info))
            if cred.client_cert and cred.client_key and cred.client_cert != self._loaded_cert:
                load_client_cert(
                    self._tls, cred.client_cert, cred.client_key, what=f"{spec.command!r}"
                )
                self._loaded_cert = cred.client_cert
            self._exec = cred
            return cred
