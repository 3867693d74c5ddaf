"""Helm benchmark: HelmReleases on gitsail's controller against ``helm upgrade --install``.

    .venv/bin/python -m benchmarks.helm_bench [--releases 100] [--baseline-only] [--quick]

Both sides install the same small chart (the ``podinfo`` example, a Deployment and a
Service, at ``replicaCount: 0``) from the same loopback chart repository
(``gitsail.dev.chartrepo.ChartServer``, version range ``6.x``), one release per namespace,
into the dev cluster ``bench`` (the other benchmarks' machinery: ``controller_bench``).

**Baseline** — the physical reference: the pinned ``helm`` run in a loop, as a naive
"GitOps by cron" would, ``helm upgrade --install podinfo podinfo --repo <url> --version
6.x --namespace bench-hl-NNNN --create-namespace --values <file> --wait``:

1. install of N releases from empty, ``--concurrency`` helm processes at a time (gitsail's
   controller default, 10) and serially; timed from the first spawn until every release is
   ``deployed`` (its storage Secret) and its Deployment and Service exist;
2. the cost of "nothing changed": the same command again over the N installed releases
   (what the loop does each interval; helm writes a new revision each time), at the same
   concurrencies. Wall time and the CPU seconds of the helm processes
   (``getrusage(RUSAGE_CHILDREN)`` deltas: helm is the benchmark's only child).

**gitsail**: a ``HelmRepository`` on the chart server and N ``HelmRelease``
(``helm.toolkit.fluxcd.io/v2``, ``chart.spec`` ``podinfo`` ``6.x``, ``targetNamespace``
``bench-hr-NNNN``, ``install.createNamespace``, the same values) in ``flux-system``, the
controller a separate process (``-n flux-system``) whose helm is a wrapper script counting
every helm process it starts:

3. convergence from empty: all HelmReleases created at once (32 concurrent requests),
   timed from a watch until every one is ``Ready=True`` for its generation;
4. the cost of an idle reconcile: ``reconcile.fluxcd.io/requestedAt`` set on every release
   (nothing else changed), timed until every ``status.lastHandledReconcileAt`` shows it;
   controller CPU seconds (its own and its children's), helm processes and apiserver
   requests, per release;
5. idle with the releases in place (``controller_bench.idle_phase``): controller CPU % and
   RSS, apiserver requests/s net of a baseline without the controller.

Ratios: gitsail convergence time / the helm loop's (same concurrency, and serial); gitsail
CPU per idle reconcile / helm CPU per no-op upgrade. Results go to
``benchmarks/results/helm.json`` (``helm-baseline.json`` with ``--baseline-only``,
``helm-quick.json`` with ``--quick``). Run under ``flock /tmp/gitsail-bench.lock`` (the
``bench`` cluster is shared by every benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.controller_bench import (
    CLUSTER,
    FLUX_NS,
    NS_PREFIX,
    RESULTS_DIR,
    ROOT,
    Bench,
    ProcSample,
    _cpu_model,
    _delta,
    _pct,
    _top,
    apiserver_requests,
    git_server,
    idle_phase,
    log,
    settle,
    wait_for,
)
from gitsail.dev import cluster as devcluster
from gitsail.dev.chartrepo import ChartServer
from gitsail.kube import Kube, KubeError, WatchCache, WatchEvent, load_kubeconfig
from gitsail.model import Obj
from gitsail.toolchain import find_binary

HR_API = "helm.toolkit.fluxcd.io/v2"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
CHART = "podinfo"
VERSION_RANGE = "6.x"
RELEASE = "podinfo"  # the release name on both sides: objects are podinfo-podinfo
VALUES: dict[str, Any] = {"replicaCount": 0}
REPOSITORY = "charts"
CONCURRENCY = 10  # the controller's --concurrency default (ControllerProcess)
HELM_TIMEOUT = "5m"
# Flux objects this benchmark creates in flux-system, deleted before the namespaces.
HELM_KINDS = (
    (HR_API, "HelmRelease"),
    (SOURCE_API, "HelmChart"),
    (SOURCE_API, "HelmRepository"),
)


# -- pure parts: aggregation and ratios (unit-tested) ----------------------------------


@dataclass(frozen=True)
class HelmRun:
    """One helm process: its release namespace, wall time and exit code."""

    namespace: str
    wall_s: float
    returncode: int
    stderr: str = ""


def loop_summary(
    label: str,
    runs: Sequence[HelmRun],
    *,
    concurrency: int,
    elapsed_s: float,
    verified_s: float | None,
    cpu_s: float,
    requests: float | None = None,
) -> dict[str, Any]:
    """What one pass of the helm loop over N releases cost.

    ``elapsed_s``: first spawn → last exit; ``verified_s``: first spawn → every release
    checked deployed with its objects (None: not all were); ``cpu_s``: user + system CPU of
    the helm processes; ``requests``: apiserver requests during the pass.
    """
    walls = sorted(r.wall_s for r in runs)
    failed = [r for r in runs if r.returncode != 0]
    count = len(runs)
    out: dict[str, Any] = {
        "label": label,
        "releases": count,
        "concurrency": concurrency,
        "failed": len(failed),
        "elapsed_s": round(elapsed_s, 2),
        "total_s": round(verified_s, 2) if verified_s is not None else None,
        "releases_per_min": round(count / elapsed_s * 60, 1) if elapsed_s > 0 else None,
        "helm_wall_median_s": round(statistics.median(walls), 3) if walls else None,
        "helm_wall_p90_s": round(_pct(walls, 0.9), 3) if walls else None,
        "helm_wall_max_s": round(walls[-1], 3) if walls else None,
        "helm_cpu_s": round(cpu_s, 2),
        "helm_cpu_s_per_release": round(cpu_s / count, 4) if count else None,
        "wall_s_per_release": round(elapsed_s / count, 4) if count else None,
    }
    if requests is not None:
        out["apiserver_requests"] = int(requests)
        out["apiserver_requests_per_release"] = round(requests / count, 1) if count else None
    if failed:
        out["first_failure"] = {"namespace": failed[0].namespace, "stderr": failed[0].stderr}
    return out


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    if denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def _pass(baseline: dict[str, Any], phase: str, concurrency: int) -> dict[str, Any]:
    for run in baseline.get(phase) or []:
        if run.get("concurrency") == concurrency:
            return dict(run)
    return {}


def compute_ratios(
    baseline: dict[str, Any], gitsail: dict[str, Any], *, concurrency: int
) -> dict[str, Any]:
    """gitsail / helm loop, for convergence and for an idle reconcile (None where a side
    is missing or did not finish). Below 1 means gitsail is cheaper or faster."""
    conv = gitsail.get("convergence") or {}
    idle = gitsail.get("idle_reconcile") or {}
    install = _pass(baseline, "install", concurrency)
    serial = _pass(baseline, "install", 1)
    noop = _pass(baseline, "noop", concurrency)
    noop_serial = _pass(baseline, "noop", 1)
    return {
        "convergence_vs_helm_loop": _ratio(conv.get("total_s"), install.get("total_s")),
        "convergence_vs_helm_loop_serial": _ratio(conv.get("total_s"), serial.get("total_s")),
        "idle_reconcile_cpu_vs_noop_upgrade": _ratio(
            idle.get("cpu_s_per_release"), noop.get("helm_cpu_s_per_release")
        ),
        "idle_reconcile_cpu_vs_noop_upgrade_serial": _ratio(
            idle.get("cpu_s_per_release"), noop_serial.get("helm_cpu_s_per_release")
        ),
        "idle_reconcile_wall_vs_noop_loop": _ratio(idle.get("total_s"), noop.get("total_s")),
        "helm_processes_per_idle_reconcile": idle.get("helm_processes_per_release"),
        "concurrency": concurrency,
        "meaning": "gitsail / helm loop; < 1: gitsail faster or cheaper",
    }


def helm_ready(obj: Obj) -> bool:
    """Ready=True for the HelmRelease's current generation."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def handled(obj: Obj, token: str) -> bool:
    """The release handled the ``requestedAt`` ``token`` and is still Ready."""
    status = obj.get("status") or {}
    return status.get("lastHandledReconcileAt") == token and helm_ready(obj)


