"""Controller benchmark, Flux mode: GitRepository + Kustomizations on gitsail's controller.

    .venv/bin/python -m benchmarks.flux_bench [--apps 100,1000] [--quick]

The same machinery as the Argo CD mode (``controller_bench``: the dev cluster ``bench``, the
loopback git server, ``python -m gitsail controller`` as a separate process whose CPU and
RSS come from ``/proc``, the apiserver's ``/metrics``), with Flux objects in ``flux-system``
(the controller runs with ``-n argocd -n flux-system``):

1. commit → applied through a Flux ``Receiver`` (type ``github``, signed push): the push
   is POSTed to the Receiver's ``/hook/<digest>`` path, which asks the GitRepository to
   reconcile; its new artifact wakes its Kustomization, which applies a ConfigMap. Timed
   from "push done" until the live ConfigMap shows the new value.
2. commit → applied by polling alone: a GitRepository with ``interval: 5s`` (no Receiver);
   each push waits a random 0–5 s first.
3. convergence from empty of N Kustomizations in the flux-benchmark shape: ONE
   GitRepository (``interval: 1m``) holding ``apps/app-NNNN/`` (a Namespace, a Deployment
   at 0 replicas, a ServiceAccount, a Service: the Argo mode's objects, its namespace given
   as an object since Flux has no ``CreateNamespace``); one Kustomization per directory
   with ``targetNamespace``, ``prune: true``, ``wait: true`` (Ready means every object is
   healthy, like Argo's Healthy), all created at once (32 concurrent POSTs). Timed until
   every Kustomization is ``Ready=True`` with ``lastAppliedRevision`` at the pushed commit.
4. idle with those Kustomizations in place: controller CPU and RSS, and the apiserver
   requests attributable to it. The Kustomizations' ``interval`` is the idle window (2m by
   default), so the window holds about one pass of each (Flux's pass is a build plus a
   server-side dry run of every object; gitsail's reuses an unchanged build and applies
   only objects that may have changed, see docs/flux.md); the per-pass cost
   is then scaled to Flux's bootstrap default interval (10m).

Drift is not measured: Flux corrects drift only at the Kustomization's next interval.

Prints a table and writes ``benchmarks/results/flux.json`` (``flux-quick.json`` with
``--quick``).
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks.controller_bench import (
    CLUSTER,
    CONTROL_NS,
    FLUX_NS,
    NS_PREFIX,
    RESULTS_DIR,
    ROOT,
    Bench,
    _configmap,
    _cpu_model,
    _delta,
    _pct,
    _podinfo,
    _summary,
    _top,
    apiserver_requests,
    git_server,
    idle_phase,
    log,
    wait_for,
)
from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.flux_receiver import webhook_path
from gitsail.kube import Kube, WatchCache, WatchEvent, load_kubeconfig
from gitsail.model import Obj

KS_API = "kustomize.toolkit.fluxcd.io/v1"
GR_API = "source.toolkit.fluxcd.io/v1"
RECEIVER_API = "notification.toolkit.fluxcd.io/v1"
RECEIVER_TOKEN = "bench-receiver-token-0123456789"  # noqa: S105 (a loopback test secret)
NAMESPACES = (CONTROL_NS, FLUX_NS)
REFS_TTL = 5.0  # the controller's shared ls-remote answer: min(5 s, resync / 10)
DEFAULT_KS_INTERVAL = 600.0  # Flux bootstrap's Kustomization interval (10m)


def _go_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds < 60 or seconds % 60 else f"{int(seconds // 60)}m"


def git_repository(name: str, url: str, interval: str) -> Obj:
    return {
        "apiVersion": GR_API,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": FLUX_NS, "labels": {"gitsail-bench": "1"}},
        "spec": {"interval": interval, "url": url, "ref": {"branch": "main"}, "timeout": "60s"},
    }


def kustomization(name: str, source: str, path: str, namespace: str, interval: str) -> Obj:
    """flux-benchmark's Kustomization (its ``retryInterval`` and ``timeout``), from Git."""
    return {
        "apiVersion": KS_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": FLUX_NS, "labels": {"gitsail-bench": "1"}},
        "spec": {
            "interval": interval,
            "retryInterval": "2m",
            "timeout": "5m",
            "sourceRef": {"kind": "GitRepository", "name": source},
            "path": path,
            "prune": True,
            "wait": True,
            "targetNamespace": namespace,
        },
    }


