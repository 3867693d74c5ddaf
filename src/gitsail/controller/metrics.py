"""Prometheus metrics of the controller, on a registry of their own, with bounded labels.

Each ``Metrics`` owns a ``CollectorRegistry``, so tests and several controllers in one
process never collide on the global one; the server exposes ``render()`` with
``content_type`` at ``/metrics``.

Labels are bounded by design: namespaces and app names are bounded by the number of apps
(like Argo CD's ``argocd_app_sync_total``); every other label takes one of a fixed set of
values, checked here (a ``ValueError`` is a programming error, not a runtime condition).
Repository URLs in ``gitsail_app_info`` lose any user name and password, and an app's
series go away with ``forget_app`` when the app is deleted.

======================================== ========= ==========================================
metric                                   type      labels
======================================== ========= ==========================================
gitsail_app_info                         gauge 1   namespace, name, project, sync_status,
                                                   health_status, repo
gitsail_app_reconcile_duration_seconds   histogram namespace
gitsail_app_sync_total                   counter   namespace, name, phase
gitsail_app_sync_duration_seconds        histogram namespace
gitsail_git_request_duration_seconds     histogram request_type (ls-remote, fetch)
gitsail_git_requests_total               counter   request_type
gitsail_render_duration_seconds          histogram tool (directory, kustomize, helm,
                                                   jsonnet)
gitsail_render_cache_total               counter   result (hit, miss)
gitsail_webhook_requests_total           counter   provider, result (accepted, refused,
                                                   ignored)
gitsail_selfheal_total                   counter   namespace
gitsail_workqueue_depth                  gauge
gitsail_leader                           gauge 0/1
gitsail_kube_*, gitsail_python_gc_*      counter   (``kube_metrics``, ``gc_metrics``)
======================================== ========= ==========================================
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from gitsail.source import redact_url

__all__ = [
    "GIT_REQUEST_TYPES",
    "RENDER_TOOLS",
    "SYNC_PHASES",
    "WEBHOOK_PROVIDERS",
    "WEBHOOK_RESULTS",
    "Metrics",
]

SYNC_PHASES = frozenset({"Running", "Terminating", "Succeeded", "Failed", "Error"})
GIT_REQUEST_TYPES = frozenset({"ls-remote", "fetch"})
RENDER_TOOLS = frozenset({"directory", "kustomize", "helm", "jsonnet"})
WEBHOOK_PROVIDERS = frozenset({"github", "gitlab", "generic", "unknown"})
WEBHOOK_RESULTS = frozenset({"accepted", "refused", "ignored"})

# Reconciles are usually sub-second; syncs wait for health and can take minutes.
_RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
_SYNC_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_GIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
_RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)

_APP_INFO_LABELS = ("namespace", "name", "project", "sync_status", "health_status", "repo")


def _check(value: str, allowed: frozenset[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(sorted(allowed))}")
    return value


class Metrics:
    """The controller's metrics; one per controller process (or per test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.app_info = Gauge(
            "gitsail_app_info",
            "Information about an application (always 1)",
            _APP_INFO_LABELS,
            registry=r,
        )
        self.app_reconcile_duration = Histogram(
            "gitsail_app_reconcile_duration_seconds",
            "Duration of application reconciles",
            ("namespace",),
            buckets=_RECONCILE_BUCKETS,
            registry=r,
        )
        self.app_sync_total = Counter(
            "gitsail_app_sync_total",
            "Sync operations by phase reached",
            ("namespace", "name", "phase"),
            registry=r,
        )
        self.app_sync_duration = Histogram(
            "gitsail_app_sync_duration_seconds",
            "Duration of sync operations, from start to completion",
            ("namespace",),
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.git_request_duration = Histogram(
            "gitsail_git_request_duration_seconds",
            "Duration of git requests",
            ("request_type",),
            buckets=_GIT_BUCKETS,
            registry=r,
        )
        self.git_requests_total = Counter(
            "gitsail_git_requests_total",
            "Git requests",
            ("request_type",),
            registry=r,
        )
        self.render_duration = Histogram(
            "gitsail_render_duration_seconds",
            "Duration of manifest renders (cache misses)",
            ("tool",),
            buckets=_RENDER_BUCKETS,
            registry=r,
        )
        self.render_cache_total = Counter(
            "gitsail_render_cache_total",
            "Render cache lookups",
            ("result",),
            registry=r,
        )
        self.webhook_requests_total = Counter(
            "gitsail_webhook_requests_total",
            "Webhook requests by provider and outcome",
            ("provider", "result"),
            registry=r,
        )
        self.selfheal_total = Counter(
            "gitsail_selfheal_total",
            "Syncs started to correct drift (self-heal)",
            ("namespace",),
            registry=r,
        )
        self.workqueue_depth = Gauge(
            "gitsail_workqueue_depth", "Objects waiting in the work queue", registry=r
        )
        self.leader = Gauge(
            "gitsail_leader", "1 when this replica is the elected leader", registry=r
        )
        self._lock = threading.Lock()
        self._app_labels: dict[tuple[str, str], tuple[str, ...]] = {}
        self._app_phases: dict[tuple[str, str], set[str]] = {}

    @property
    def content_type(self) -> str:
        """The Content-Type of ``render()``'s output."""
        return CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        """The exposition text of every metric in this registry."""
        return generate_latest(self.registry)

    # -- applications -------------------------------------------------------------------

    def set_app(
        self, namespace: str, name: str, project: str, sync: str, health: str, repo: str
    ) -> None:
        """Set the app's ``gitsail_app_info`` series, replacing its previous one."""
        labels = (namespace, name, project, sync, health, redact_url(repo) if repo else "")
        with self._lock:
            previous = self._app_labels.get((namespace, name))
            if previous == labels:
                return
            if previous is not None:
                self._remove(self.app_info, previous)
            self.app_info.labels(*labels).set(1)
            self._app_labels[(namespace, name)] = labels

    def forget_app(self, namespace: str, name: str) -> None:
        """Drop every per-app series of a deleted app (info and sync counters)."""
        with self._lock:
            previous = self._app_labels.pop((namespace, name), None)
            if previous is not None:
                self._remove(self.app_info, previous)
            for phase in self._app_phases.pop((namespace, name), set()):
                self._remove(self.app_sync_total, (namespace, name, phase))

    def observe_reconcile(self, namespace: str, seconds: float) -> None:
        self.app_reconcile_duration.labels(namespace).observe(seconds)

    def record_sync(
        self, namespace: str, name: str, phase: str, seconds: float | None = None
    ) -> None:
        """Count a sync that reached ``phase``; observe its duration when it completed."""
        _check(phase, SYNC_PHASES, "sync phase")
        with self._lock:
            self._app_phases.setdefault((namespace, name), set()).add(phase)
            self.app_sync_total.labels(namespace, name, phase).inc()
        if seconds is not None:
            self.app_sync_duration.labels(namespace).observe(seconds)

    def count_selfheal(self, namespace: str) -> None:
        self.selfheal_total.labels(namespace).inc()

    # -- pipeline -----------------------------------------------------------------------

    def observe_git_request(self, request_type: str, seconds: float) -> None:
        """Count one git request (``ls-remote`` or ``fetch``) and observe its duration."""
        _check(request_type, GIT_REQUEST_TYPES, "git request type")
        self.git_requests_total.labels(request_type).inc()
        self.git_request_duration.labels(request_type).observe(seconds)

    def observe_render(self, tool: str, seconds: float) -> None:
        _check(tool, RENDER_TOOLS, "render tool")
        self.render_duration.labels(tool).observe(seconds)

    def count_render_cache(self, hit: bool) -> None:
        self.render_cache_total.labels("hit" if hit else "miss").inc()

    # -- controller ---------------------------------------------------------------------

    def count_webhook(self, provider: str, result: str) -> None:
        """Count a webhook request; ``provider`` is ``unknown`` when none was recognized."""
        _check(provider, WEBHOOK_PROVIDERS, "webhook provider")
        _check(result, WEBHOOK_RESULTS, "webhook result")
        self.webhook_requests_total.labels(provider, result).inc()

    def set_workqueue_depth(self, depth: int) -> None:
        self.workqueue_depth.set(depth)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    @staticmethod
    def _remove(metric: Gauge | Counter, labels: tuple[str, ...]) -> None:
        with contextlib.suppress(KeyError):  # already gone
            metric.remove(*labels)
