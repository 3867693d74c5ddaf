"""A Helm chart repository on loopback for tests and the demo: ``index.yaml`` and packages.

`ChartServer` is a small threaded HTTP server on ``127.0.0.1`` (a random port) serving
several independent repositories, one per directory under its root, at
``http://127.0.0.1:<port>/<repository>/`` — each with its own ``index.yaml`` and ``.tgz``
packages, so tests sharing one server never see each other's publications. With
``credentials`` every request needs HTTP basic auth (401 otherwise), as a private
repository does; with ``tls`` (a certificate and key file) it serves HTTPS, and with
``client_ca`` it also requires a client certificate signed by that CA.

`ChartRepo` is one repository: ``publish`` packages a chart directory (or one of the
example charts under ``examples/charts``) at a version with the real pinned ``helm
package`` and rewrites the index. Packages are cached under ``~/.cache/gitsail/charts-dev``
keyed by the sha256 of the chart's files, the version and the helm binary, so a session
packages each chart version once per machine, and the same input always gives the same
bytes (``helm package`` itself stamps times into the archive). The index is written by
this module, not by ``helm repo index``, with a fixed ``created`` time: the same packages
give a byte-identical ``index.yaml``, hence the same digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gitsail.toolchain import cache_root, find_binary

__all__ = [
    "EXAMPLE_CHARTS",
    "ChartPackage",
    "ChartRepo",
    "ChartServer",
    "examples_dir",
    "package_chart",
]

# The example charts and the versions a repository is seeded with: the article's
# ``redis`` with 16.x and 17.x releases and a pre-release (so ``"17.x"`` picks 17.3.2),
# and a small podinfo-like web application.
EXAMPLE_CHARTS: dict[str, tuple[str, ...]] = {
    "redis": ("16.13.2", "17.0.0", "17.3.2", "17.4.0-rc.1"),
    "podinfo": ("6.5.0", "6.6.0"),
}
CREATED = "2024-01-01T00:00:00Z"  # every index entry's time: same packages, same index
_INDEX_FIELDS = ("apiVersion", "appVersion", "description", "type", "kubeVersion")


def examples_dir() -> Path:
    """``examples/charts`` of the source tree."""
    return Path(__file__).resolve().parents[3] / "examples" / "charts"


@dataclass(frozen=True)
class ChartPackage:
    """A chart version in a repository: its package file and its sha256."""

    name: str
    version: str
    filename: str
    digest: str  # hex sha256 of the package


def _tree_digest(chart_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(chart_dir).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _helm(args: list[str], home: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(find_binary("helm")), *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")


def package_chart(
    chart_dir: Path, version: str | None = None, *, cache: Path | None = None
) -> bytes:
    """The ``.tgz`` of ``chart_dir`` at ``version`` (its Chart.yaml's by default), packaged by
    the pinned helm once and then read from the cache."""
    chart_dir = Path(chart_dir)
    helm = find_binary("helm")
    key = hashlib.sha256(
        f"{_tree_digest(chart_dir)}|{version or ''}|{helm.resolve()}".encode()
    ).hexdigest()
    cache = cache if cache is not None else cache_root() / "charts-dev"
    cached = cache / f"{key}.tgz"
    if cached.is_file():
        return cached.read_bytes()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gitsail-package-") as tmp:
        home = Path(tmp)
        out = home / "out"
        args = ["package", str(chart_dir.resolve()), "-d", str(out)]
        if version:
            args += ["--version", version]
        _helm(args, home)
        (package,) = out.glob("*.tgz")
        partial = cache / f".{key}.{uuid.uuid4().hex}.partial"
        shutil.copyfile(package, partial)
        partial.replace(cached)  # a concurrent packager wrote the same key: either is fine
    return cached.read_bytes()


def _chart_metadata(chart_dir: Path, version: str | None) -> dict[str, Any]:
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
    if version:
        meta["version"] = version
    return meta


def _version_key(version: str) -> tuple[int, int, int, int, str]:
    core, _, pre = version.partition("-")
    parts = [int(p) if p.isdigit() else 0 for p in core.split("+")[0].split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return (parts[0], parts[1], parts[2], 0 if pre else 1, pre)


class ChartRepo:
    """One repository of a ``ChartServer``: its directory, URL and credentials."""

    def __init__(self, root: Path, url: str, credentials: tuple[str, str] | None) -> None:
        self.root = root
        self.url = url
        self.credentials = credentials
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}
        self.write_index()

    @property
    def auth(self) -> tuple[str, str] | None:
        """(username, password) the repository requires, or None."""
        return self.credentials

    def publish(self, chart: Path | str = "redis", version: str | None = None) -> ChartPackage:
        """Package and publish ``chart`` — a chart directory, the name of an example chart, or
        a bare version of the ``redis`` example (``publish("17.5.0")``) — at ``version``."""
        chart_dir, version = _resolve(chart, version)
        data = package_chart(chart_dir, version)
        meta = _chart_metadata(chart_dir, version)
        name, chosen = str(meta["name"]), str(meta["version"])
        filename = f"{name}-{chosen}.tgz"
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            _write_atomically(self.root / filename, data)
            entry = {k: meta[k] for k in _INDEX_FIELDS if k in meta}
            entry.update(
                name=name,
                version=chosen,
                created=CREATED,
                digest=digest,
                urls=[filename],
            )
            self._entries.setdefault(name, {})[chosen] = entry
            self._write_index_locked()
        return ChartPackage(name, chosen, filename, digest)

    def publish_examples(self) -> list[ChartPackage]:
        """Every version of every example chart (``EXAMPLE_CHARTS``)."""
        return [
            self.publish(name, version)
            for name, versions in EXAMPLE_CHARTS.items()
            for version in versions
        ]

    def unpublish(self, name: str, version: str) -> None:
        """Remove a version from the index (its package stays downloadable)."""
        with self._lock:
            self._entries.get(name, {}).pop(version, None)
            self._write_index_locked()

    def write_index(self, raw: bytes | None = None) -> None:
        """Write ``index.yaml`` from what was published, or ``raw`` as given (a test that
        wants a broken or oversized index)."""
        with self._lock:
            if raw is not None:
                _write_atomically(self.root / "index.yaml", raw)
                return
            self._write_index_locked()

    def _write_index_locked(self) -> None:
        entries = {
            name: sorted(versions.values(), key=lambda e: _version_key(e["version"]), reverse=True)
            for name, versions in sorted(self._entries.items())
        }
        doc = {"apiVersion": "v1", "entries": entries, "generated": CREATED}
        _write_atomically(self.root / "index.yaml", yaml.safe_dump(doc, sort_keys=True).encode())

    def index_digest(self) -> str:
        """``sha256:<hex>`` of the ``index.yaml`` served now."""
        return "sha256:" + hashlib.sha256((self.root / "index.yaml").read_bytes()).hexdigest()


def _resolve(chart: Path | str, version: str | None) -> tuple[Path, str | None]:
    if isinstance(chart, Path):
        return chart, version
    if chart in EXAMPLE_CHARTS:
        return examples_dir() / chart, version
    if Path(chart).is_dir():
        return Path(chart), version
    if chart[:1].isdigit() and version is None:
        return examples_dir() / "redis", chart
    raise ValueError(f"{chart!r} is neither a chart directory, an example chart nor a version")


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    partial.write_bytes(data)
    partial.replace(path)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        owner.requests[path] += 1
        if owner.credentials is not None and not self._authorized(owner.credentials):
            self._send(401, b"", {"WWW-Authenticate": 'Basic realm="charts"'}, body)
            return
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or any(p.startswith(".") for p in parts):
            self._send(404, b"not found\n", {}, body)
            return
        file = owner.root / parts[0] / parts[1]
        if not file.is_file():
            self._send(404, b"not found\n", {}, body)
            return
        kind = "application/x-yaml" if file.suffix == ".yaml" else "application/gzip"
        self._send(200, file.read_bytes(), {"Content-Type": kind}, body)

    def _authorized(self, credentials: tuple[str, str]) -> bool:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Basic {token}".encode())

    def _send(self, code: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ChartServer


class ChartServer:
    """Helm chart repositories under ``root`` over HTTP on 127.0.0.1 (see the module
    docstring). Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        port: int = 0,
    ) -> None:
        self.port = port  # 0: a free one
        self.tls = tls
        self.client_ca = client_ca
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="charts-"))
        self.credentials = credentials
        self.requests: Counter[str] = Counter()  # GETs/HEADs per path
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the chart server is not started")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def repository(self, name: str, *, examples: bool = True, exist_ok: bool = False) -> ChartRepo:
        """A new repository ``name`` (letters, digits, ``-``), seeded with the example charts
        unless ``examples`` is false; with ``exist_ok`` an existing one is reused (the demo
        restarting its server on the same root)."""
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"repository name {name!r} must be letters, digits and '-'")
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=exist_ok)
        repo = ChartRepo(directory, f"{self.base_url}/{name}", self.credentials)
        if examples:
            repo.publish_examples()
        return repo

    def start(self) -> ChartServer:
        server = _HTTPServer(("127.0.0.1", self.port), _Handler)
        server.owner = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            if self.client_ca is not None:
                context.load_verify_locations(cafile=self.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ChartServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