def receiver(name: str, source: str) -> list[Obj]:
    secret: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-token", "namespace": FLUX_NS},
        "stringData": {"token": RECEIVER_TOKEN},
    }
    rcv: Obj = {
        "apiVersion": RECEIVER_API,
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": FLUX_NS},
        "spec": {
            "type": "github",
            "events": ["push"],
            "secretRef": {"name": f"{name}-token"},
            "resources": [{"kind": "GitRepository", "name": source}],
        },
    }
    return [secret, rcv]


def github_push(repo_url: str, sha: str, files: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
            "commits": [{"id": sha, "added": [], "modified": files, "removed": []}],
        }
    ).encode()
    signature = hmac.new(RECEIVER_TOKEN.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def ready_at(obj: Obj, revision: str) -> bool:
    """Ready=True for the current generation, at ``revision`` (``main@sha1:<sha>``)."""
    status = obj.get("status") or {}
    if status.get("lastAppliedRevision") != revision:
        return False
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


async def apply_all(kube: Kube, objs: list[Obj]) -> None:
    sem = asyncio.Semaphore(32)

    async def one(obj: Obj) -> None:
        async with sem:
            await kube.apply(obj, field_manager="gitsail-bench", force=True)

    await asyncio.gather(*(one(o) for o in objs))


async def create_namespace(kube: Kube, name: str) -> None:
    if await kube.get("v1", "Namespace", name) is None:
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def wait_ready(kube: Kube, names: list[str], revision: str, limit: float) -> None:
    async def done() -> bool:
        objs = await asyncio.gather(*(kube.get(KS_API, "Kustomization", n, FLUX_NS) for n in names))
        return all(o is not None and ready_at(o, revision) for o in objs)

    await wait_for(done, limit=limit, interval=0.2, what=f"Kustomizations {names} ready")


async def describe(kube: Kube, name: str, *, expected: str) -> None:
    """Log what the GitRepository and Kustomization ``name`` say (after a timeout)."""
    log(f"expected commit {expected}")
    for api_version, kind in ((GR_API, "GitRepository"), (KS_API, "Kustomization")):
        obj = await kube.get(api_version, kind, name, FLUX_NS) or {}
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        log(
            f"{kind} {name}: annotations {meta.get('annotations')}, status "
            + json.dumps(
                {k: v for k, v in status.items() if k not in ("inventory", "history")},
                sort_keys=True,
            )
        )


# -- 1–2: latency ----------------------------------------------------------------------


async def latency_phase(bench: Bench, reps: int) -> dict[str, Any]:
    kube = bench.kube
    repos: dict[str, tuple[str, Workdir, str]] = {}
    for mode, interval in (("hook", "10m"), ("poll", "5s")):
        name = f"lat-{mode}"
        bench.git.create_repo(name)
        url = bench.git.url(name)
        work = Workdir(url)
        sha = await asyncio.to_thread(
            work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v="0")}, "initial"
        )
        repos[mode] = (url, work, sha)
        await create_namespace(kube, f"{NS_PREFIX}{name}")
        await apply_all(kube, [git_repository(name, url, interval)])
        await apply_all(kube, [kustomization(name, name, "./latency", f"{NS_PREFIX}{name}", "60m")])
    await apply_all(kube, receiver("lat-hook", "lat-hook"))
    ctl = bench.controller("flux-latency", namespaces=NAMESPACES)
    await ctl.start()
    for mode, (_, _, sha) in repos.items():
        await wait_ready(kube, [f"lat-{mode}"], f"main@sha1:{sha}", limit=180)

    async def path_published() -> bool:
        rcv = await kube.get(RECEIVER_API, "Receiver", "lat-hook", FLUX_NS)
        return bool(((rcv or {}).get("status") or {}).get("webhookPath"))

    await wait_for(path_published, limit=60, what="Receiver ready")
    path = webhook_path(RECEIVER_TOKEN, "lat-hook", FLUX_NS)

    async def value_is(mode: str, v: str) -> bool:
        cm = await kube.get("v1", "ConfigMap", "lat", f"{NS_PREFIX}lat-{mode}")
        return cm is not None and (cm.get("data") or {}).get("v") == v

    counter = iter(range(1, 10**6))
    hook: list[float] = []
    push: list[float] = []
    ack: list[float] = []
    url, work, _ = repos["hook"]
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(reps):
            # The controller answers every resolution of a repository from one ls-remote
            # for REFS_TTL s (``GitSource.refs_ttl``), and a Receiver's request does not
            # drop it (the Argo webhook does): a push within REFS_TTL s of the last
            # ls-remote would wait for the next interval (10m). Wait it out; see README.
            await asyncio.sleep(REFS_TTL + 1)
            value = f"w{next(counter)}"
            t0 = time.perf_counter()
            sha = await asyncio.to_thread(
                work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
            )
            t_pushed = time.perf_counter()
            body, headers = github_push(url, sha, ["latency/cm.yaml"])
            resp = await client.post(f"{ctl.url}{path}", content=body, headers=headers)
            t_ack = time.perf_counter()
            assert resp.status_code == 200, resp.text
            try:
                await wait_for(
                    lambda v=value: value_is("hook", v),  # type: ignore[misc]
                    limit=60,
                    what="Receiver apply",
                )
            except TimeoutError:
                await describe(kube, "lat-hook", expected=sha)
                raise
            done = time.perf_counter()
            hook.append(done - t_pushed)
            push.append(t_pushed - t0)
            ack.append(t_ack - t_pushed)
    log(f"receiver: median {statistics.median(hook):.2f}s over {reps}")

    poll_interval = 5.0
    polling: list[float] = []
    _, work_poll, _ = repos["poll"]
    for _ in range(reps):
        await asyncio.sleep(random.uniform(0, poll_interval))  # noqa: S311
        value = f"p{next(counter)}"
        await asyncio.to_thread(
            work_poll.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
        )
        polling.append(
            await wait_for(
                lambda v=value: value_is("poll", v),  # type: ignore[misc]
                limit=60,
                what="polling apply",
            )
        )
    log(f"polling: median {statistics.median(polling):.2f}s over {reps}")
    await ctl.stop()
    work.close()
    work_poll.close()
    await bench.clean()
    return {
        "receiver": {
            "what": "git push done -> live ConfigMap shows the new value (GitHub push POSTed "
            "to the Receiver's /hook path right after the push; GitRepository interval 10m)",
            **_summary(hook),
            "push_median_s": round(statistics.median(push), 3),
            "receiver_ack_median_s": round(statistics.median(ack), 3),
        },
        "polling": {
            "what": "git push done -> live ConfigMap shows the new value, no webhook",
            **_summary(polling),
            "interval_s": poll_interval,
            "gitrepository": f"interval {_go_duration(poll_interval)}",
        },
    }


