"""The helm benchmark's pure parts: a loop pass's summary, the ratios, the wrapper log."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks.helm_bench import (
    HelmRun,
    compute_ratios,
    count_lines,
    handled,
    helm_ready,
    loop_summary,
)


def _runs(*walls: float, failed: int = 0) -> list[HelmRun]:
    runs = [HelmRun(f"bench-hl-{i:04d}", w, 0) for i, w in enumerate(walls)]
    for i in range(failed):
        runs[i] = HelmRun(runs[i].namespace, runs[i].wall_s, 1, "Error: boom")
    return runs


def test_loop_summary_per_release_figures() -> None:
    summary = loop_summary(
        "install",
        _runs(1.0, 2.0, 3.0, 4.0),
        concurrency=2,
        elapsed_s=6.0,
        verified_s=6.5,
        cpu_s=2.0,
        requests=120,
    )
    assert summary["releases"] == 4
    assert summary["total_s"] == 6.5
    assert summary["helm_cpu_s_per_release"] == 0.5
    assert summary["wall_s_per_release"] == 1.5
    assert summary["releases_per_min"] == 40.0
    assert summary["helm_wall_median_s"] == 2.5
    assert summary["helm_wall_max_s"] == 4.0
    assert summary["apiserver_requests_per_release"] == 30.0
    assert summary["failed"] == 0
    assert "first_failure" not in summary


def test_loop_summary_reports_failures_and_unverified_passes() -> None:
    summary = loop_summary(
        "noop", _runs(1.0, 1.0, failed=1), concurrency=1, elapsed_s=2.0, verified_s=None, cpu_s=1
    )
    assert summary["failed"] == 1
    assert summary["total_s"] is None
    assert summary["first_failure"] == {"namespace": "bench-hl-0000", "stderr": "Error: boom"}
    assert "apiserver_requests" not in summary


def _baseline() -> dict[str, Any]:
    def run(label: str, conc: int, total: float | None, cpu: float) -> dict[str, Any]:
        return {
            "label": label,
            "concurrency": conc,
            "total_s": total,
            "helm_cpu_s_per_release": cpu,
        }

    return {
        "install": [run("install", 10, 40.0, 0.4), run("install", 1, 100.0, 0.3)],
        "noop": [run("noop", 10, 30.0, 0.25), run("noop", 1, 80.0, 0.2)],
    }


def test_ratios_divide_gitsail_by_the_helm_loop_at_the_same_concurrency() -> None:
    gitsail = {
        "convergence": {"total_s": 20.0},
        "idle_reconcile": {
            "cpu_s_per_release": 0.01,
            "total_s": 3.0,
            "helm_processes_per_release": 0.0,
        },
    }
    ratios = compute_ratios(_baseline(), gitsail, concurrency=10)
    assert ratios["convergence_vs_helm_loop"] == 0.5
    assert ratios["convergence_vs_helm_loop_serial"] == 0.2
    assert ratios["idle_reconcile_cpu_vs_noop_upgrade"] == 0.04
    assert ratios["idle_reconcile_cpu_vs_noop_upgrade_serial"] == 0.05
    assert ratios["idle_reconcile_wall_vs_noop_loop"] == 0.1
    assert ratios["helm_processes_per_idle_reconcile"] == 0.0


def test_ratios_are_none_when_a_side_did_not_finish() -> None:
    gitsail: dict[str, Any] = {"convergence": {"total_s": None}, "idle_reconcile": {}}
    baseline = _baseline()
    baseline["noop"][0]["helm_cpu_s_per_release"] = 0.0
    ratios = compute_ratios(baseline, gitsail, concurrency=10)
    assert ratios["convergence_vs_helm_loop"] is None
    assert ratios["idle_reconcile_cpu_vs_noop_upgrade"] is None
    assert compute_ratios({}, {}, concurrency=10)["convergence_vs_helm_loop"] is None


def _release(generation: int, observed: int, ready: str, handled_at: str | None = None) -> Any:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [{"type": "Ready", "status": ready}],
    }
    if handled_at is not None:
        status["lastHandledReconcileAt"] = handled_at
    return {"metadata": {"name": "rel-0000", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "ready"),
    [
        (_release(2, 2, "True"), True),
        (_release(2, 1, "True"), False),  # Ready for an older generation
        (_release(2, 2, "False"), False),
        ({"metadata": {"generation": 1}}, False),
    ],
)
def test_helm_ready(obj: Any, ready: bool) -> None:
    assert helm_ready(obj) is ready


def test_handled_needs_the_token_and_ready() -> None:
    assert handled(_release(1, 1, "True", "t1"), "t1")
    assert not handled(_release(1, 1, "True", "t0"), "t1")
    assert not handled(_release(1, 1, "False", "t1"), "t1")


def test_count_lines_counts_helm_verbs() -> None:
    assert count_lines("upgrade\ninstall\nupgrade\n\n") == {"upgrade": 2, "install": 1, "(none)": 1}
    assert count_lines("") == {}
