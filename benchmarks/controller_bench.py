"""Controller benchmark: gitsail's controller as a separate process against a dev cluster.

    .venv/bin/python -m benchmarks.controller_bench [--apps 100,1000] [--quick]

Brings up (or reuses) the dev cluster ``bench`` (real etcd/apiserver/controller-manager/
scheduler, kwok fake nodes) and a loopback git server, runs ``python -m gitsail
controller`` as a child process (CPU and RSS read from ``/proc/<pid>``) and measures:

1. commit → applied through a signed GitHub push webhook (one ConfigMap app);
2. commit → applied by polling alone (a second controller with ``--resync 5 --jitter 0``);
3. drift → healed: a manual scale of a managed Deployment (merge patch on ``scale`` by
   another field manager) and the deletion of a managed ConfigMap;
4. convergence from empty of N apps in the flux-benchmark shape (Deployment at 0 replicas,
   ServiceAccount, Service, own namespace through ``CreateNamespace=true``), all rendered
   from ONE git repository (one directory per app): time until every Application reports
   Synced+Healthy, the controller's CPU seconds and peak RSS;
5. idle with those apps in place: controller CPU and RSS, and apiserver requests/s
   attributable to it (``apiserver_request_total`` delta, minus a baseline taken with the
   controller stopped).

Prints a table and writes ``benchmarks/results/controller.json`` (``controller-quick.json``
with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gitsail.app.install import install_crds
from gitsail.dev import cluster as devcluster
from gitsail.dev.cluster import free_ports
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import (
    Kube,
    KubeError,
    NotFoundKind,
    WatchCache,
    WatchEvent,
    load_kubeconfig,
)
from gitsail.model import Obj
from gitsail.toolchain import find_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLUSTER = "bench"
CONTROL_NS = "argocd"
APP_API = "argoproj.io/v1alpha1"
FLUX_NS = "flux-system"
# The Flux kinds the benchmark creates (and removes when it cleans up), in deletion order.
FLUX_KINDS = (
    ("notification.toolkit.fluxcd.io/v1", "Receiver"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
)
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"  # noqa: S105 (a loopback test secret)
NS_PREFIX = "bench-"
AUTOMATED = {
    "automated": {"prune": True, "selfHeal": True},
    "syncOptions": ["CreateNamespace=true"],
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# -- statistics ------------------------------------------------------------------------


def _pct(samples: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    data = sorted(samples)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "median_s": round(statistics.median(samples), 3),
        "p90_s": round(_pct(samples, 0.9), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


# -- /proc and metrics -----------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_s: float  # utime + stime of the controller process itself
    children_cpu_s: float  # cutime + cstime: git/kustomize/helm children it has waited for
    rss_mib: float
    hwm_mib: float  # VmHWM: peak RSS since the process started


def proc_sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # after "pid (comm) ": state=0 … utime=11 stime=12 cutime=13 cstime=14
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return ProcSample(
        at=time.monotonic(),
        cpu_s=(utime + stime) / CLK_TCK,
        children_cpu_s=(cutime + cstime) / CLK_TCK,
        rss_mib=int(status["VmRSS"].split()[0]) / 1024,
        hwm_mib=int(status["VmHWM"].split()[0]) / 1024,
    )


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str, prefix: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric name, labels, value) of every sample whose name starts with ``prefix``."""
    rows = []
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        rows.append((name, dict(_LABEL.findall(labels)), float(value)))
    return rows


Counts = dict[str, float]


def _top(counts: Counts, n: int | None = None) -> list[tuple[str, float]]:
    return sorted(counts.items(), key=lambda kv: -abs(kv[1]))[:n]


def apiserver_requests(cluster: devcluster.Cluster) -> Counts:
    """``apiserver_request_total`` as "VERB resource[/subresource]" → count (admin user)."""
    with cluster.http(timeout=30) as client:
        text = client.get("/metrics").text
    counts: Counts = {}
    for _, labels, value in parse_prometheus(text, "apiserver_request_total{"):
        resource = labels.get("resource") or "(non-resource)"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        dry = " dry-run" if labels.get("dry_run") else ""
        key = f"{labels.get('verb', '?')} {resource}{dry}"
        counts[key] = counts.get(key, 0.0) + value
    return counts


def _delta(after: Counts, before: Counts) -> Counts:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}


def controller_counters(text: str) -> dict[str, float]:
    """The controller's own counters worth reporting for an idle window."""
    out: dict[str, float] = {}
    for name, labels, value in parse_prometheus(text, "gitsail_"):
        if name == "gitsail_app_reconcile_duration_seconds_count":
            out["reconciles"] = out.get("reconciles", 0.0) + value
        elif name == "gitsail_app_reconcile_duration_seconds_sum":
            out["reconcile_seconds"] = out.get("reconcile_seconds", 0.0) + value
        elif name == "gitsail_git_requests_total":
            key = f"git_{labels.get('request_type', '?')}"
            out[key] = out.get(key, 0.0) + value
        elif name == "gitsail_render_cache_total":
            key = f"render_cache_{labels.get('result', '?')}"
            out[key] = out.get(key, 0.0) + value
        elif name == "gitsail_app_sync_total":
            out["syncs"] = out.get("syncs", 0.0) + value
    return out