def count_lines(text: str) -> Counter[str]:
    """The helm wrapper's log: one line per process, its first argument (the verb)."""
    return Counter(line.strip() or "(none)" for line in text.splitlines())


# -- helm: the loop --------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class HelmLoop:
    """``helm upgrade --install`` of the chart into ``bench-hl-NNNN`` namespaces."""

    helm: Path
    kubeconfig: Path
    repo_url: str
    home: Path
    wait: bool = True

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def argv(self, namespace: str) -> list[str]:
        values = self.home / "values.yaml"
        if not values.exists():
            values.write_text(json.dumps(VALUES) + "\n")
        argv = [
            str(self.helm),
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            f"--repo={self.repo_url}",
            f"--version={VERSION_RANGE}",
            f"--namespace={namespace}",
            "--create-namespace",
            f"--kubeconfig={self.kubeconfig}",
            f"--values={values}",
            f"--timeout={HELM_TIMEOUT}",
        ]
        if self.wait:
            argv.append("--wait")
        return argv

    async def one(self, namespace: str) -> HelmRun:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *self.argv(namespace),
            env=self.env(),
            cwd=self.home,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        return HelmRun(
            namespace,
            time.perf_counter() - started,
            proc.returncode or 0,
            err.decode(errors="replace").strip()[-500:],
        )

    async def run(self, namespaces: list[str], concurrency: int) -> list[HelmRun]:
        sem = asyncio.Semaphore(concurrency)

        async def limited(ns: str) -> HelmRun:
            async with sem:
                return await self.one(ns)

        return list(await asyncio.gather(*(limited(ns) for ns in namespaces)))


