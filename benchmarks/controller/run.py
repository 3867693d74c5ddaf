"""The controller benchmark's command line: run the selected measurements, print, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.controller.common import (
    CLUSTER,
    RESULTS_DIR,
    ROOT,
    _cpu_model,
    _podinfo,
    git_server,
    log,
)
from benchmarks.controller.converge import convergence_phase, fleet_files
from benchmarks.controller.fixture import Bench
from benchmarks.controller.latency import latency_phase
from benchmarks.controller.raw_ssa import raw_ssa_phase
from benchmarks.controller.shards import shards_phase
from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import (
    Kube,
    load_kubeconfig,
)


def _save_partial(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """What is measured so far, next to ``--out`` (a long run cut short keeps it)."""
    if args.out:
        path = Path(args.out).with_suffix(".partial.json")
        path.write_text(json.dumps({"partial": True, "results": results}, indent=2) + "\n")


async def run(args: argparse.Namespace, counts: list[int], reps: int) -> dict[str, Any]:
    name = args.cluster
    existed = devcluster.load(name)
    reused = existed is not None and existed.alive()
    cluster = await asyncio.to_thread(devcluster.up, name, nodes=2)
    log(f"cluster {name} {'reused' if reused else 'started'} at {cluster.server}")
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
                    size = max([*counts, args.shard_apps or 0])
                    revision = await asyncio.to_thread(
                        fleet.commit_and_push, fleet_files(size), "fleet"
                    )
                    log(
                        f"fleet repo: {size} app directories pushed in "
                        f"{time.monotonic() - started:.1f}s"
                    )
                    results["convergence"] = []
                    for index, count in enumerate(counts):
                        if index:
                            await bench.clean()
                        raw = None
                        if not args.skip_raw:
                            names = [f"app-{i:04d}" for i in range(count)]
                            raw = await raw_ssa_phase(
                                bench,
                                {n: _podinfo(n) for n in names},
                                concurrency=args.concurrency,
                            )
                            await bench.clean()
                        conv = await convergence_phase(
                            bench,
                            repo,
                            revision,
                            count,
                            limit=args.timeout or 120 + 0.6 * count,
                            idle_s=args.idle,
                            baseline_s=args.baseline,
                            rollout_drift=args.rollout_drift,
                            drift_every=args.drift_every,
                            restart=args.restart,
                        )
                        if raw is not None:
                            conv["raw_ssa"] = raw
                            if conv["total_s"] is not None:
                                conv["ratio_to_raw"] = round(conv["total_s"] / raw["total_s"], 2)
                        results["convergence"].append(conv)
                        _save_partial(args, results)
                    if args.shard_apps:
                        await bench.clean()
                        results["shards"] = await shards_phase(
                            bench,
                            repo,
                            revision,
                            args.shard_apps,
                            replicas=args.replicas,
                            shards=args.shards or args.replicas,
                            limit=args.timeout or 120 + 0.6 * args.shard_apps,
                        )
                    fleet.close()
                finally:
                    await bench.stop_all()
                    if reused and not args.keep_cluster:
                        with contextlib.suppress(Exception):
                            await bench.clean()
    finally:
        if not args.keep_cluster and not reused:
            await asyncio.to_thread(devcluster.down, name)
            log(f"cluster {name} stopped")
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
        print()
        for r in conv:
            raw = r.get("raw_ssa") or {}
            settle = r.get("settle") or {}
            idle = r.get("idle") or {}
            print(
                f"{r['apps']} apps: raw SSA {raw.get('total_s')} s, ratio {r.get('ratio_to_raw')}, "
                f"CPU {r.get('controller_cpu_ms_per_app')} ms/app, last write "
                f"{settle.get('last_write_after_converged_s')} s after converged, idle client "
                f"{idle.get('client_requests_per_s')} req/s"
            )
            if "drift_during_rollout" in r:
                d = r["drift_during_rollout"]
                print(
                    f"  drift during rollout: n={d['n']} median {d.get('median_s')} s, "
                    f"max {d.get('max_s')} s, not healed {d['not_healed']}"
                )
            if "restart" in r:
                s = r["restart"]
                print(
                    f"  restart: all compared {s['all_compared_s']} s, "
                    f"controller writes {s['controller_writes']}"
                )
    shards = results.get("shards")
    if shards:
        print(
            f"shards: {shards['apps']} apps over {shards['replicas']} replicas: "
            f"{shards['total_s']} s; rebalance after kill {shards['rebalance_s']} s"
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
    parser.add_argument("--cluster", default=CLUSTER, help=f"dev cluster name ({CLUSTER})")
    parser.add_argument("--skip-raw", action="store_true", help="no raw server-side-apply baseline")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="the raw loop's apps in parallel (10)"
    )
    parser.add_argument(
        "--rollout-drift",
        type=int,
        default=0,
        help="apps synced before each rollout and drifted one by one during it (0: none)",
    )
    parser.add_argument(
        "--drift-every", type=float, default=5.0, help="seconds between rollout drifts (5)"
    )
    parser.add_argument(
        "--restart", action="store_true", help="after idle: restart figures (fresh process)"
    )
    parser.add_argument(
        "--shard-apps", type=int, default=0, help="then N apps over --replicas replicas (0: no)"
    )
    parser.add_argument("--replicas", type=int, default=3, help="replicas of the shard run (3)")
    parser.add_argument("--shards", type=int, default=0, help="shards (default: --replicas)")
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
    command = ".venv/bin/python -m benchmarks.controller " + " ".join(sys.argv[1:])
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
