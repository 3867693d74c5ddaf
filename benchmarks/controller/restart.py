"""Restart: a fresh controller process over apps that are all synced and unchanged.

Measured right after the idle window (which stopped the converging controller): a new
process (empty caches, as a restarted pod) starts, takes the lead, reads every app and
compares it (fetch, render, dry run, diff). Reported: the time from the process start to
"every app compared" (its reconcile counter reaching the app count), and the writes it
made until ``quiet`` seconds after that, counted at its client and at the apiserver
(which should both be 0: an unchanged app's status is not rewritten, ``docs/scale.md``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.controller.common import _delta, apiserver_requests, log
from benchmarks.controller.fixture import Bench

WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")


async def restart_phase(bench: Bench, count: int, *, quiet: float = 20.0) -> dict[str, Any]:
    ctl = bench.controller(f"restart-{count}", resync=120, jitter=60)
    api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    t0 = time.monotonic()
    await ctl.start()
    leading_s = time.monotonic() - t0
    compared_s: float | None = None
    counters: dict[str, float] = {}
    while time.monotonic() - t0 < 300:
        counters = await ctl.metrics()
        if counters.get("reconciles", 0.0) >= count:
            compared_s = time.monotonic() - t0
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(quiet)
    counters = await ctl.metrics()
    sample = ctl.sample()
    api1 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    await ctl.stop()
    writes_at_apiserver = {
        k: int(v)
        for k, v in _delta(api1, api0).items()
        if k.split()[0] in WRITE_VERBS and "dry-run" not in k
    }
    result = {
        "apps": count,
        "leading_s": round(leading_s, 1),
        "all_compared_s": round(compared_s, 1) if compared_s is not None else None,
        "reconciles": int(counters.get("reconciles", 0.0)),
        "controller_writes": int(counters.get("kube_writes", 0.0)),
        "controller_requests": int(counters.get("kube_requests_non_watch", 0.0)),
        "controller_cpu_s": round(sample.cpu_s, 1),
        "apiserver_writes_all_clients": writes_at_apiserver,
        "what": "fresh controller process over synced, unchanged apps: start -> reconcile "
        f"counter >= apps; writes counted until {quiet:g} s after (the apiserver's count "
        "includes kube-controller-manager and kwok)",
    }
    log(
        f"restart {count}: all compared at {result['all_compared_s']}s, "
        f"{result['controller_writes']} controller writes"
    )
    return result
