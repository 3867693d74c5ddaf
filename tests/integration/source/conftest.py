"""Real servers for the source stage: an OpenSSH sshd on loopback and a Helm repository.

The sshd runs as the current user with a host key and an authorized client key made here,
serves bare repositories by absolute path (``ssh://<user>@127.0.0.1:<port>/<abs>.git``) and
listens on 127.0.0.1 only. Needs Debian's ``openssh-server`` (``/usr/sbin/sshd``).
"""

from __future__ import annotations

import base64
import getpass
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitsail.dev.gitserver import Workdir, init_bare

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}")


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitsail-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass(frozen=True)
class SSHServer:
    port: int
    user: str
    root: Path
    client_key: str  # private key text (OpenSSH format)
    known_hosts: str  # a known_hosts line for [127.0.0.1]:port
    other_key: str  # a key that is not authorized
    other_public_key: str  # its public half ("ssh-ed25519 AAAA... comment")

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"

    def create_repo(self, name: str) -> Path:
        return init_bare(self.root / f"{name}.git")


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    if not SSHD.exists():
        pytest.skip("openssh-server is not installed (apt-get install -y openssh-server)")
    tmp = Path(tempfile.mkdtemp(prefix="gitsail-sshd-"))
    host_pub = _keygen(tmp / "host_key")
    client_pub = _keygen(tmp / "client_key")
    other_pub = _keygen(tmp / "other_key")
    (tmp / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {tmp / 'host_key'}",
                f"PidFile {tmp / 'sshd.pid'}",
                f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc, time.monotonic() + 15)
        yield SSHServer(
            port=port,
            user=getpass.getuser(),
            root=tmp / "repos",
            client_key=(tmp / "client_key").read_text(),
            known_hosts=f"[127.0.0.1]:{port} {host_pub}\n",
            other_key=(tmp / "other_key").read_text(),
            other_public_key=other_pub,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ssh_repo(sshd: SSHServer, request: pytest.FixtureRequest) -> Iterator[tuple[str, Workdir]]:
    """A bare repository served over SSH (its URL) and a work tree pushing to it by path."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:60]
    bare = sshd.create_repo(name)
    work = Workdir(f"file://{bare}")
    yield sshd.url(bare), work
    work.close()


HELM_USER = ("helm-user", "helm-pass-42")


class _StaticHandler(SimpleHTTPRequestHandler):
    """Static files; with ``credentials`` set, HTTP basic auth is required."""

    credentials: tuple[str, str] | None = None

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            if self.headers.get("Authorization", "") != f"Basic {token}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="charts"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super().do_GET()


class _AuthHandler(_StaticHandler):
    credentials = HELM_USER


@dataclass(frozen=True)
class StaticServer:
    root: Path
    url: str
    credentials: tuple[str, str] | None = None


@pytest.fixture(params=["anonymous", "basic-auth"])
def static_http(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StaticServer]:
    """Files under a tmp dir over loopback HTTP (python's http.server in a thread),
    once anonymous and once behind basic auth (HELM_USER)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = _AuthHandler if request.param == "basic-auth" else _StaticHandler
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticServer(
            root, f"http://127.0.0.1:{server.server_address[1]}", handler.credentials
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