# -- the controller process ------------------------------------------------------------


def _tool_binaries() -> dict[str, str]:
    """``GITSAIL_BIN_<NAME>`` for the renderers built in the user's cache: the controller
    runs on a private ``GITSAIL_CACHE_DIR`` (empty caches), where no tool is built."""
    env = {}
    for binary in ("kustomize", "helm"):
        with contextlib.suppress(FileNotFoundError):
            env["GITSAIL_BIN_" + binary.upper()] = str(find_binary(binary))
    return env


# The controller under tracemalloc (``--tracemalloc``): SIGUSR1 dumps a snapshot to the file
# named by GITSAIL_BENCH_TRACEMALLOC, then it goes on; otherwise ``python -m gitsail``.
_TRACED_MAIN = """
import os, signal, sys, tracemalloc
def _dump(*_):
    tracemalloc.take_snapshot().dump(os.environ["GITSAIL_BENCH_TRACEMALLOC"] + ".part")
    os.replace(os.environ["GITSAIL_BENCH_TRACEMALLOC"] + ".part",
               os.environ["GITSAIL_BENCH_TRACEMALLOC"])
signal.signal(signal.SIGUSR1, _dump)
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
        self.profiler = subprocess.Popen(
            [
                *(pyspy, "record", "--format", "raw", "--rate", "50", "--nonblocking"),
                *("--pid", str(self.pid), "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log(f"py-spy recording into {out}")

    async def _sample_rss(self) -> None:
        while True:
            with contextlib.suppress(OSError):
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
        self.proc.send_signal(signal.SIGUSR1)
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


# -- manifests -------------------------------------------------------------------------


def _podinfo(app: str) -> dict[str, str]:
    """The flux-benchmark app minus its Ingress: Deployment at 0 replicas, SA, Service.

    The Service is headless: the dev cluster's service range is a /24, which holds only
    ~250 ClusterIPs (``gitsail.dev.cluster.SERVICE_CIDR``), too few for 1000 apps.
    """
    labels = f"{{app.kubernetes.io/name: podinfo, app.kubernetes.io/instance: {app}}}"
    return {
        "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  labels: {labels}
spec:
  replicas: 0
  selector:
    matchLabels: {labels}
  template:
    metadata:
      labels: {labels}
    spec:
      serviceAccountName: podinfo
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.7.1
          ports: [{{name: http, containerPort: 9898}}]
          env: [{{name: PODINFO_UI_MESSAGE, value: {app}}}]
          resources: {{requests: {{cpu: 100m, memory: 32Mi}}, limits: {{memory: 64Mi}}}}
""",
        "serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: podinfo\n",
        "service.yaml": f"""\
apiVersion: v1
kind: Service
metadata:
  name: podinfo
spec:
  clusterIP: None
  selector: {labels}
  ports: [{{name: http, port: 9898, targetPort: http}}]
""",
    }


def _configmap(name: str, **data: str) -> str:
    body = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{body}"