# -- 3–4: convergence and idle ---------------------------------------------------------


def fleet_files(count: int) -> dict[str, str]:
    """The Argo mode's app directories plus each app's Namespace as an object."""
    files = {}
    for i in range(count):
        app = f"app-{i:04d}"
        files[f"apps/{app}/namespace.yaml"] = (
            f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS_PREFIX}{app}\n"
        )
        for name, text in _podinfo(app).items():
            files[f"apps/{app}/{name}"] = text
    return files


async def convergence_phase(
    bench: Bench,
    repo: str,
    sha: str,
    count: int,
    *,
    limit: float,
    idle_s: float,
    baseline_s: float,
) -> dict[str, Any]:
    kube = bench.kube
    revision = f"main@sha1:{sha}"
    ks_interval = idle_s  # the idle window holds about one pass of each Kustomization
    ctl = bench.controller(f"flux-converge-{count}", namespaces=NAMESPACES)
    await ctl.start()
    names = [f"app-{i:04d}" for i in range(count)]
    watch = WatchCache(kube, KS_API, "Kustomization", FLUX_NS)
    await watch.start()
    events = watch.subscribe()
    s0 = ctl.sample()
    api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    t0 = time.monotonic()
    await apply_all(kube, [git_repository("fleet", repo, "1m")])
    interval = _go_duration(ks_interval)
    creating = asyncio.create_task(
        apply_all(
            kube,
            [kustomization(n, "fleet", f"./apps/{n}", f"{NS_PREFIX}{n}", interval) for n in names],
        )
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
            event: WatchEvent | None = await asyncio.wait_for(events.get(), timeout=1)
        except TimeoutError:
            event = None
        if event is not None and event.type != "DELETED":
            name = str(event.object["metadata"]["name"])
            if name not in converged and ready_at(event.object, revision):
                converged[name] = time.monotonic() - t0
        if time.monotonic() > next_report:
            log(f"{count} Kustomizations: {len(converged)} Ready at {time.monotonic() - t0:.0f}s")
            next_report += 15
    for obj in watch.items():  # the cache is the authority if an event was missed
        name = str(obj["metadata"]["name"])
        if name not in converged and ready_at(obj, revision):
            converged[name] = time.monotonic() - t0
    total = time.monotonic() - t0 if len(converged) == count else None
    elapsed = time.monotonic() - t0
    s1 = ctl.sample()
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
        "kustomizations": count,
        "objects_per_kustomization": "Namespace + Deployment (0 replicas) + ServiceAccount + "
        "Service",
        "kustomization_spec": "interval "
        f"{interval}, retryInterval 2m, timeout 5m, prune, wait, targetNamespace",
        "converged": len(converged),
        "total_s": round(total, 1) if total is not None else None,
        "elapsed_s": round(elapsed, 1),
        "per_min": round(len(converged) / elapsed * 60, 1),
        "create_all_s": round(created_s, 1),
        "first_s": round(times[0], 1) if times else None,
        "p50_s": round(_pct(times, 0.5), 1) if times else None,
        "p90_s": round(_pct(times, 0.9), 1) if times else None,
        "timeline_converged": timeline,
        "controller_cpu_s": round(s1.cpu_s - s0.cpu_s, 1),
        "controller_children_cpu_s": round(s1.children_cpu_s - s0.children_cpu_s, 1),
        "controller_cpu_cores_avg": round((s1.cpu_s - s0.cpu_s) / elapsed, 2),
        "controller_peak_rss_mib": round(max(ctl.peak_rss_mib, s1.hwm_mib), 1),
        "controller_rss_end_mib": round(s1.rss_mib, 1),
        "apiserver_requests": int(sum(conv_requests.values())),
        "apiserver_requests_top": {k: int(v) for k, v in _top(conv_requests, 12)},
    }
    log(
        f"{count} Kustomizations: {len(converged)}/{count} Ready in {elapsed:.1f}s, controller "
        f"{result['controller_cpu_s']} CPU s, peak RSS {result['controller_peak_rss_mib']} MiB"
    )
    if total is None:
        result["note"] = f"not converged within the {limit:.0f}s limit"
    # Idle: each Kustomization passes once per ks_interval; the GitRepository polls every
    # minute (one ls-remote). The window is ks_interval long, so it holds ~count passes.
    idle = await idle_phase(
        bench,
        ctl,
        count=count,
        idle_s=idle_s,
        baseline_s=baseline_s,
        poll_period=DEFAULT_KS_INTERVAL,
        period_source="Flux's default Kustomization interval, 10m",
        passes=count * idle_s / ks_interval,
    )
    idle["kustomization_interval_s"] = ks_interval
    result["idle"] = idle
    base_rate = idle["apiserver_rps_baseline"]
    result["apiserver_requests_per_kustomization"] = round(
        (result["apiserver_requests"] - base_rate * elapsed) / max(len(converged), 1), 1
    )
    return result