async def releases_in_place(kube: Kube, namespaces: list[str]) -> bool:
    """Every namespace holds a deployed ``podinfo`` release, its Deployment and Service."""
    wanted = set(namespaces)
    secrets = await kube.list("v1", "Secret", label_selector=f"owner=helm,name={RELEASE}")
    deployed = {
        s["metadata"]["namespace"]
        for s in secrets
        if (s["metadata"].get("labels") or {}).get("status") == "deployed"
    }
    selector = "app.kubernetes.io/name=podinfo"
    deployments = {
        d["metadata"]["namespace"]
        for d in await kube.list("apps/v1", "Deployment", label_selector=selector)
    }
    services = {
        s["metadata"]["namespace"]
        for s in await kube.list("v1", "Service", label_selector=selector)
    }
    return wanted <= deployed and wanted <= deployments and wanted <= services


async def loop_pass(
    bench: Bench,
    loop: HelmLoop,
    namespaces: list[str],
    label: str,
    concurrency: int,
) -> dict[str, Any]:
    api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    runs = await loop.run(namespaces, concurrency)
    elapsed = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    verified: float | None = None
    with contextlib.suppress(TimeoutError):
        await wait_for(
            lambda: releases_in_place(bench.kube, namespaces),
            limit=60,
            interval=0.2,
            what="helm releases in place",
        )
        verified = time.perf_counter() - t0
    api1 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    summary = loop_summary(
        label,
        runs,
        concurrency=concurrency,
        elapsed_s=elapsed,
        verified_s=verified,
        cpu_s=cpu,
        requests=sum(_delta(api1, api0).values()),
    )
    log(
        f"helm {label} x{len(namespaces)} at concurrency {concurrency}: {elapsed:.1f}s, "
        f"helm CPU {cpu:.1f}s ({summary['helm_cpu_s_per_release']} s/release), "
        f"{summary['failed']} failed"
    )
    return summary