DRIFT_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.invalid/web:1}]}
"""


def application(name: str, repo: str, path: str, namespace: str) -> Obj:
    return {
        "apiVersion": APP_API,
        "kind": "Application",
        "metadata": {"name": name, "namespace": CONTROL_NS, "labels": {"gitsail-bench": "1"}},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": AUTOMATED,
        },
    }


def github_push(repo_url: str, sha: str, files: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
            "commits": [{"id": sha, "added": [], "modified": files, "removed": []}],
        }
    ).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    return body, headers


# -- helpers ---------------------------------------------------------------------------


async def wait_for(
    probe: Callable[[], Awaitable[bool]], *, limit: float, interval: float = 0.05, what: str
) -> float:
    """Seconds until ``probe()`` is true; raises TimeoutError after ``limit`` s."""
    start = time.perf_counter()
    while True:
        if await probe():
            return time.perf_counter() - start
        if time.perf_counter() - start > limit:
            raise TimeoutError(f"{what}: not within {limit:.0f}s")
        await asyncio.sleep(interval)


def _synced_healthy(obj: Obj, revision: str) -> bool:
    status = obj.get("status") or {}
    sync = status.get("sync") or {}
    return (
        sync.get("status") == "Synced"
        and sync.get("revision") == revision
        and (status.get("health") or {}).get("status") == "Healthy"
    )


@dataclass
class Bench:
    cluster: devcluster.Cluster
    kube: Kube
    git: GitServer
    work: Path
    profile: bool
    controllers: list[ControllerProcess] = field(default_factory=list)
    controller_src: str | None = None  # another checkout's src/ (A/B)
    tracemalloc: bool = False
    controller_args: tuple[str, ...] = ()

    def controller(self, label: str, **kwargs: Any) -> ControllerProcess:
        kwargs.setdefault("pythonpath", self.controller_src)
        kwargs.setdefault("tracemalloc", self.tracemalloc)
        kwargs.setdefault("extra_args", self.controller_args)
        ctl = ControllerProcess(
            self.cluster.kubeconfig, self.work, label, profile=self.profile, **kwargs
        )
        self.controllers.append(ctl)
        return ctl

    async def stop_all(self) -> None:
        for ctl in self.controllers:
            await ctl.stop()

    async def prepare_cluster(self) -> None:
        await install_crds(self.kube)  # Argo CD's and Flux's
        # On a fresh cluster discovery may not serve a just-Established CRD yet.
        await wait_for(self._kinds_served, limit=60, interval=0.5, what="CRDs in discovery")
        for ns in (CONTROL_NS, FLUX_NS):
            if await self.kube.get("v1", "Namespace", ns) is None:
                await self.kube.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": CONTROL_NS},
            "stringData": {"webhook.github.secret": WEBHOOK_SECRET},
        }
        await self.kube.apply(secret, field_manager="gitsail-bench", force=True)
        await self.clean()

    async def _kinds_served(self) -> bool:
        try:
            for api_version, kind in ((APP_API, "Application"), *FLUX_KINDS):
                await self.kube.resource_for(api_version, kind)
        except NotFoundKind:
            await self.kube.discover(refresh=True)
            return False
        return True

    async def clean(self) -> None:
        """Remove every Application, every Flux object in ``flux-system`` and every
        ``bench-*`` namespace; wait until gone. Finalizers are dropped first: the
        namespaces go anyway, and no controller may be running."""
        sem = asyncio.Semaphore(32)

        async def delete(api_version: str, kind: str, name: str, namespace: str | None) -> None:
            async with sem:
                with contextlib.suppress(KubeError):
                    if kind != "Namespace":
                        await self.kube.merge_patch(
                            api_version, kind, name, {"metadata": {"finalizers": None}}, namespace
                        )
                    await self.kube.delete(api_version, kind, name, namespace, "Background")

        owners = [(APP_API, "Application", CONTROL_NS), *((a, k, FLUX_NS) for a, k in FLUX_KINDS)]
        names: list[str] = []
        for api_version, kind, namespace in owners:
            found = [
                o["metadata"]["name"] for o in await self.kube.list(api_version, kind, namespace)
            ]
            await asyncio.gather(*(delete(api_version, kind, n, namespace) for n in found))
            names += found
        namespaces = [
            n["metadata"]["name"]
            for n in await self.kube.list("v1", "Namespace")
            if n["metadata"]["name"].startswith(NS_PREFIX)
        ]
        await asyncio.gather(*(delete("v1", "Namespace", n, None) for n in namespaces))
        if not names and not namespaces:
            return
        log(
            f"cleaning: deleted {len(names)} Applications or Flux objects and "
            f"{len(namespaces)} namespaces"
        )

        async def gone() -> bool:
            left = [
                n
                for n in await self.kube.list("v1", "Namespace")
                if n["metadata"]["name"].startswith(NS_PREFIX)
            ]
            if left:
                return False
            for api_version, kind, namespace in owners:
                if await self.kube.list(api_version, kind, namespace):
                    return False
            return True

        took = await wait_for(gone, limit=600, interval=1, what="cleanup")
        log(f"cleaning took {took:.1f}s")

    async def create_apps(self, apps: list[Obj]) -> None:
        sem = asyncio.Semaphore(32)

        async def one(obj: Obj) -> None:
            async with sem:
                await self.kube.create(obj)

        await asyncio.gather(*(one(a) for a in apps))

    async def wait_apps(self, names: list[str], revision: str, limit: float) -> None:
        async def done() -> bool:
            objs = await asyncio.gather(
                *(self.kube.get(APP_API, "Application", n, CONTROL_NS) for n in names)
            )
            return all(o is not None and _synced_healthy(o, revision) for o in objs)

        await wait_for(done, limit=limit, interval=0.2, what=f"apps {names} synced")


# -- 1–3: latency ----------------------------------------------------------------------


async def latency_phase(bench: Bench, reps: int) -> dict[str, Any]:
    kube = bench.kube
    bench.git.create_repo("latency")
    repo = bench.git.url("latency")
    work = Workdir(repo)
    ns_lat = f"{NS_PREFIX}latency"
    # One app per drift repetition: each measures a first heal, as a real incident would
    # be. Repeated drift on one app is slowed on purpose by the self-heal backoff
    # (2 s x 3^n until 330 s pass without drift), which would measure the backoff instead.
    drift_apps = [(f"drift{i}", f"{NS_PREFIX}drift{i}") for i in range(2 * reps)]
    revision = await asyncio.to_thread(
        work.commit_and_push,
        {
            "latency/cm.yaml": _configmap("lat", v="0"),
            "drift/deployment.yaml": DRIFT_DEPLOYMENT,
            "drift/cm.yaml": _configmap("drift-cm", a="1"),
        },
        "initial",
    )
    ctl = bench.controller("webhook", resync=120, jitter=60)
    await ctl.start()
    await bench.create_apps(
        [application("lat", repo, "latency", ns_lat)]
        + [application(name, repo, "drift", ns) for name, ns in drift_apps]
    )
    await bench.wait_apps(["lat", *(name for name, _ in drift_apps)], revision, limit=180)

    async def value_is(v: str) -> bool:
        cm = await kube.get("v1", "ConfigMap", "lat", ns_lat)
        return cm is not None and (cm.get("data") or {}).get("v") == v

    counter = iter(range(1, 10**6))
    webhook: list[float] = []
    push: list[float] = []
    ack: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(reps):
            value = f"w{next(counter)}"
            t0 = time.perf_counter()
            sha = await asyncio.to_thread(
                work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
            )
            t_pushed = time.perf_counter()
            body, headers = github_push(repo, sha, ["latency/cm.yaml"])
            resp = await client.post(f"{ctl.url}/api/webhook", content=body, headers=headers)
            t_ack = time.perf_counter()
            assert resp.status_code == 200, resp.text
            assert resp.json()["refreshed"], resp.text
            await wait_for(lambda v=value: value_is(v), limit=60, what="webhook apply")  # type: ignore[misc]
            done = time.perf_counter()
            webhook.append(done - t_pushed)
            push.append(t_pushed - t0)
            ack.append(t_ack - t_pushed)
            await asyncio.sleep(1)
    log(f"webhook: median {statistics.median(webhook):.2f}s over {reps}")

    # 3. drift → healed
    async def replicas_are(ns: str, n: int) -> bool:
        d = await kube.get("apps/v1", "Deployment", "web", ns)
        return d is not None and d["spec"].get("replicas") == n

    def not_healed(phase: str, app_name: str, repetition: int) -> dict[str, Any]:
        return {"phase": phase, "app": app_name, "repetition": repetition}

    scale: list[float] = []
    failures: list[dict[str, Any]] = []
    for i, (app_name, ns) in enumerate(drift_apps[:reps]):
        await kube.merge_patch(
            "apps/v1",
            "Deployment",
            "web",
            {"spec": {"replicas": 2}},
            namespace=ns,
            subresource="scale",
            field_manager="kubectl-scale",
        )
        try:
            scale.append(
                await wait_for(
                    lambda ns=ns: replicas_are(ns, 0),  # type: ignore[misc]
                    limit=60,
                    what="scale healed",
                )
            )
        except TimeoutError:
            failures.append(not_healed("drift_scale", app_name, i + 1))
            log(f"drift scale NOT healed within 60 s: {failures[-1]}")
    if scale:
        log(f"drift scale: median {statistics.median(scale):.2f}s over {len(scale)}")

    deleted: list[float] = []
    for i, (app_name, ns) in enumerate(drift_apps[reps:]):
        cm = await kube.get("v1", "ConfigMap", "drift-cm", ns)
        assert cm is not None
        uid = cm["metadata"]["uid"]
        await kube.delete("v1", "ConfigMap", "drift-cm", ns, "Background")

        async def recreated(old: str = uid, ns: str = ns) -> bool:
            obj = await kube.get("v1", "ConfigMap", "drift-cm", ns)
            return obj is not None and obj["metadata"]["uid"] != old

        try:
            deleted.append(await wait_for(recreated, limit=60, what="deleted ConfigMap healed"))
        except TimeoutError:
            failures.append(not_healed("drift_delete", app_name, i + 1))
            log(f"drift delete NOT healed within 60 s: {failures[-1]}")
    if deleted:
        log(f"drift delete: median {statistics.median(deleted):.2f}s over {len(deleted)}")
    await ctl.stop()

    # 2. polling only
    poll_resync = 5.0
    poller = bench.controller("polling", resync=poll_resync, jitter=0)
    await poller.start()
    polling: list[float] = []
    for _ in range(reps):
        # A random phase against the poll timer, as a real commit would have.
        await asyncio.sleep(random.uniform(0, poll_resync))  # noqa: S311
        value = f"p{next(counter)}"
        await asyncio.to_thread(
            work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
        )
        polling.append(
            await wait_for(lambda v=value: value_is(v), limit=60, what="polling apply")  # type: ignore[misc]
        )
    log(f"polling: median {statistics.median(polling):.2f}s over {reps}")
    await poller.stop()
    work.close()
    await bench.clean()
    return {
        "webhook": {
            "what": "git push done -> live ConfigMap shows the new value (webhook POSTed "
            "right after the push)",
            **_summary(webhook),
            "push_median_s": round(statistics.median(push), 3),
            "webhook_ack_median_s": round(statistics.median(ack), 3),
            "controller": "--resync 120 --jitter 60",
        },
        "polling": {
            "what": "git push done -> live ConfigMap shows the new value, no webhook",
            **_summary(polling),
            "controller": f"--resync {poll_resync:g} --jitter 0",
            "interval_s": poll_resync,
        },
        "drift_scale": {
            "what": "merge patch of deployments/scale (manager kubectl-scale, 0 -> 2) -> "
            "spec.replicas back to 0",
            **_summary(scale),
        },
        "failures": failures,
        "drift_delete": {
            "what": "DELETE of a managed ConfigMap -> a new one exists",
            **(_summary(deleted) if deleted else {"n": 0}),
        },
    }


# -- 4–5: convergence and idle ---------------------------------------------------------


def fleet_files(count: int) -> dict[str, str]:
    files = {}
    for i in range(count):
        for name, text in _podinfo(f"app-{i:04d}").items():
            files[f"apps/app-{i:04d}/{name}"] = text
    return files


async def convergence_phase(
    bench: Bench,
    repo: str,
    revision: str,
    count: int,
    *,
    limit: float,
    idle_s: float,
    baseline_s: float,
) -> dict[str, Any]:
    kube = bench.kube
    ctl = bench.controller(f"converge-{count}", resync=120, jitter=60)
    await ctl.start()
    names = [f"app-{i:04d}" for i in range(count)]
    watch = WatchCache(kube, APP_API, "Application", CONTROL_NS)
    await watch.start()
    events = watch.subscribe()
    m0 = await ctl.metrics()  # (before the CPU sample: a scrape costs the controller CPU)
    s0 = ctl.sample()
    api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    t0 = time.monotonic()
    creating = asyncio.create_task(
        bench.create_apps([application(n, repo, f"apps/{n}", f"{NS_PREFIX}{n}") for n in names])
    )
    converged: dict[str, float] = {}
    deadline = t0 + limit
    next_report = t0 + 15
    created_s: float | None = None
    while len(converged) < count and time.monotonic() < deadline:
        if created_s is None and creating.done():
            creating.result()
            created_s = time.monotonic() - t0
        try:
            event: WatchEvent = await asyncio.wait_for(events.get(), timeout=1)
        except TimeoutError:
            event = None  # type: ignore[assignment]
        if event is not None and event.type != "DELETED":
            name = str(event.object["metadata"]["name"])
            if name not in converged and _synced_healthy(event.object, revision):
                converged[name] = time.monotonic() - t0
        if time.monotonic() > next_report:
            log(f"{count} apps: {len(converged)} Synced+Healthy at {time.monotonic() - t0:.0f}s")
            next_report += 15
    # Re-read the cache in case an event was missed; it is the authority.
    for obj in watch.items():
        name = str(obj["metadata"]["name"])
        if name not in converged and _synced_healthy(obj, revision):
            converged[name] = time.monotonic() - t0
    total = time.monotonic() - t0 if len(converged) == count else None
    elapsed = time.monotonic() - t0
    s1 = ctl.sample()
    m1 = await ctl.metrics()
    api1 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    await creating
    created_s = created_s or elapsed
    watch.unsubscribe(events)
    await watch.stop()
    times = sorted(converged.values())
    timeline = {
        f"{int(t)}s": sum(1 for x in times if x <= t) for t in range(30, int(elapsed) + 30, 30)
    }
    conv_requests = _delta(api1, api0)
    result: dict[str, Any] = {
        "apps": count,
        "objects_per_app": "Deployment (0 replicas) + ServiceAccount + Service + Namespace",
        "converged": len(converged),
        "total_s": round(total, 1) if total is not None else None,
        "elapsed_s": round(elapsed, 1),
        "apps_per_min": round(len(converged) / elapsed * 60, 1),
        "create_all_s": round(created_s, 1),
        "first_app_s": round(times[0], 1) if times else None,
        "p50_app_s": round(_pct(times, 0.5), 1) if times else None,
        "p90_app_s": round(_pct(times, 0.9), 1) if times else None,
        "timeline_converged": timeline,
        "controller_cpu_s": round(s1.cpu_s - s0.cpu_s, 1),
        "controller_children_cpu_s": round(s1.children_cpu_s - s0.children_cpu_s, 1),
        "controller_cpu_cores_avg": round((s1.cpu_s - s0.cpu_s) / elapsed, 2),
        "controller_peak_rss_mib": round(max(ctl.peak_rss_mib, s1.hwm_mib), 1),
        "controller_rss_start_mib": round(s0.rss_mib, 1),  # leading, no app yet
        "controller_rss_end_mib": round(s1.rss_mib, 1),
        "apiserver_requests": int(sum(conv_requests.values())),
        "apiserver_requests_top": {k: int(v) for k, v in _top(conv_requests, 12)},
        "apiserver_requests_by_request": {k: int(v) for k, v in _top(conv_requests) if v >= 1},
        "controller_counters": {k: round(m1.get(k, 0.0) - m0.get(k, 0.0), 2) for k in m1},
    }
    log(
        f"{count} apps: {len(converged)}/{count} converged in {elapsed:.1f}s, controller "
        f"{result['controller_cpu_s']} CPU s, peak RSS {result['controller_peak_rss_mib']} MiB"
    )
    if total is None:
        result["note"] = f"not converged within the {limit:.0f}s limit"
    # 5. idle, with those apps in place.
    result["idle"] = await idle_phase(
        bench,
        ctl,
        count=count,
        idle_s=idle_s,
        baseline_s=baseline_s,
        poll_period=ctl.resync + ctl.jitter / 2,
        period_source=f"--resync {ctl.resync:g} + --jitter {ctl.jitter:g} / 2",
    )
    # Requests per app during convergence, net of the background rate.
    base_rate = result["idle"]["apiserver_rps_baseline"]
    result["apiserver_requests_per_app"] = round(
        (result["apiserver_requests"] - base_rate * elapsed) / max(len(converged), 1), 1
    )
    return result


async def idle_phase(
    bench: Bench,
    ctl: ControllerProcess,
    *,
    count: int,
    idle_s: float,
    baseline_s: float,
    poll_period: float,
    period_source: str,
    passes: float | None = None,
) -> dict[str, Any]:
    """Controller CPU/RSS and the apiserver requests it causes while nothing changes.

    First lets the cluster finish what the convergence started (at 1000 apps
    kube-controller-manager, at its default 20 QPS, is still rolling Deployment status
    and ReplicaSets for minutes; each change is a watch event the controller reacts to),
    then measures ``idle_s`` seconds with the controller and ``baseline_s`` seconds
    without it (the controller is stopped at the end). ``passes`` is the number of
    reconcile passes the window holds when the controller's own counters do not say it
    (the Flux kinds); ``poll_period`` the mean time between two passes of one object.
    """
    settle_s, settle_rps = await settle(bench.cluster, limit=300)
    log(f"settled after {settle_s:.0f}s ({settle_rps:.1f} non-watch req/s)")
    m_a = await ctl.metrics()
    a = ctl.sample()
    api_a = await asyncio.to_thread(apiserver_requests, bench.cluster)
    await asyncio.sleep(idle_s)
    api_b = await asyncio.to_thread(apiserver_requests, bench.cluster)
    b = ctl.sample()
    m_b = await ctl.metrics()
    window = b.at - a.at
    memory = await ctl.memory()  # (with --tracemalloc)
    await ctl.stop()
    await asyncio.sleep(5)  # watches the controller held are closed and counted
    api_c = await asyncio.to_thread(apiserver_requests, bench.cluster)
    c_at = time.monotonic()
    await asyncio.sleep(baseline_s)
    api_d = await asyncio.to_thread(apiserver_requests, bench.cluster)
    base_window = time.monotonic() - c_at
    idle_req = _delta(api_b, api_a)
    base_req = _delta(api_d, api_c)
    idle_rate = sum(idle_req.values()) / window
    base_rate = sum(base_req.values()) / base_window
    # Watches are counted when they end (kube-controller-manager's close every 5-10 min at
    # random), which makes them the noisiest term of the difference; shown apart.
    idle_nw = sum(v for k, v in idle_req.items() if not k.startswith("WATCH")) / window
    base_nw = sum(v for k, v in base_req.items() if not k.startswith("WATCH")) / base_window
    by_kind: Counts = {
        k: round(idle_req.get(k, 0) / window - base_req.get(k, 0) / base_window, 3)
        for k in set(idle_req) | set(base_req)
    }
    ctl_counts = {k: m_b.get(k, 0.0) - m_a.get(k, 0.0) for k in m_b}
    polls = ctl_counts.get("reconciles", 0.0) if passes is None else passes
    # The window may be shorter than one poll cycle (Argo: resync 120 s + up to 60 s
    # jitter), so it holds only some of the polls; scale what a poll costs to every app
    # polled once per cycle on average.
    per_poll = (idle_nw - base_nw) * window / polls if polls else None
    steady = per_poll * count / poll_period if per_poll is not None else None
    idle = {
        "window_s": round(window, 1),
        "settle_s": round(settle_s, 1),
        "settle_until": f"< {QUIET_RPS:g} non-watch apiserver req/s over {SETTLE_STEP:g} s "
        f"(last {settle_rps:.2f}), at most 300 s after convergence",
        "controller_cpu_pct": round((b.cpu_s - a.cpu_s) / window * 100, 2),
        "controller_children_cpu_pct": round(
            (b.children_cpu_s - a.children_cpu_s) / window * 100, 2
        ),
        "controller_rss_mib": round(b.rss_mib, 1),
        "apiserver_rps_with_controller": round(idle_rate, 2),
        "apiserver_rps_baseline": round(base_rate, 2),
        "baseline_window_s": round(base_window, 1),
        "apiserver_rps_controller": round(idle_rate - base_rate, 2),
        "apiserver_rps_controller_without_watch": round(idle_nw - base_nw, 2),
        "apiserver_rps_controller_by_request": {k: v for k, v in _top(by_kind) if abs(v) >= 0.01},
        "controller_counters": {k: round(v, 2) for k, v in ctl_counts.items()},
        "passes_in_window": round(polls, 1),
        "passes_from": "controller counter" if passes is None else "expected from intervals",
        "apiserver_requests_per_poll": round(per_poll, 2) if per_poll is not None else None,
        "apiserver_rps_steady_estimate": round(steady, 2) if steady is not None else None,
        "steady_estimate_method": "requests per poll (non-watch, net of baseline) x apps / "
        f"{poll_period:g} s (mean poll period: {period_source})",
        "controller_cpu_s_per_poll": round((b.cpu_s - a.cpu_s) / polls, 4) if polls else None,
    }
    if memory is not None:
        idle["tracemalloc"] = memory
    log(
        f"idle {count}: CPU {idle['controller_cpu_pct']}%, RSS {b.rss_mib:.0f} MiB, "
        f"apiserver {idle_rate - base_rate:.2f} req/s (baseline {base_rate:.2f})"
    )
    return idle


QUIET_RPS = 3.0
SETTLE_STEP = 10.0


def _non_watch(counts: Counts) -> float:
    return sum(v for k, v in counts.items() if not k.startswith("WATCH"))


async def settle(cluster: devcluster.Cluster, *, limit: float) -> tuple[float, float]:
    """Wait (15 s at least) until the apiserver sees < QUIET_RPS non-watch requests/s."""
    start = time.monotonic()
    await asyncio.sleep(15)
    before = _non_watch(await asyncio.to_thread(apiserver_requests, cluster))
    while True:
        await asyncio.sleep(SETTLE_STEP)
        now = _non_watch(await asyncio.to_thread(apiserver_requests, cluster))
        rate = (now - before) / SETTLE_STEP
        before = now
        if rate < QUIET_RPS or time.monotonic() - start > limit:
            return time.monotonic() - start, rate


# -- main ------------------------------------------------------------------------------


@contextlib.contextmanager
def git_server() -> Iterator[GitServer]:
    root = Path(tempfile.mkdtemp(prefix="gitsail-bench-git-"))
    try:
        with GitServer(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def run(args: argparse.Namespace, counts: list[int], reps: int) -> dict[str, Any]:
    existed = devcluster.load(CLUSTER)
    reused = existed is not None and existed.alive()
    cluster = await asyncio.to_thread(devcluster.up, CLUSTER, nodes=2)
    log(f"cluster {CLUSTER} {'reused' if reused else 'started'} at {cluster.server}")
    work = Path(tempfile.mkdtemp(prefix="gitsail-controller-bench-"))
    log(f"controller logs in {work}")
    results: dict[str, Any] = {}
    try:
        async with Kube(await load_kubeconfig(str(cluster.kubeconfig))) as kube:
            with git_server() as git:
                bench = Bench(
                    cluster,
                    kube,
                    git,
                    work,
                    profile=args.profile,
                    controller_src=args.controller_src,
                    tracemalloc=args.tracemalloc,
                    controller_args=tuple(args.controller_arg),
                )
                try:
                    await bench.prepare_cluster()
                    if not args.skip_latency:
                        results["latency"] = await latency_phase(bench, reps)
                    git.create_repo("fleet")
                    repo = git.url("fleet")
                    fleet = Workdir(repo)
                    started = time.monotonic()
                    revision = await asyncio.to_thread(
                        fleet.commit_and_push, fleet_files(max(counts)), "fleet"
                    )
                    log(
                        f"fleet repo: {max(counts)} app directories pushed in "
                        f"{time.monotonic() - started:.1f}s"
                    )
                    results["convergence"] = []
                    for index, count in enumerate(counts):
                        if index:
                            await bench.clean()
                        results["convergence"].append(
                            await convergence_phase(
                                bench,
                                repo,
                                revision,
                                count,
                                limit=args.timeout or 120 + 0.6 * count,
                                idle_s=args.idle,
                                baseline_s=args.baseline,
                            )
                        )
                    fleet.close()
                finally:
                    await bench.stop_all()
                    if reused and not args.keep_cluster:
                        with contextlib.suppress(Exception):
                            await bench.clean()
    finally:
        if not args.keep_cluster and not reused:
            await asyncio.to_thread(devcluster.down, CLUSTER)
            log(f"cluster {CLUSTER} stopped")
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
    return results


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _print_tables(results: dict[str, Any]) -> None:
    lat = results.get("latency")
    if lat:
        header = f"{'latency':<34}{'n':>4}{'median s':>10}{'p90 s':>8}{'max s':>8}"
        print(header)
        print("-" * len(header))
        rows = [
            ("commit -> applied, webhook", lat["webhook"]),
            (f"commit -> applied, poll {lat['polling']['interval_s']:g}s", lat["polling"]),
            ("drift: manual scale -> healed", lat["drift_scale"]),
            ("drift: delete -> recreated", lat["drift_delete"]),
        ]
        for label, r in rows:
            if not r["n"]:
                print(f"{label:<34}{0:>4}  (not healed within 60 s, see failures)")
                continue
            print(
                f"{label:<34}{r['n']:>4}{r['median_s']:>10.2f}{r['p90_s']:>8.2f}{r['max_s']:>8.2f}"
            )
        print()
    conv = results.get("convergence") or []
    if conv:
        header = (
            f"{'apps':>6}{'converged':>11}{'total s':>9}{'apps/min':>10}{'CPU s':>8}"
            f"{'peak MiB':>10}{'idle CPU%':>10}{'idle MiB':>10}{'idle req/s':>11}"
        )
        print(header)
        print("-" * len(header))
        for r in conv:
            total = f"{r['total_s']:.1f}" if r["total_s"] is not None else "-"
            idle = r.get("idle") or {}
            print(
                f"{r['apps']:>6}{r['converged']:>11}{total:>9}{r['apps_per_min']:>10.1f}"
                f"{r['controller_cpu_s']:>8.1f}{r['controller_peak_rss_mib']:>10.1f}"
                f"{idle.get('controller_cpu_pct', float('nan')):>10.2f}"
                f"{idle.get('controller_rss_mib', float('nan')):>10.1f}"
                f"{idle.get('apiserver_rps_controller', float('nan')):>11.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default=None, help="app counts, e.g. 100,1000 (default)")
    parser.add_argument("--quick", action="store_true", help="100 apps, 5 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="latency repetitions (12)")
    parser.add_argument("--idle", type=float, default=None, help="idle window s (120)")
    parser.add_argument("--baseline", type=float, default=None, help="baseline window s (60)")
    parser.add_argument("--timeout", type=float, default=None, help="convergence timeout s")
    parser.add_argument("--skip-latency", action="store_true", help="only convergence/idle")
    parser.add_argument("--profile", action="store_true", help="py-spy the controllers")
    parser.add_argument("--keep-cluster", action="store_true", help="leave cluster and apps")
    parser.add_argument("--keep-logs", action="store_true", help="keep controller logs")
    parser.add_argument("--out", default=None, help="results file (default by --quick)")
    parser.add_argument(
        "--controller-src",
        default=None,
        help="run the controller from another checkout's src/ (A/B against an older commit)",
    )
    parser.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        help="one more flag for the controller, e.g. --controller-arg=--no-flux (repeatable)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the controller's allocations; where memory is after the idle window "
        "(CPU figures are then not comparable)",
    )
    args = parser.parse_args()
    if args.controller_src:
        args.controller_src = str(Path(args.controller_src).resolve())
    counts = [int(x) for x in (args.apps or ("100" if args.quick else "100,1000")).split(",")]
    reps = args.reps or (5 if args.quick else 12)
    args.idle = args.idle or (60.0 if args.quick else 120.0)
    args.baseline = args.baseline or (30.0 if args.quick else 60.0)
    started = time.monotonic()
    results = asyncio.run(run(args, counts, reps))
    duration = time.monotonic() - started
    _print_tables(results)
    command = ".venv/bin/python -m benchmarks.controller_bench " + " ".join(sys.argv[1:])
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    out = (
        Path(args.out)
        if args.out
        else RESULTS_DIR / ("controller-quick.json" if args.quick else "controller.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "controller",
                "command": command.strip(),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "gitsail_commit": revision,
                "controller_src": args.controller_src or "this checkout",
                "controller_args": args.controller_arg,
                "tracemalloc": args.tracemalloc,
                "duration_s": round(duration, 1),
                "machine": {
                    "cpus": os.cpu_count(),
                    "cpu": _cpu_model(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "setup": {
                    "cluster": "gitsail dev cluster: etcd, kube-apiserver, controller-manager, "
                    "scheduler, kwok with 2 fake nodes, all on this machine",
                    "controller": "python -m gitsail controller -n argocd --no-leader-elect "
                    "--resync 120 --jitter 60 --concurrency 10 (separate process)",
                    "git": "git http-backend on 127.0.0.1, in the benchmark process",
                    "repetitions": reps,
                },
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out} ({duration / 60:.1f} min)")


if __name__ == "__main__":
    main()
