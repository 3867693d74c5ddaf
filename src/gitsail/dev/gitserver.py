"""A Git server on loopback for tests and the demo: smart HTTP through `git http-backend`.

`GitServer` serves every bare repository under a root directory at
``http://127.0.0.1:<port>/<name>.git``, optionally behind HTTP basic auth, and accepts
pushes. It is git's own CGI program behind a small threaded HTTP server, so clients talk
to real git on the server side: what works here works against any smart-HTTP host.

`Workdir` is the client side for fixtures: clone, write files, commit, push.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import ClassVar
from urllib.parse import urlsplit

__all__ = ["GitServer", "Workdir", "git", "init_bare"]

# Identity and isolation for every git command run here: no user or system config,
# no prompts, no hooks from outside.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "gitsail dev",
    "GIT_AUTHOR_EMAIL": "dev@gitsail.invalid",
    "GIT_COMMITTER_NAME": "gitsail dev",
    "GIT_COMMITTER_EMAIL": "dev@gitsail.invalid",
}


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git with an isolated environment; raise with git's stderr on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def init_bare(path: Path, *, default_branch: str = "main") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path))
    git("config", "http.receivepack", "true", cwd=path)
    return path


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    _CGI_HEADERS: ClassVar[dict[str, str]] = {
        "Content-Type": "CONTENT_TYPE",
        "Content-Encoding": "HTTP_CONTENT_ENCODING",
        "Git-Protocol": "GIT_PROTOCOL",
    }

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _authorized(self) -> str | None:
        """The authenticated user name, "" when auth is off, None when refused."""
        creds = self.server.credentials
        if creds is None:
            return ""
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), creds[0].encode())
        ok_password = hmac.compare_digest(password.encode(), creds[1].encode())
        return user if ok_user and ok_password else None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        user = self._authorized()
        body = self._read_body() if self.command == "POST" else b""
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="gitsail-dev"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        url = urlsplit(self.path)
        env = {
            **os.environ,
            **_GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": user or "anonymous",
        }
        for header, var in self._CGI_HEADERS.items():
            value = self.headers.get(header)
            if value:
                env[var] = value
        proc = subprocess.run(
            ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        if proc.returncode != 0 and not head:
            status, payload = 500, proc.stderr
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away (a timed-out or killed git): nothing to tell it


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    credentials: tuple[str, str] | None
    verbose: bool

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up (a git killed on timeout) is routine, not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class GitServer:
    """Smart-HTTP git server over the bare repositories in ``root``, on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        credentials: tuple[str, str] | None = None,
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.root = root
        self.credentials = credentials
        root.mkdir(parents=True, exist_ok=True)
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.root = root
        self._httpd.credentials = credentials
        self._httpd.verbose = verbose
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, repo: str, *, with_credentials: bool = False) -> str:
        """The clone URL of ``repo`` (``name`` or ``name.git``)."""
        name = repo if repo.endswith(".git") else f"{repo}.git"
        if with_credentials and self.credentials:
            user, password = self.credentials
            return f"http://{user}:{password}@127.0.0.1:{self.port}/{name}"
        return f"{self.base_url}/{name}"

    def create_repo(self, repo: str) -> Path:
        name = repo if repo.endswith(".git") else f"{repo}.git"
        return init_bare(self.root / name)

    def start(self) -> GitServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="gitsail-git-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Workdir:
    """A working clone used to author commits and push them to a repository URL."""

    def __init__(self, remote: str, *, branch: str = "main") -> None:
        self.remote = remote
        self.branch = branch
        self.path = Path(tempfile.mkdtemp(prefix="gitsail-workdir-"))
        git("init", "--quiet", f"--initial-branch={branch}", str(self.path))
        git("remote", "add", "origin", remote, cwd=self.path)
        # Start from what the remote has, if anything.
        heads = git("ls-remote", "--heads", "origin", cwd=self.path)
        if f"refs/heads/{branch}" in heads:
            git("fetch", "--quiet", "origin", branch, cwd=self.path)
            git("checkout", "--quiet", "-B", branch, "FETCH_HEAD", cwd=self.path)

    def write(self, files: Mapping[str, str | None]) -> None:
        """Write files (relative path → text); None deletes the file."""
        for rel, text in files.items():
            target = self.path / rel
            if text is None:
                if target.exists():
                    target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def copy_tree(self, source: Path) -> None:
        shutil.copytree(source, self.path, dirs_exist_ok=True)

    def commit(self, message: str) -> str:
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def push(self, *, tags: bool = False) -> None:
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.path)
        if tags:
            git("push", "--quiet", "origin", "--tags", cwd=self.path)

    def tag(self, name: str) -> None:
        git("tag", name, cwd=self.path)

    def commit_and_push(self, files: Mapping[str, str | None], message: str) -> str:
        self.write(files)
        sha = self.commit(message)
        self.push()
        return sha

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