async def baseline_phase(
    bench: Bench, loop: HelmLoop, count: int, concurrencies: list[int]
) -> dict[str, Any]:
    """Install from empty and no-op upgrade, at each concurrency (cleaning between)."""
    namespaces = [f"{NS_PREFIX}hl-{i:04d}" for i in range(count)]
    out: dict[str, Any] = {"install": [], "noop": []}
    for index, concurrency in enumerate(concurrencies):
        if index:
            await bench.clean()
        out["install"].append(await loop_pass(bench, loop, namespaces, "install", concurrency))
        # The no-op at every concurrency over the same releases (each adds a revision).
        if index == 0:
            for c in concurrencies:
                out["noop"].append(await loop_pass(bench, loop, namespaces, "noop", c))
    await bench.clean()
    return out


# -- gitsail: HelmReleases on the controller --------------------------------------------


@contextlib.contextmanager
def helm_counter(work: Path, real: Path) -> Iterator[Path]:
    """A ``helm`` wrapper that logs each process's first argument, then execs the real one.

    The controller finds it through ``GITSAIL_BIN_HELM``; the log is read by
    ``count_lines``."""
    script = work / "helm"
    record = work / "helm-processes.log"
    record.write_text("")
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{record}'\nexec '{real}' \"$@\"\n")
    script.chmod(0o755)
    previous = os.environ.get("GITSAIL_BIN_HELM")
    os.environ["GITSAIL_BIN_HELM"] = str(script)
    try:
        yield record
    finally:
        if previous is None:
            os.environ.pop("GITSAIL_BIN_HELM", None)
        else:
            os.environ["GITSAIL_BIN_HELM"] = previous


def helm_repository(url: str) -> Obj:
    return {
        "apiVersion": SOURCE_API,
        "kind": "HelmRepository",
        "metadata": {"name": REPOSITORY, "namespace": FLUX_NS, "labels": {"gitsail-bench": "1"}},
        "spec": {"url": url, "interval": "10m", "timeout": "60s"},
    }


def helm_release(name: str, namespace: str, interval: str) -> Obj:
    return {
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": FLUX_NS, "labels": {"gitsail-bench": "1"}},
        "spec": {
            "interval": interval,
            "releaseName": RELEASE,
            "targetNamespace": namespace,
            "install": {"createNamespace": True},
            "timeout": HELM_TIMEOUT,
            "chart": {
                "spec": {
                    "chart": CHART,
                    "version": VERSION_RANGE,
                    "sourceRef": {"kind": "HelmRepository", "name": REPOSITORY},
                    "interval": "10m",
                }
            },
            "values": VALUES,
        },
    }


async def clean_helm(bench: Bench) -> None:
    """HelmReleases, HelmCharts and HelmRepositories in flux-system (finalizers dropped: no
    controller runs, and their namespaces go too), then ``Bench.clean``."""
    kube = bench.kube
    sem = asyncio.Semaphore(32)

    async def delete(api_version: str, kind: str, name: str) -> None:
        async with sem:
            with contextlib.suppress(KubeError):
                await kube.merge_patch(
                    api_version, kind, name, {"metadata": {"finalizers": None}}, FLUX_NS
                )
                await kube.delete(api_version, kind, name, FLUX_NS, "Background")

    for api_version, kind in HELM_KINDS:
        try:
            found = await kube.list(api_version, kind, FLUX_NS)
        except KubeError:  # the CRD is not installed (a gitsail without the kind)
            continue
        await asyncio.gather(*(delete(api_version, kind, o["metadata"]["name"]) for o in found))
    await bench.clean()


def _go_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds < 60 or seconds % 60 else f"{int(seconds // 60)}m"


def _cpu(a: ProcSample, b: ProcSample) -> tuple[float, float]:
    return b.cpu_s - a.cpu_s, b.children_cpu_s - a.children_cpu_s


async def apply_all(kube: Kube, objs: list[Obj]) -> None:
    sem = asyncio.Semaphore(32)

    async def one(obj: Obj) -> None:
        async with sem:
            await kube.apply(obj, field_manager="gitsail-bench", force=True)

    await asyncio.gather(*(one(o) for o in objs))


