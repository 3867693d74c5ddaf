"""The garbage collector's time, counted by generation, at /metrics."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from gitsail.controller.gc_metrics import GCCollector, gc_totals


def test_a_full_collection_is_counted_with_its_time() -> None:
    registry = CollectorRegistry()
    registry.register(GCCollector())
    (_, _, before_s), (_, _, before_runs) = gc_totals()
    garbage = [[n] for n in range(100_000)]  # something for the collector to walk
    gc.collect(2)
    del garbage
    (_, _, after_s), (_, _, after_runs) = gc_totals()
    assert after_runs >= before_runs + 1  # (allocating may have run one more by itself)
    assert after_s > before_s
    text = generate_latest(registry).decode()
    assert 'gitsail_python_gc_seconds_total{generation="2"}' in text
    assert f'gitsail_python_gc_runs_total{{generation="2"}} {float(after_runs)}' in text
