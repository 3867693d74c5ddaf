"""An OCI registry on loopback for tests and the demo: the CNCF ``distribution`` registry.

``Registry`` runs the pinned ``registry`` binary (``gitsail.toolchain``, tool
``distribution``) on ``127.0.0.1`` with a port the kernel picks, filesystem storage in a
private temporary directory, and optionally HTTP basic auth from an ``htpasswd`` file (the
registry reads bcrypt entries only; they are written with the ``bcrypt`` package, a
development dependency). It speaks plain HTTP: clients use ``helm push --plain-http`` and
gitsail's ``OCIClient`` speaks HTTP to loopback hosts.

The port is read from the registry's own log line ("listening on 127.0.0.1:PORT"), so two
registries never race for a port chosen in advance. Tracing export is switched off
(``OTEL_TRACES_EXPORTER=none``): the registry would otherwise try to reach a collector.

``push_chart`` packages a chart directory and pushes it with the real ``helm`` binary, as
users do (``helm package`` then ``helm push x.tgz oci://HOST/charts --plain-http``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import yaml

from gitsail.toolchain import find_binary

__all__ = ["Registry", "push_chart"]

_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")
_START_TIMEOUT = 30.0


class Registry:
    """A ``distribution`` registry on 127.0.0.1 (``host`` is ``127.0.0.1:PORT``)."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.root = Path(tempfile.mkdtemp(prefix="gitsail-registry-"))
        self.host = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``oci://127.0.0.1:PORT`` (append a repository path)."""
        return f"oci://{self.host}"

    def start(self) -> Registry:
        config = self.root / "config.yml"
        config.write_text(self._config())
        log = self.root / "registry.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "OTEL_TRACES_EXPORTER": "none",
        }
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                [str(find_binary("registry")), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            match = _LISTENING.search(text)
            if match:
                self.host = match.group(1)
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the OCI registry did not start; its log:\n{text[-2000:]}")

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            "  addr: 127.0.0.1:0",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.credentials is not None:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(htpasswd_line(*self.credentials))
            htpasswd.chmod(0o600)
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: gitsail-registry",
                f"    path: {htpasswd}",
            ]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def htpasswd_line(user: str, password: str) -> str:
    """One ``htpasswd`` entry with a bcrypt hash (the only kind the registry accepts)."""
    import bcrypt  # a development dependency: only the test registry needs it

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


def push_chart(
    chart_dir: Path,
    registry: Registry,
    repository: str = "charts",
    *,
    work: Path | None = None,
) -> str:
    """Package ``chart_dir`` and push it with the real ``helm`` to ``oci://HOST/repository``;
    returns the pushed reference (``oci://HOST/repository/<chart>``).

    Helm's registry login state goes to a private directory, never the user's."""
    helm = str(find_binary("helm"))
    scratch = Path(tempfile.mkdtemp(prefix="gitsail-helm-push-", dir=work))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "HELM_CONFIG_HOME": str(scratch / "config"),
        "HELM_CACHE_HOME": str(scratch / "cache"),
        "HELM_DATA_HOME": str(scratch / "data"),
        "HELM_REGISTRY_CONFIG": str(scratch / "registry.json"),
    }

    def helm_run(*args: str) -> str:
        proc = subprocess.run(
            [helm, *args], env=env, capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"helm {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    try:
        helm_run("package", str(chart_dir), "--destination", str(scratch))
        (package,) = scratch.glob("*.tgz")
        if registry.credentials is not None:
            user, password = registry.credentials
            proc = subprocess.run(
                [
                    helm,
                    "registry",
                    "login",
                    registry.host,
                    "--plain-http",
                    "--username",
                    user,
                    "--password-stdin",
                ],
                input=password,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"helm registry login failed: {proc.stderr.strip()}")
        target = f"{registry.url}/{repository.strip('/')}"
        helm_run("push", str(package), target, "--plain-http")
        name = yaml.safe_load((chart_dir / "Chart.yaml").read_text())["name"]
        return f"{target}/{name}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