async def watch_until(
    watch: WatchCache,
    events: asyncio.Queue[WatchEvent],
    names: list[str],
    done: Any,
    *,
    t0: float,
    limit: float,
    what: str,
) -> dict[str, float]:
    """Seconds from ``t0`` at which each of ``names`` first satisfied ``done(obj)``."""
    wanted = set(names)
    reached: dict[str, float] = {}
    deadline = t0 + limit
    next_report = t0 + 15
    while len(reached) < len(wanted) and time.monotonic() < deadline:
        try:
            event: WatchEvent | None = await asyncio.wait_for(events.get(), timeout=1)
        except TimeoutError:
            event = None
        if event is not None and event.type != "DELETED":
            name = str(event.object["metadata"]["name"])
            if name in wanted and name not in reached and done(event.object):
                reached[name] = time.monotonic() - t0
        if time.monotonic() > next_report:
            log(f"{what}: {len(reached)}/{len(wanted)} at {time.monotonic() - t0:.0f}s")
            next_report += 15
    for obj in watch.items():  # the cache is the authority if an event was missed
        name = str(obj["metadata"]["name"])
        if name in wanted and name not in reached and done(obj):
            reached[name] = time.monotonic() - t0
    return reached


async def describe_stuck(kube: Kube, names: list[str], done: Any) -> list[dict[str, Any]]:
    out = []
    for name in names:
        obj = await kube.get(HR_API, "HelmRelease", name, FLUX_NS)
        if obj is None or not done(obj):
            status = (obj or {}).get("status") or {}
            out.append(
                {
                    "name": name,
                    "conditions": [
                        {k: c.get(k) for k in ("type", "status", "reason", "message")}
                        for c in status.get("conditions") or []
                    ],
                    "lastHandledReconcileAt": status.get("lastHandledReconcileAt"),
                }
            )
        if len(out) >= 3:
            break
    return out


