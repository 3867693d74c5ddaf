"""Sharding: N apps over several controller replicas with ``--shard auto``, and the time
to rebalance after one replica is killed.

Each replica is a separate process (``--shards S --shard auto``): it claims free shard
Leases (``gitsail-controller-shard-<i>`` in the control namespace) and reconciles the apps
of the shards it holds. Measured: convergence of all apps, CPU and peak RSS per replica,
the shards each holds; then one replica gets SIGKILL (no clean release of its Leases) and
the time until every shard's Lease is held by a living replica is the rebalance time
(bounded by the lease duration, 15 s, plus the renew deadline, 10 s: ``docs/scale.md``),
and the time until an app of a moved shard is reconciled again is reported with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from benchmarks.controller.common import (
    APP_API,
    CONTROL_NS,
    NS_PREFIX,
    _synced_healthy,
    application,
    log,
    wait_for,
)
from benchmarks.controller.fixture import Bench
from benchmarks.controller.process import ControllerProcess
from gitsail.kube import WatchCache

LEASE_API = "coordination.k8s.io/v1"
LEASE_BASE = "gitsail-controller"


async def _holders(bench: Bench, shards: int) -> dict[int, str | None]:
    """Shard → the holder identity of its Lease (None: no Lease, no holder or expired)."""
    out: dict[int, str | None] = {}
    now = time.time()
    for i in range(shards):
        lease = await bench.kube.get(LEASE_API, "Lease", f"{LEASE_BASE}-shard-{i}", CONTROL_NS)
        spec = (lease or {}).get("spec") or {}
        holder = spec.get("holderIdentity") or None
        renew = spec.get("renewTime")
        duration = spec.get("leaseDurationSeconds") or 0
        if holder and renew:
            at = dt.datetime.fromisoformat(str(renew).replace("Z", "+00:00")).timestamp()
            if at + duration < now:
                holder = None
        out[i] = holder
    return out


def _owner(holder: str | None, ctls: list[ControllerProcess]) -> ControllerProcess | None:
    """The replica whose identity (``<hostname>-<pid>``) is ``holder``."""
    for ctl in ctls:
        if holder is not None and holder.endswith(f"-{ctl.pid}"):
            return ctl
    return None


async def shards_phase(
    bench: Bench,
    repo: str,
    revision: str,
    count: int,
    *,
    replicas: int,
    shards: int,
    limit: float,
) -> dict[str, Any]:
    args = (*bench.controller_args, "--shards", str(shards), "--shard", "auto")
    ctls = [
        bench.controller(f"shard{r}-{count}", resync=120, jitter=60, extra_args=args)
        for r in range(replicas)
    ]
    await asyncio.gather(*(c.start() for c in ctls))

    # Every shard claimed before the apps arrive (a replica with nothing claims at once).
    async def all_held() -> bool:
        return None not in (await _holders(bench, shards)).values()

    await wait_for(all_held, limit=60, interval=0.5, what="every shard Lease held")
    held0 = await _holders(bench, shards)
    s0 = [c.sample() for c in ctls]
    m0 = [await c.metrics() for c in ctls]
    names = [f"app-{i:04d}" for i in range(count)]
    wanted = set(names)
    watch = WatchCache(bench.kube, APP_API, "Application", CONTROL_NS)
    await watch.start()
    t0 = time.monotonic()
    await bench.create_apps([application(n, repo, f"apps/{n}", f"{NS_PREFIX}{n}") for n in names])
    converged = 0
    next_report = t0 + 30
    while time.monotonic() - t0 < limit:
        converged = sum(
            1
            for o in watch.items()
            if o["metadata"]["name"] in wanted and _synced_healthy(o, revision)
        )
        if converged == count:
            break
        if time.monotonic() > next_report:
            log(f"shards {count}: {converged} Synced+Healthy at {time.monotonic() - t0:.0f}s")
            next_report += 30
        await asyncio.sleep(1)
    elapsed = time.monotonic() - t0
    s1 = [c.sample() for c in ctls]
    m1 = [await c.metrics() for c in ctls]
    per_replica: list[dict[str, Any]] = []
    for r, ctl in enumerate(ctls):
        per_replica.append(
            {
                "replica": ctl.label,
                "shards_held": sorted(i for i, h in held0.items() if _owner(h, ctls) is ctl),
                "cpu_s": round(s1[r].cpu_s - s0[r].cpu_s, 1),
                "peak_rss_mib": round(max(ctl.peak_rss_mib, s1[r].hwm_mib), 1),
                "reconciles": int(m1[r].get("reconciles", 0) - m0[r].get("reconciles", 0)),
                "syncs": int(m1[r].get("syncs", 0) - m0[r].get("syncs", 0)),
            }
        )
    log(f"shards {count}: {converged}/{count} converged in {elapsed:.1f}s over {replicas}")

    # Kill the replica holding the most shards (SIGKILL: its Leases must expire).
    victim = max(ctls, key=lambda c: sum(1 for h in held0.values() if _owner(h, ctls) is c))
    moved = sorted(i for i, h in held0.items() if _owner(h, ctls) is victim)
    living = [c for c in ctls if c is not victim]
    assert victim.proc is not None
    victim.proc.kill()
    killed = time.monotonic()
    await asyncio.to_thread(victim.proc.wait, 10)
    log(f"killed {victim.label} (pid {victim.pid}) holding shards {moved}")
    rebalance_s: float | None = None
    while time.monotonic() - killed < 120:
        holders = await _holders(bench, shards)
        if all(_owner(h, living) is not None for h in holders.values()):
            rebalance_s = time.monotonic() - killed
            break
        await asyncio.sleep(0.2)
    held1 = await _holders(bench, shards)
    await watch.stop()
    for ctl in ctls:
        await ctl.stop()
    result = {
        "apps": count,
        "replicas": replicas,
        "shards": shards,
        "converged": converged,
        "total_s": round(elapsed, 1) if converged == count else None,
        "per_replica": per_replica,
        "reconciles_total": sum(r["reconciles"] for r in per_replica),
        "syncs_total": sum(r["syncs"] for r in per_replica),
        "killed": victim.label,
        "moved_shards": moved,
        "rebalance_s": round(rebalance_s, 1) if rebalance_s is not None else None,
        "holders_after": {
            str(i): (o.label if (o := _owner(h, living)) else None) for i, h in held1.items()
        },
        "what": "SIGKILL of the replica holding most shards -> every shard Lease held by a "
        "living replica",
    }
    log(f"rebalance after killing {victim.label}: {result['rebalance_s']}s")
    return result
