"""What every controller measurement shares: names, logging, statistics, ``/proc`` and
``/metrics`` readers, the benchmark's manifests and small helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import GitServer
from gitsail.model import Obj

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
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
        elif name == "gitsail_kube_requests_total":
            # Counted at the controller's client (gitsail.kube.flow.RequestStats).
            verb = labels.get("verb", "?")
            out["kube_requests"] = out.get("kube_requests", 0.0) + value
            if verb != "WATCH":
                out["kube_requests_non_watch"] = out.get("kube_requests_non_watch", 0.0) + value
            if verb.split("+")[0] not in {"GET", "LIST", "WATCH"} and "+dry-run" not in verb:
                out["kube_writes"] = out.get("kube_writes", 0.0) + value
            out[f"kube_{verb}"] = out.get(f"kube_{verb}", 0.0) + value
        elif name == "gitsail_python_gc_seconds_total":
            out["gc_seconds"] = out.get("gc_seconds", 0.0) + value
            out[f"gc{labels.get('generation', '?')}_seconds"] = value
        elif name == "gitsail_python_gc_runs_total":
            out[f"gc{labels.get('generation', '?')}_runs"] = value
        elif name in {"gitsail_kube_throttled_seconds_total", "gitsail_kube_rejected_total"}:
            out[name.removeprefix("gitsail_").removesuffix("_total")] = value
    return out


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


# -- main ------------------------------------------------------------------------------


@contextlib.contextmanager
def git_server() -> Iterator[GitServer]:
    root = Path(tempfile.mkdtemp(prefix="gitsail-bench-git-"))
    try:
        with GitServer(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
