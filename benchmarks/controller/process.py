"""The controller under test as a separate process (``ControllerProcess``): start, CPU/RSS
samples, py-spy, tracemalloc, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.controller.common import (
    CONTROL_NS,
    ROOT,
    ProcSample,
    _top,
    controller_counters,
    log,
    proc_sample,
)
from gitsail.dev.cluster import free_ports
from gitsail.toolchain import find_binary

# -- the controller process ------------------------------------------------------------


def _tool_binaries() -> dict[str, str]:
    """``GITSAIL_BIN_<NAME>`` for the renderers built in the user's cache: the controller
    runs on a private ``GITSAIL_CACHE_DIR`` (empty caches), where no tool is built."""
    env = {}
    for binary in ("kustomize", "helm"):
        with contextlib.suppress(FileNotFoundError):
            env["GITSAIL_BIN_" + binary.upper()] = str(find_binary(binary))
    return env


# The controller under tracemalloc (``--tracemalloc``): SIGUSR2 dumps a snapshot to the file
# (SIGUSR1 is the controller's own: where its tasks wait)
# named by GITSAIL_BENCH_TRACEMALLOC, then it goes on; otherwise ``python -m gitsail``.
_TRACED_MAIN = """
import os, signal, sys, tracemalloc
def _dump(*_):
    tracemalloc.take_snapshot().dump(os.environ["GITSAIL_BENCH_TRACEMALLOC"] + ".part")
    os.replace(os.environ["GITSAIL_BENCH_TRACEMALLOC"] + ".part",
               os.environ["GITSAIL_BENCH_TRACEMALLOC"])
signal.signal(signal.SIGUSR2, _dump)
sys.argv[0] = "gitsail"
from gitsail.cli.main import main
main()
"""


def _memory_by(snapshot: tracemalloc.Snapshot, top: int) -> dict[str, Any]:
    """Traced memory by file and by package (``gitsail.<stage>`` or the library), MiB."""

    def short(filename: str) -> str:
        for marker in ("/site-packages/", "/src/", "/lib/python3"):
            if marker in filename:
                return filename.split(marker, 1)[1]
        return filename

    def package(name: str) -> str:
        parts = name.split("/")
        if parts[0] == "gitsail" and len(parts) > 2:
            return f"gitsail.{parts[1]}"
        return parts[0].removesuffix(".py")

    files: dict[str, float] = {}
    for stat in snapshot.statistics("filename"):
        name = short(stat.traceback[0].filename)
        files[name] = files.get(name, 0.0) + stat.size
    packages: dict[str, float] = {}
    for name, size in files.items():
        packages[package(name)] = packages.get(package(name), 0.0) + size
    mib = 1024 * 1024
    return {
        "traced_mib": round(sum(files.values()) / mib, 1),
        "by_package_mib": {k: round(v / mib, 2) for k, v in _top(packages, top)},
        "by_file_mib": {k: round(v / mib, 2) for k, v in _top(files, top)},
    }


@dataclass
class ControllerProcess:
    """``python -m gitsail controller`` as a child process, on its own cache directory.

    ``pythonpath`` runs another checkout's gitsail under the same harness (A/B against an
    older commit: ``--controller-src``); ``tracemalloc`` traces its allocations
    (``--tracemalloc``: CPU figures are then not comparable).
    """

    kubeconfig: Path
    work: Path
    label: str
    resync: float = 120
    jitter: float = 60
    concurrency: int = 10
    profile: bool = False
    namespaces: tuple[str, ...] = (CONTROL_NS,)
    pythonpath: str | None = None
    tracemalloc: bool = False
    extra_args: tuple[str, ...] = ()  # more controller flags (``--controller-arg``)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    peak_rss_mib: float = 0.0
    _sampler: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        main = (
            ["-X", "tracemalloc=1", "-c", _TRACED_MAIN] if self.tracemalloc else ["-m", "gitsail"]
        )
        return [
            sys.executable,
            *main,
            "controller",
            "--kubeconfig",
            str(self.kubeconfig),
            *(arg for ns in self.namespaces for arg in ("-n", ns)),
            "--no-leader-elect",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--resync",
            f"{self.resync:g}",
            "--jitter",
            f"{self.jitter:g}",
            "--concurrency",
            str(self.concurrency),
            *self.extra_args,
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        (self.port,) = free_ports(1)
        cache = self.work / f"cache-{self.label}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, **_tool_binaries(), "GITSAIL_CACHE_DIR": str(cache)}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        env["GITSAIL_BENCH_TRACEMALLOC"] = str(self._snapshot_path)
        with (self.work / f"controller-{self.label}.log").open("ab") as logfile:
            return subprocess.Popen(
                self.argv(), cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT
            )

    async def start(self) -> None:
        self.proc = self._spawn()
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"controller {self.label} exited with {self.proc.returncode}; "
                        f"see {self.work}/controller-{self.label}.log"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{self.url}/healthz")
                    if r.status_code == 200 and r.json().get("leading"):
                        break
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"controller {self.label} not leading after 60 s")
                await asyncio.sleep(0.1)
        log(
            f"controller {self.label} (pid {self.pid}, resync {self.resync:g}s, jitter "
            f"{self.jitter:g}s) leading after {time.monotonic() - started:.1f}s"
        )
        if self.profile:
            self._start_profiler()
        self._sampler = asyncio.create_task(self._sample_rss())

    def _start_profiler(self) -> None:
        pyspy = os.environ.get("GITSAIL_BENCH_PYSPY", "/tmp/pyspy-venv/bin/py-spy")  # noqa: S108
        if not Path(pyspy).exists():
            log(f"no py-spy at {pyspy}; not profiling")
            return
        out = self.work / f"profile-{self.label}.txt"
        rate = os.environ.get("GITSAIL_BENCH_PYSPY_RATE", "50")  # samples per second
        self.profiler = subprocess.Popen(
            [
                *(pyspy, "record", "--format", "raw", "--rate", rate, "--nonblocking"),
                *("--pid", str(self.pid), "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log(f"py-spy recording into {out}")

    async def _sample_rss(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):  # (gone, or a zombie: no VmRSS)
                self.peak_rss_mib = max(self.peak_rss_mib, proc_sample(self.pid).rss_mib)
            await asyncio.sleep(0.5)

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    @property
    def _snapshot_path(self) -> Path:
        return self.work / f"tracemalloc-{self.label}.bin"

    async def memory(self, top: int = 25) -> dict[str, Any] | None:
        """Where the traced memory is now (``tracemalloc`` only), by package and file."""
        if not self.tracemalloc:
            return None
        path = self._snapshot_path
        path.unlink(missing_ok=True)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 120
        while not path.exists():
            if time.monotonic() > deadline:
                log(f"controller {self.label}: no tracemalloc snapshot after 120 s")
                return None
            await asyncio.sleep(0.5)
        snapshot = await asyncio.to_thread(tracemalloc.Snapshot.load, str(path))
        return await asyncio.to_thread(_memory_by, snapshot, top)

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=10) as client:
            return controller_counters((await client.get(f"{self.url}/metrics")).text)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(timeout=30)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)
        log(f"controller {self.label} stopped")
