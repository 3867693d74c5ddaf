"""Small helpers for integration tests: a thin JSON client and polling with a deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 60, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe} (last: {last!r})")


class Kube:
    """Just enough of the Kubernetes API for tests that must not depend on gitsail.kube."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, path: str) -> dict[str, Any] | None:
        resp = self.client.get(path)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.post(path, json=body)
        if resp.status_code >= 400:
            raise AssertionError(f"POST {path}: {resp.status_code} {resp.text}")
        result: dict[str, Any] = resp.json()
        return result

    def delete(self, path: str, **params: str) -> int:
        return self.client.delete(path, params=params).status_code


def condition(obj: dict[str, Any] | None, ctype: str) -> str | None:
    for cond in (obj or {}).get("status", {}).get("conditions", []) or []:
        if cond.get("type") == ctype:
            return str(cond.get("status"))
    return None


class StallingServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()
