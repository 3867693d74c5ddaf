"""Idle cost with the apps in place: controller CPU/RSS and the apiserver requests it causes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.controller.common import (
    Counts,
    _delta,
    _top,
    apiserver_requests,
    log,
)
from benchmarks.controller.fixture import Bench
from benchmarks.controller.process import ControllerProcess
from gitsail.dev import cluster as devcluster


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
        # Counted at the controller's own client: no baseline to subtract, no watch noise.
        "client_requests_per_s": round(ctl_counts.get("kube_requests_non_watch", 0.0) / window, 3),
        "client_watch_starts_per_s": round(ctl_counts.get("kube_WATCH", 0.0) / window, 3),
        "client_writes_per_s": round(ctl_counts.get("kube_writes", 0.0) / window, 3),
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
