"""A receiver on loopback that records every request: the webhook endpoint of the tests, and
a fake of the commit-status REST APIs (GitHub's ``/api/v3/repos/{o}/{r}/statuses/{sha}``,
GitLab's ``/api/v4/projects/{id}/statuses/{sha}``: they answer 201 with the status)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # Answers to give first to requests under a path (("/flux", 503): the first attempt
    # there fails), then 200 (201 for a commit status).
    answers: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path_prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with state.lock:
                answer = 0
                for i, (prefix, code) in enumerate(state.answers):
                    if self.path.startswith(prefix):
                        answer = code
                        del state.answers[i]
                        break
                if not answer:
                    state.requests.append(
                        Received("POST", self.path, dict(self.headers.items()), body)
                    )
            if answer:
                self.send_response(answer)
                self.end_headers()
                return
            status = 201 if "/statuses/" in self.path else 200
            reply = body if status == 201 else b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
