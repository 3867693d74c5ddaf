"""Convergence from empty: N apps in the flux-benchmark shape from one repository."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.controller.common import (
    APP_API,
    CONTROL_NS,
    NS_PREFIX,
    _delta,
    _pct,
    _podinfo,
    _synced_healthy,
    _top,
    apiserver_requests,
    application,
    log,
)
from benchmarks.controller.drift import RolloutDrift
from benchmarks.controller.fixture import Bench
from benchmarks.controller.idle import idle_phase
from benchmarks.controller.process import ControllerProcess
from benchmarks.controller.restart import restart_phase
from gitsail.kube import (
    WatchCache,
    WatchEvent,
)

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
    rollout_drift: int = 0,
    drift_every: float = 5.0,
    restart: bool = False,
) -> dict[str, Any]:
    kube = bench.kube
    ctl = bench.controller(f"converge-{count}", resync=120, jitter=60)
    await ctl.start()
    names = [f"app-{i:04d}" for i in range(count)]
    wanted = set(names)
    drift: RolloutDrift | None = None
    if rollout_drift:
        # Apps synced before the rollout (the fleet's first app's manifests, each in a
        # namespace of its own), drifted one by one while the rollout runs.
        drift_names = [f"rolldrift-{i}" for i in range(rollout_drift)]
        await bench.create_apps(
            [application(n, repo, "apps/app-0000", f"{NS_PREFIX}{n}") for n in drift_names]
        )
        await bench.wait_apps(drift_names, revision, limit=120)
        drift = RolloutDrift(kube, [f"{NS_PREFIX}{n}" for n in drift_names], every=drift_every)
        log(f"{rollout_drift} drift apps synced before the rollout")
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
    drifting = asyncio.create_task(drift.run(t0)) if drift is not None else None
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
            if name in wanted and name not in converged and _synced_healthy(event.object, revision):
                converged[name] = time.monotonic() - t0
        if time.monotonic() > next_report:
            log(f"{count} apps: {len(converged)} Synced+Healthy at {time.monotonic() - t0:.0f}s")
            next_report += 15
    # Re-read the cache in case an event was missed; it is the authority.
    for obj in watch.items():
        name = str(obj["metadata"]["name"])
        if name in wanted and name not in converged and _synced_healthy(obj, revision):
            converged[name] = time.monotonic() - t0
    total = time.monotonic() - t0 if len(converged) == count else None
    elapsed = time.monotonic() - t0
    s1 = ctl.sample()
    m1 = await ctl.metrics()
    if drifting is not None:
        drifting.cancel()
        await asyncio.gather(drifting, return_exceptions=True)
    settled = await settle_writes(ctl, t0 + elapsed)
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
        "controller_cpu_ms_per_app": round((s1.cpu_s - s0.cpu_s) / max(count, 1) * 1000, 1),
        "settle": settled,
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
    if drift is not None:
        result["drift_during_rollout"] = drift.summary()
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
    counters = result["controller_counters"]
    result["client_requests_per_app"] = round(
        counters.get("kube_requests_non_watch", 0.0) / max(len(converged), 1), 1
    )
    if restart:  # (the idle phase stopped the controller)
        result["restart"] = await restart_phase(bench, count)
    return result


async def settle_writes(
    ctl: ControllerProcess, converged_at: float, *, quiet: float = 20.0, limit: float = 120.0
) -> dict[str, Any]:
    """When the controller's last write came, relative to the last app converging: its
    write counter (requests counted at its client) is read every 0.5 s until it has not
    moved for ``quiet`` seconds (or ``limit`` passed)."""
    writes = (await ctl.metrics()).get("kube_writes", 0.0)
    quiet_since = time.monotonic()
    last_write: float | None = None
    extra = 0.0
    while time.monotonic() - quiet_since < quiet and time.monotonic() - converged_at < limit:
        await asyncio.sleep(0.5)
        now = (await ctl.metrics()).get("kube_writes", 0.0)
        if now != writes:
            extra += now - writes
            writes = now
            last_write = quiet_since = time.monotonic()
    return {
        # None: no write at all after the last app converged.
        "last_write_after_converged_s": (
            round(last_write - converged_at, 1) if last_write is not None else None
        ),
        "writes_after_converged": int(extra),
        "settled": time.monotonic() - quiet_since >= quiet,
        "what": f"writes counted at the controller's client; settled = none for {quiet:g} s",
    }