async def gitsail_phase(
    bench: Bench,
    charts: str,
    count: int,
    helm_log: Path,
    *,
    limit: float,
    idle_s: float,
    baseline_s: float,
) -> dict[str, Any]:
    kube = bench.kube
    interval = _go_duration(idle_s)  # the idle window holds about one pass of each release
    ctl = bench.controller(f"helm-{count}", namespaces=(FLUX_NS,))
    await ctl.start()

    def spawned() -> Counter[str]:
        return count_lines(helm_log.read_text())

    names = [f"rel-{i:04d}" for i in range(count)]
    watch = WatchCache(kube, HR_API, "HelmRelease", FLUX_NS)
    await watch.start()
    events = watch.subscribe()
    try:
        # 3. convergence from empty
        h0 = spawned()
        s0 = ctl.sample()
        api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
        t0 = time.monotonic()
        await apply_all(kube, [helm_repository(charts)])
        await apply_all(kube, [helm_release(n, f"{NS_PREFIX}hr-{n[4:]}", interval) for n in names])
        created_s = time.monotonic() - t0
        ready = await watch_until(
            watch, events, names, helm_ready, t0=t0, limit=limit, what="HelmReleases Ready"
        )
        elapsed = time.monotonic() - t0
        s1 = ctl.sample()
        api1 = await asyncio.to_thread(apiserver_requests, bench.cluster)
        h1 = spawned()
        times = sorted(ready.values())
        cpu, children = _cpu(s0, s1)
        conv_requests = _delta(api1, api0)
        helm_conv = h1 - h0
        conv: dict[str, Any] = {
            "releases": count,
            "ready": len(ready),
            "total_s": round(elapsed, 1) if len(ready) == count else None,
            "elapsed_s": round(elapsed, 1),
            "create_all_s": round(created_s, 1),
            "releases_per_min": round(len(ready) / elapsed * 60, 1),
            "first_s": round(times[0], 1) if times else None,
            "p50_s": round(_pct(times, 0.5), 1) if times else None,
            "p90_s": round(_pct(times, 0.9), 1) if times else None,
            "timeline_ready": {
                f"{int(t)}s": sum(1 for x in times if x <= t)
                for t in range(15, int(elapsed) + 15, 15)
            },
            "controller_cpu_s": round(cpu, 1),
            "controller_children_cpu_s": round(children, 1),
            "cpu_s_per_release": round((cpu + children) / max(len(ready), 1), 3),
            "helm_processes": dict(helm_conv),
            "controller_peak_rss_mib": round(max(ctl.peak_rss_mib, s1.hwm_mib), 1),
            "apiserver_requests": int(sum(conv_requests.values())),
            "apiserver_requests_top": {k: int(v) for k, v in _top(conv_requests, 12)},
        }
        log(
            f"{count} HelmReleases: {len(ready)} Ready in {elapsed:.1f}s, controller "
            f"{cpu:.1f}+{children:.1f} CPU s, helm {dict(helm_conv)}"
        )
        if len(ready) < count:
            conv["note"] = f"not all Ready within the {limit:.0f}s limit"
            conv["stuck"] = await describe_stuck(kube, names, helm_ready)
            log(f"stuck: {conv['stuck']}")
        result: dict[str, Any] = {"convergence": conv}

        # 4. the cost of an idle reconcile
        settle_s, settle_rps = await settle(bench.cluster, limit=300)
        log(f"settled after {settle_s:.0f}s ({settle_rps:.1f} non-watch req/s)")
        token = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        h2 = spawned()
        s2 = ctl.sample()
        api2 = await asyncio.to_thread(apiserver_requests, bench.cluster)
        t2 = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def request(name: str) -> None:
            async with sem:
                await kube.merge_patch(
                    HR_API,
                    "HelmRelease",
                    name,
                    {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}},
                    FLUX_NS,
                )

        await asyncio.gather(*(request(n) for n in ready))
        targets = sorted(ready)
        done = await watch_until(
            watch,
            events,
            targets,
            lambda o: handled(o, token),
            t0=t2,
            limit=60 + 2 * count,
            what="requestedAt handled",
        )
        took = time.monotonic() - t2
        s3 = ctl.sample()
        api3 = await asyncio.to_thread(apiserver_requests, bench.cluster)
        h3 = spawned()
        cpu, children = _cpu(s2, s3)
        idle_requests = _delta(api3, api2)
        n = max(len(done), 1)
        helm_idle = h3 - h2
        idle_reconcile: dict[str, Any] = {
            "what": "reconcile.fluxcd.io/requestedAt set on every Ready release, nothing "
            "else changed -> status.lastHandledReconcileAt shows it",
            "releases": len(targets),
            "handled": len(done),
            "total_s": round(took, 2) if len(done) == len(targets) else None,
            "elapsed_s": round(took, 2),
            "p50_s": round(_pct(sorted(done.values()), 0.5), 2) if done else None,
            "controller_cpu_s": round(cpu, 2),
            "controller_children_cpu_s": round(children, 2),
            "cpu_s_per_release": round((cpu + children) / n, 4),
            "helm_processes": dict(helm_idle),
            "helm_processes_per_release": round(sum(helm_idle.values()) / n, 3),
            "apiserver_requests": int(sum(idle_requests.values())),
            "apiserver_requests_per_release": round(sum(idle_requests.values()) / n, 1),
            "apiserver_requests_top": {k: int(v) for k, v in _top(idle_requests, 8)},
            "settle_s": round(settle_s, 1),
        }
        if len(done) < len(targets):
            idle_reconcile["stuck"] = await describe_stuck(
                kube, targets, lambda o: handled(o, token)
            )
            log(f"requestedAt not handled: {idle_reconcile['stuck']}")
        log(
            f"idle reconcile of {len(targets)}: {took:.1f}s, controller {cpu:.2f}+"
            f"{children:.2f} CPU s, helm {dict(helm_idle)}"
        )
        result["idle_reconcile"] = idle_reconcile
    finally:
        watch.unsubscribe(events)
        await watch.stop()

    # 5. idle (stops the controller at the end, for the apiserver baseline)
    h4 = spawned()
    idle = await idle_phase(
        bench,
        ctl,
        count=count,
        idle_s=idle_s,
        baseline_s=baseline_s,
        poll_period=600.0,
        period_source="Flux's usual HelmRelease interval, 10m",
        passes=count * 1.0,
    )
    idle["helmrelease_interval"] = interval
    idle["helm_processes"] = dict(spawned() - h4)
    result["idle"] = idle
    return result


