"""gitsail doctor --cluster: the rules over live objects (pure functions over listed objects)."""

from __future__ import annotations

from typing import Any

from gitsail.workflow.doctor_cluster import app_findings, drift_findings, image_findings


def _app(name: str, automated: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"repoURL": "https://git.example.com/r.git", "path": "a"}}
    if automated is not None:
        spec["syncPolicy"] = {"automated": automated}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": spec,
    }


def _event(name: str, count: int, message: str, stamp: str, reason: str = "DriftDetected") -> Any:
    return {
        "reason": reason,
        "count": count,
        "lastTimestamp": stamp,
        "message": message,
        "involvedObject": {"kind": "Application", "namespace": "argocd", "name": name},
    }


def _pod(name: str, image: str, owner: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "web"}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "controller": True}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": image}]}}


def test_live_apps_without_automated_prune_or_self_heal() -> None:
    findings = app_findings(
        [
            _app("manual", None),
            _app("half", {"prune": True}),
            _app("good", {"prune": True, "selfHeal": True}),
        ]
    )
    assert [(f.rule, f.file, f.line) for f in findings] == [
        ("no-automated-sync", "cluster:Application/argocd/manual", 0),
        ("no-self-heal", "cluster:Application/argocd/half", 0),
    ]


def test_live_flux_kustomization_without_prune() -> None:
    ks = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "web", "namespace": "flux-system"},
        "spec": {"prune": False, "path": "./x"},
    }
    (finding,) = app_findings([ks])
    assert (finding.rule, finding.file) == ("no-prune", "cluster:Kustomization/flux-system/web")


def test_drift_that_keeps_coming_back_is_counted_over_events() -> None:
    replicas = "Deployment/web /spec/replicas changed by {} (Update)"
    events = [
        _event("web", 2, replicas.format("kubectl"), "2026-12-01T10:00:00Z"),
        _event("web", 1, replicas.format("hpa"), "2026-12-01T11:00:00Z"),
        _event(
            "once", 1, "ConfigMap/x /data/a changed by kubectl (Update)", "2026-12-01T11:00:00Z"
        ),
        _event("other", 9, "synced", "2026-12-01T11:00:00Z", reason="Synced"),
    ]
    (finding,) = drift_findings(events)
    assert finding.rule == "recurring-drift"
    assert finding.file == "cluster:Application/argocd/web"
    assert "3 times" in finding.message
    assert "changed by hpa" in finding.message  # the latest message is quoted
    assert drift_findings(events, repeats=4) == []


def test_running_latest_images_once_per_owner() -> None:
    pods = [
        _pod("web-1", "registry.example.com/web:latest", owner="web-abc"),
        _pod("web-2", "registry.example.com/web:latest", owner="web-abc"),
        _pod("job", "busybox"),
        _pod("pinned", "registry.example.com/web:1.2.0"),
        _pod("digest", "registry.example.com/web@sha256:" + "a" * 64),
    ]
    findings = image_findings(pods)
    assert [(f.rule, f.file) for f in findings] == [
        ("mutable-tag", "cluster:ReplicaSet/web/web-abc"),
        ("mutable-tag", "cluster:Pod/web/job"),
    ]
    assert "no tag (latest)" in findings[1].message


def test_sarif_of_cluster_findings_keeps_the_sarif_shape() -> None:
    """SARIF 2.1.0's required properties (no schema is vendored offline by a pinned
    package; this checks what the specification requires of each object we emit)."""
    from gitsail.workflow.doctor import RULES, sarif

    findings = app_findings([_app("manual", None)]) + image_findings([_pod("p", "busybox:latest")])
    report = sarif(findings)
    assert report["version"] == "2.1.0"
    (run,) = report["runs"]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert set(rule_ids) == set(RULES)
    assert run["tool"]["driver"]["name"]
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert result["level"] in ("none", "note", "warning", "error")
        assert result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"].startswith("cluster:")
        assert "region" not in physical  # no line 0: SARIF lines start at 1
