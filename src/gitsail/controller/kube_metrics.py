"""The controller's apiserver client, seen from ``/metrics``: requests counted at the
client and the time spent waiting for the client-side budget (``gitsail.kube.flow``).

======================================== ========= ==========================================
metric                                   type      labels
======================================== ========= ==========================================
gitsail_kube_requests_total              counter   verb (GET, POST, PUT, PATCH, DELETE,
                                                   APPLY, WATCH; ``+dry-run`` for dry runs)
gitsail_kube_throttled_requests_total    counter   requests that waited for a token
gitsail_kube_throttled_seconds_total     counter   seconds requests waited for a token
gitsail_kube_rejected_total              counter   429 answers (the server shedding load)
======================================== ========= ==========================================

The counts are the client's own (every attempt, retries included), so an idle controller's
apiserver load is read from the controller alone, without the apiserver's metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gitsail.kube import FlowControl, Kube, RequestStats

__all__ = ["KUBE_BURST", "KUBE_QPS", "KubeCollector", "kube_flow"]

# The controller's default budget. client-go's own default is 5/10; Argo CD's application
# controller raises it to 50/100 (ARGOCD_K8S_CLIENT_QPS / _BURST). gitsail's default is
# higher: it applies each object once with a dry run before it (Argo CD diffs against
# its cache and applies with kubectl in a subprocess, which has its own budget), and on
# one machine its 1000-app convergence needs ~150 requests/s (benchmarks/README.md).
KUBE_QPS = 200.0
KUBE_BURST = 400
MAX_KUBE_QPS = 100_000.0
MAX_KUBE_BURST = 100_000


def kube_flow(qps: float, burst: int) -> FlowControl:
    """The controller's budget from ``--kube-qps``/``--kube-burst``; ``ValueError`` for a
    negative, non-finite or absurd value (``qps`` 0 is "no limit")."""
    if not 0 <= qps <= MAX_KUBE_QPS:  # (also refuses NaN)
        raise ValueError(f"--kube-qps must be between 0 (no limit) and {MAX_KUBE_QPS:g}")
    if not 1 <= burst <= MAX_KUBE_BURST:
        raise ValueError(f"--kube-burst must be between 1 and {MAX_KUBE_BURST}")
    return FlowControl(qps, burst)


class KubeCollector(Collector):
    """Reads a ``Kube``'s ``stats`` and ``flow`` at scrape time."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def collect(self) -> Iterator[CounterMetricFamily]:
        # (A stand-in for Kube in tests may have neither: then nothing is counted.)
        stats = getattr(self.kube, "stats", None) or RequestStats()
        flow = getattr(self.kube, "flow", None) or FlowControl(0, 1)
        requests = CounterMetricFamily(
            "gitsail_kube_requests", "Requests sent to the apiserver, by verb", labels=["verb"]
        )
        for verb, count in sorted(stats.requests.items()):
            requests.add_metric([verb], count)
        yield requests
        yield CounterMetricFamily(
            "gitsail_kube_throttled_requests",
            "Requests that waited for the client-side QPS budget",
            value=flow.throttled,
        )
        yield CounterMetricFamily(
            "gitsail_kube_throttled_seconds",
            "Seconds requests waited for the client-side QPS budget",
            value=flow.waited_s,
        )
        yield CounterMetricFamily(
            "gitsail_kube_rejected",
            "429 answers from the apiserver (retried after Retry-After)",
            value=stats.throttled_429,
        )