# -- main ------------------------------------------------------------------------------


def _has_helmrelease() -> bool:
    from gitsail.controller import manager

    return any(attr == "helmrelease" for _, attr in manager.FLUX_KINDS)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    existed = devcluster.load(CLUSTER)
    reused = existed is not None and existed.alive()
    cluster = await asyncio.to_thread(devcluster.up, CLUSTER, nodes=2)
    log(f"cluster {CLUSTER} {'reused' if reused else 'started'} at {cluster.server}")
    work = Path(tempfile.mkdtemp(prefix="gitsail-helm-bench-"))
    log(f"work directory (controller logs) {work}")
    real_helm = find_binary("helm")
    results: dict[str, Any] = {"helm": str(real_helm)}
    concurrencies = [CONCURRENCY] if args.no_serial else [CONCURRENCY, 1]
    try:
        async with Kube(await load_kubeconfig(str(cluster.kubeconfig))) as kube:
            with git_server() as git, ChartServer() as charts:
                repo = charts.repository("bench")
                bench = Bench(cluster, kube, git, work, profile=args.profile)
                try:
                    await bench.prepare_cluster()
                    await clean_helm(bench)
                    if not args.gitsail_only:
                        home = work / "helm-home"
                        home.mkdir()
                        loop = HelmLoop(real_helm, cluster.kubeconfig, repo.url, home)
                        results["baseline"] = await baseline_phase(
                            bench, loop, args.releases, concurrencies
                        )
                    if not args.baseline_only:
                        with helm_counter(work, real_helm) as helm_log:
                            results["gitsail"] = await gitsail_phase(
                                bench,
                                repo.url,
                                args.releases,
                                helm_log,
                                limit=args.timeout or 180 + 3.0 * args.releases,
                                idle_s=args.idle,
                                baseline_s=args.baseline,
                            )
                        await clean_helm(bench)
                    earlier = args.earlier
                    if earlier is not None and "gitsail" in results:
                        results["baseline"] = earlier["results"]["baseline"]
                        results["baseline_from"] = {
                            "file": args.baseline_from,
                            "date": earlier.get("date"),
                            "loadavg_at_end": earlier.get("loadavg_at_end"),
                        }
                    if "baseline" in results and "gitsail" in results:
                        results["ratios"] = compute_ratios(
                            results["baseline"], results["gitsail"], concurrency=CONCURRENCY
                        )
                finally:
                    await bench.stop_all()
                    if not args.keep_cluster:
                        with contextlib.suppress(Exception):
                            await clean_helm(bench)
    finally:
        if not args.keep_cluster and not reused:
            await asyncio.to_thread(devcluster.down, CLUSTER)
            log(f"cluster {CLUSTER} stopped")
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
    return results


