"""The controller benchmark's former single module: ``python -m benchmarks.controller_bench``
still runs it, and the names other benchmarks import from here are re-exported.

The code is in ``benchmarks/controller/`` (one module per measurement, see its
``__init__``).
"""

from __future__ import annotations

from benchmarks.controller.common import (
    APP_API,
    AUTOMATED,
    CLUSTER,
    CONTROL_NS,
    FLUX_KINDS,
    FLUX_NS,
    NS_PREFIX,
    RESULTS_DIR,
    ROOT,
    WEBHOOK_SECRET,
    Counts,
    ProcSample,
    _configmap,
    _cpu_model,
    _delta,
    _pct,
    _podinfo,
    _summary,
    _synced_healthy,
    _top,
    apiserver_requests,
    application,
    controller_counters,
    git_server,
    github_push,
    log,
    parse_prometheus,
    proc_sample,
    wait_for,
)
from benchmarks.controller.converge import convergence_phase, fleet_files
from benchmarks.controller.fixture import Bench
from benchmarks.controller.idle import QUIET_RPS, SETTLE_STEP, idle_phase, settle
from benchmarks.controller.latency import latency_phase
from benchmarks.controller.process import ControllerProcess
from benchmarks.controller.run import main, run

__all__ = [
    "APP_API",
    "AUTOMATED",
    "CLUSTER",
    "CONTROL_NS",
    "FLUX_KINDS",
    "FLUX_NS",
    "NS_PREFIX",
    "QUIET_RPS",
    "RESULTS_DIR",
    "ROOT",
    "SETTLE_STEP",
    "WEBHOOK_SECRET",
    "Bench",
    "ControllerProcess",
    "Counts",
    "ProcSample",
    "_configmap",
    "_cpu_model",
    "_delta",
    "_pct",
    "_podinfo",
    "_summary",
    "_synced_healthy",
    "_top",
    "apiserver_requests",
    "application",
    "controller_counters",
    "convergence_phase",
    "fleet_files",
    "git_server",
    "github_push",
    "idle_phase",
    "latency_phase",
    "log",
    "main",
    "parse_prometheus",
    "proc_sample",
    "run",
    "settle",
    "wait_for",
]

if __name__ == "__main__":
    main()
