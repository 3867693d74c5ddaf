"""Time the process spends in Python's cyclic garbage collector, as a Prometheus counter.

``gitsail_python_gc_seconds_total{generation}`` (and ``gitsail_python_gc_runs_total``):
with thousands of apps the watch caches hold millions of objects, and a full collection
walks all of them; the benchmark reports this share of the controller's CPU. The timer is
``gc.callbacks``, installed once per process whatever the number of ``Metrics``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GCCollector", "gc_totals"]

_lock = threading.Lock()
_started: list[float] = [0.0]
_seconds = [0.0, 0.0, 0.0]
_runs = [0, 0, 0]
_installed = [False]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = int(info.get("generation", 2))
    if 0 <= generation <= 2:
        _seconds[generation] += time.perf_counter() - _started[0]
        _runs[generation] += 1


def _install() -> None:
    with _lock:
        if not _installed[0]:
            gc.callbacks.append(_on_gc)
            _installed[0] = True


def gc_totals() -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    """Seconds spent in, and runs of, collections of each generation since installed."""
    _install()
    return (_seconds[0], _seconds[1], _seconds[2]), (_runs[0], _runs[1], _runs[2])


class GCCollector(Collector):
    """Reads the collector's totals at scrape time (and starts timing when built)."""

    def __init__(self) -> None:
        _install()

    def collect(self) -> Iterator[CounterMetricFamily]:
        seconds, runs = gc_totals()
        spent = CounterMetricFamily(
            "gitsail_python_gc_seconds",
            "Seconds spent in Python's cyclic garbage collector, by generation",
            labels=["generation"],
        )
        counted = CounterMetricFamily(
            "gitsail_python_gc_runs",
            "Collections run by Python's cyclic garbage collector, by generation",
            labels=["generation"],
        )
        for generation in range(3):
            spent.add_metric([str(generation)], seconds[generation])
            counted.add_metric([str(generation)], runs[generation])
        yield spent
        yield counted