def _print_tables(results: dict[str, Any]) -> None:
    base = results.get("baseline") or {}
    rows = [*(base.get("install") or []), *(base.get("noop") or [])]
    if rows:
        header = (
            f"{'helm loop':<12}{'n':>5}{'conc':>6}{'total s':>9}{'failed':>8}"
            f"{'CPU s':>8}{'CPU s/rel':>11}{'req/rel':>9}"
        )
        print(header)
        print("-" * len(header))
        for r in rows:
            total = f"{r['total_s']:.1f}" if r["total_s"] is not None else "-"
            print(
                f"{r['label']:<12}{r['releases']:>5}{r['concurrency']:>6}{total:>9}"
                f"{r['failed']:>8}{r['helm_cpu_s']:>8.1f}{r['helm_cpu_s_per_release']:>11.3f}"
                f"{r.get('apiserver_requests_per_release', float('nan')):>9.1f}"
            )
        print()
    gs = results.get("gitsail") or {}
    if gs:
        conv = gs["convergence"]
        rec = gs.get("idle_reconcile") or {}
        idle = gs.get("idle") or {}
        print(
            f"gitsail: {conv['ready']}/{conv['releases']} Ready in {conv['elapsed_s']}s; "
            f"idle reconcile {rec.get('cpu_s_per_release')} CPU s/release, helm "
            f"{rec.get('helm_processes')}; idle CPU {idle.get('controller_cpu_pct')}%, "
            f"{idle.get('apiserver_rps_controller')} req/s"
        )
    if results.get("ratios"):
        print(json.dumps(results["ratios"], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--releases", type=int, default=None, help="releases (100; --quick 10)")
    parser.add_argument("--quick", action="store_true", help="10 releases, 60 s idle")
    parser.add_argument("--baseline-only", action="store_true", help="only the helm loop")
    parser.add_argument("--gitsail-only", action="store_true", help="only the HelmReleases")
    parser.add_argument(
        "--baseline-from",
        default=None,
        help="with --gitsail-only: the helm loop of an earlier results file, for the ratios",
    )
    parser.add_argument("--no-serial", action="store_true", help="skip the serial helm loop")
    parser.add_argument(
        "--idle", type=float, default=None, help="idle window = HelmRelease interval, s (120)"
    )
    parser.add_argument("--baseline", type=float, default=None, help="apiserver baseline s (60)")
    parser.add_argument("--timeout", type=float, default=None, help="convergence timeout s")
    parser.add_argument("--profile", action="store_true", help="py-spy the controller")
    parser.add_argument("--keep-cluster", action="store_true", help="leave cluster and objects")
    parser.add_argument("--keep-logs", action="store_true", help="keep controller logs")
    parser.add_argument("--out", default=None, help="results file")
    args = parser.parse_args()
    if args.baseline_from and not args.gitsail_only:
        parser.error("--baseline-from goes with --gitsail-only")
    args.earlier = None
    if args.baseline_from:
        args.earlier = json.loads(Path(args.baseline_from).read_text())
        if "baseline" not in args.earlier.get("results", {}):
            parser.error(f"{args.baseline_from} holds no helm loop (results.baseline)")
    if args.baseline_only and args.gitsail_only:
        parser.error("--baseline-only and --gitsail-only exclude each other")
    args.releases = args.releases or (10 if args.quick else 100)
    args.idle = args.idle or (60.0 if args.quick else 120.0)
    args.baseline = args.baseline or (30.0 if args.quick else 60.0)
    if not args.baseline_only and not _has_helmrelease():
        if args.gitsail_only:
            parser.error("this gitsail has no HelmRelease kind (controller.manager.FLUX_KINDS)")
        log("this gitsail has no HelmRelease kind: measuring the helm loop only")
        args.baseline_only = True
    started = time.monotonic()
    results = asyncio.run(run(args))
    duration = time.monotonic() - started
    _print_tables(results)
    command = ".venv/bin/python -m benchmarks.helm_bench " + " ".join(sys.argv[1:])
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    default = "helm-baseline.json" if args.baseline_only else "helm.json"
    if args.quick:
        default = "helm-quick.json"
    out = Path(args.out) if args.out else RESULTS_DIR / default
    out.parent.mkdir(parents=True, exist_ok=True)
    load: list[str] = []
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
    import gitsail

    out.write_text(
        json.dumps(
            {
                "benchmark": "helm",
                "command": command.strip(),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "gitsail_commit": revision,
                "gitsail_source": str(Path(gitsail.__file__).resolve().parent),
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
                    "chart": f"examples/charts/{CHART} (Deployment + Service) from a "
                    f"loopback ChartServer, version {VERSION_RANGE}, values {VALUES}",
                    "helm_loop": "helm upgrade --install podinfo podinfo --repo <url> "
                    f"--version {VERSION_RANGE} --namespace bench-hl-NNNN --create-namespace "
                    f"--values <file> --timeout {HELM_TIMEOUT} --wait",
                    "controller": "python -m gitsail controller -n flux-system "
                    "--no-leader-elect --resync 120 --jitter 60 --concurrency 10 "
                    "(separate process; helm through a counting wrapper)",
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