# -- main ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, counts: list[int], reps: int) -> dict[str, Any]:
    existed = devcluster.load(CLUSTER)
    reused = existed is not None and existed.alive()
    cluster = await asyncio.to_thread(devcluster.up, CLUSTER, nodes=2)
    log(f"cluster {CLUSTER} {'reused' if reused else 'started'} at {cluster.server}")
    work = Path(tempfile.mkdtemp(prefix="gitsail-flux-bench-"))
    log(f"controller logs in {work}")
    results: dict[str, Any] = {}
    try:
        async with Kube(await load_kubeconfig(str(cluster.kubeconfig))) as kube:
            with git_server() as git:
                bench = Bench(cluster, kube, git, work, profile=args.profile)
                try:
                    await bench.prepare_cluster()
                    if not args.skip_latency:
                        results["latency"] = await latency_phase(bench, reps)
                    git.create_repo("fleet")
                    repo = git.url("fleet")
                    fleet = Workdir(repo)
                    started = time.monotonic()
                    sha = await asyncio.to_thread(
                        fleet.commit_and_push, fleet_files(max(counts)), "fleet"
                    )
                    log(
                        f"fleet repo: {max(counts)} directories pushed in "
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
                                sha,
                                count,
                                limit=args.timeout or 180 + 0.6 * count,
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


def _print_tables(results: dict[str, Any]) -> None:
    lat = results.get("latency")
    if lat:
        header = f"{'latency':<34}{'n':>4}{'median s':>10}{'p90 s':>8}{'max s':>8}"
        print(header)
        print("-" * len(header))
        rows = [
            ("commit -> applied, Receiver", lat["receiver"]),
            (f"commit -> applied, poll {lat['polling']['interval_s']:g}s", lat["polling"]),
        ]
        for label, r in rows:
            print(
                f"{label:<34}{r['n']:>4}{r['median_s']:>10.2f}{r['p90_s']:>8.2f}{r['max_s']:>8.2f}"
            )
        print()
    conv = results.get("convergence") or []
    if conv:
        header = (
            f"{'ks':>6}{'ready':>7}{'total s':>9}{'ks/min':>8}{'CPU s':>8}"
            f"{'peak MiB':>10}{'idle CPU%':>10}{'idle MiB':>10}{'idle req/s':>11}"
        )
        print(header)
        print("-" * len(header))
        for r in conv:
            total = f"{r['total_s']:.1f}" if r["total_s"] is not None else "-"
            idle = r.get("idle") or {}
            print(
                f"{r['kustomizations']:>6}{r['converged']:>7}{total:>9}{r['per_min']:>8.1f}"
                f"{r['controller_cpu_s']:>8.1f}{r['controller_peak_rss_mib']:>10.1f}"
                f"{idle.get('controller_cpu_pct', float('nan')):>10.2f}"
                f"{idle.get('controller_rss_mib', float('nan')):>10.1f}"
                f"{idle.get('apiserver_rps_controller', float('nan')):>11.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--apps", default=None, help="Kustomization counts (100,1000)")
    parser.add_argument("--quick", action="store_true", help="100 Kustomizations, 5 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="latency repetitions (12)")
    parser.add_argument(
        "--idle", type=float, default=None, help="idle window = Kustomization interval, s (120)"
    )
    parser.add_argument("--baseline", type=float, default=None, help="baseline window s (60)")
    parser.add_argument("--timeout", type=float, default=None, help="convergence timeout s")
    parser.add_argument("--skip-latency", action="store_true", help="only convergence/idle")
    parser.add_argument("--profile", action="store_true", help="py-spy the controllers")
    parser.add_argument("--keep-cluster", action="store_true", help="leave cluster and objects")
    parser.add_argument("--keep-logs", action="store_true", help="keep controller logs")
    parser.add_argument("--out", default=None, help="results file (default by --quick)")
    args = parser.parse_args()
    counts = [int(x) for x in (args.apps or ("100" if args.quick else "100,1000")).split(",")]
    reps = args.reps or (5 if args.quick else 12)
    args.idle = args.idle or (60.0 if args.quick else 120.0)
    args.baseline = args.baseline or (30.0 if args.quick else 60.0)
    started = time.monotonic()
    results = asyncio.run(run(args, counts, reps))
    duration = time.monotonic() - started
    _print_tables(results)
    command = ".venv/bin/python -m benchmarks.flux_bench " + " ".join(sys.argv[1:])
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    out = (
        Path(args.out)
        if args.out
        else RESULTS_DIR / ("flux-quick.json" if args.quick else "flux.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    load: list[str] = []
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
    out.write_text(
        json.dumps(
            {
                "benchmark": "controller-flux",
                "command": command.strip(),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "gitsail_commit": revision,
                "duration_s": round(duration, 1),
                "loadavg_at_end": load,
                "machine": {
                    "cpus": os.cpu_count(),
                    "cpu": _cpu_model(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "setup": {
                    "cluster": "gitsail dev cluster: etcd, kube-apiserver, controller-manager, "
                    "scheduler, kwok with 2 fake nodes, all on this machine",
                    "controller": "python -m gitsail controller -n argocd -n flux-system "
                    "--no-leader-elect --resync 120 --jitter 60 --concurrency 10 "
                    "(separate process)",
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
