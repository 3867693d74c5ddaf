"""``gitsail controller`` as a real process, so a test can SIGKILL it like a pod."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from gitsail.dev.cluster import Cluster, free_ports


class ControllerProcess:
    """``gitsail controller -n NAMESPACE`` (no leader election, 20 s polls) on loopback."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        log: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        argv = [
            sys.executable, "-m", "gitsail", "controller", "-n", namespace,
            "--kubeconfig", str(cluster.kubeconfig), "--listen", f"127.0.0.1:{port}",
            "--no-leader-elect", "--resync", "20", "--jitter", "0", *args,
        ]  # fmt: skip
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited: {self.output()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        return False

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self._up():
            if time.monotonic() > deadline:
                raise AssertionError(f"controller not up after {timeout}s: {self.output()}")
            time.sleep(0.2)

    async def wait_up_async(self, timeout: float = 60) -> None:
        await asyncio.to_thread(self.wait_up, timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
