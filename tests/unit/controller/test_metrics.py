from __future__ import annotations

from typing import cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitsail.controller.manager import Controller, ControllerOptions
from gitsail.controller.metrics import Metrics
from gitsail.kube import Kube

EXPECTED = {
    # family name (counters lose "_total" in the parser) → label names
    "gitsail_app_info": {"namespace", "name", "project", "sync_status", "health_status", "repo"},
    "gitsail_app_reconcile_duration_seconds": {"namespace"},
    "gitsail_app_sync": {"namespace", "name", "phase"},
    "gitsail_app_sync_duration_seconds": {"namespace"},
    "gitsail_git_request_duration_seconds": {"request_type"},
    "gitsail_git_requests": {"request_type"},
    "gitsail_render_duration_seconds": {"tool"},
    "gitsail_render_cache": {"result"},
    "gitsail_webhook_requests": {"provider", "result"},
    "gitsail_selfheal": {"namespace"},
    "gitsail_workqueue_depth": set(),
    "gitsail_leader": set(),
}


def families(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        if family.name.endswith("_created"):  # prometheus_client's creation timestamps
            continue
        out[family.name] = [(s.name, dict(s.labels), s.value) for s in family.samples]
    return out


def exercised() -> Metrics:
    m = Metrics()
    m.set_app("argocd", "web", "default", "Synced", "Healthy", "https://github.com/acme/deploy")
    m.observe_reconcile("argocd", 0.3)
    m.record_sync("argocd", "web", "Succeeded", 12.0)
    m.observe_git_request("ls-remote", 0.1)
    m.observe_git_request("fetch", 1.5)
    m.observe_render("kustomize", 0.2)
    m.count_render_cache(hit=True)
    m.count_render_cache(hit=False)
    m.count_webhook("github", "accepted")
    m.count_selfheal("argocd")
    m.set_workqueue_depth(7)
    m.set_leader(True)
    return m


def test_every_metric_has_its_name_and_labels() -> None:
    found = families(exercised())
    assert set(found) == set(EXPECTED)
    for name, labels in EXPECTED.items():
        for sample_name, sample_labels, _ in found[name]:
            if sample_name.endswith("_bucket"):
                sample_labels.pop("le")
            assert set(sample_labels) == labels, sample_name


def test_counters_and_gauges_are_exposed_with_their_values() -> None:
    text = exercised().render().decode()
    assert 'gitsail_app_sync_total{name="web",namespace="argocd",phase="Succeeded"} 1.0' in text
    assert 'gitsail_git_requests_total{request_type="fetch"} 1.0' in text
    assert 'gitsail_render_cache_total{result="hit"} 1.0' in text
    assert 'gitsail_webhook_requests_total{provider="github",result="accepted"} 1.0' in text
    assert "gitsail_workqueue_depth 7.0" in text
    assert "gitsail_leader 1.0" in text


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.set_leader(True)
    assert "gitsail_leader 0.0" in second.render().decode()


def test_content_type_is_prometheus_text() -> None:
    assert Metrics().content_type.startswith("text/plain")


def test_app_info_repo_loses_credentials() -> None:
    m = Metrics()
    m.set_app(
        "argocd", "web", "p", "Synced", "Healthy", "https://bot:hunter2@git.example.com/r.git"
    )
    m.set_app("argocd", "api", "p", "Synced", "Healthy", "ssh://git:pw@git.example.com/r.git")
    text = m.render().decode()
    assert "hunter2" not in text
    assert "bot" not in text
    assert ":pw@" not in text
    assert 'repo="https://git.example.com/r.git"' in text


def test_app_info_keeps_one_series_per_app() -> None:
    m = Metrics()
    m.set_app("argocd", "web", "p", "OutOfSync", "Progressing", "https://h/r")
    m.set_app("argocd", "web", "p", "Synced", "Healthy", "https://h/r")
    info = families(m)["gitsail_app_info"]
    assert [(s[1]["sync_status"], s[1]["health_status"], s[2]) for s in info] == [
        ("Synced", "Healthy", 1.0)
    ]


def test_forget_app_removes_its_series() -> None:
    m = Metrics()
    m.set_app("argocd", "web", "p", "Synced", "Healthy", "https://h/r")
    m.set_app("argocd", "api", "p", "Synced", "Healthy", "https://h/r")
    m.record_sync("argocd", "web", "Failed")
    m.forget_app("argocd", "web")
    m.forget_app("argocd", "never-seen")
    found = families(m)
    assert [s[1]["name"] for s in found["gitsail_app_info"]] == ["api"]
    assert all(s[1].get("name") != "web" for s in found.get("gitsail_app_sync", []))


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("record_sync", ("ns", "app", "Exploded")),
        ("observe_git_request", ("clone", 1.0)),
        ("observe_render", ("kubectl", 1.0)),
        ("count_webhook", ("github", "maybe")),
        ("count_webhook", ("bitbucket", "accepted")),
    ],
)
def test_unbounded_label_values_are_refused(call: str, args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        getattr(Metrics(), call)(*args)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def test_the_controller_wires_render_reports_into_metrics() -> None:
    controller = Controller(cast(Kube, object()), ControllerOptions())
    controller.engine.observer.rendered("kustomize", 0.2, False)
    controller.engine.observer.rendered("kustomize", 0.0, True)
    metrics = controller.metrics
    assert _sample(metrics, "gitsail_render_cache_total", result="miss") == 1
    assert _sample(metrics, "gitsail_render_cache_total", result="hit") == 1
    assert _sample(metrics, "gitsail_render_duration_seconds_count", tool="kustomize") == 1


def test_a_render_tool_without_a_label_never_fails_the_render() -> None:
    controller = Controller(cast(Kube, object()), ControllerOptions())
    controller.engine.observer.rendered("some-plugin", 0.2, False)
    assert _sample(controller.metrics, "gitsail_render_cache_total", result="miss") == 1
