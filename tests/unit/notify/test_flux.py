"""Flux Provider/Alert parsing, events from Ready transitions, Alert matching (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.notify.flux import (
    ReadyState,
    alert_matches,
    flux_event,
    parse_alert,
    parse_provider,
    ready_state,
)

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def provider(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": {"name": "hook", "namespace": "flux-system", "uid": "0123456789abcdef"},
        "spec": {"type": "generic", "address": "https://hooks.example.com/x", **spec},
    }


def alert(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": {"name": "ops", "namespace": "flux-system"},
        "spec": {
            "providerRef": {"name": "hook"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
            **spec,
        },
    }


def kustomization(status: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": "webapp",
            "namespace": "flux-system",
            "uid": "u-1",
            "labels": {"team": "a"},
            "annotations": {"event.toolkit.fluxcd.io/env": "prod", "other": "x"},
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": status, "reason": reason, "message": message}
            ],
            "lastAppliedRevision": "main@sha1:" + "a" * 40,
            **extra,
        },
    }


def test_provider_fields_and_defaults() -> None:
    spec = parse_provider(provider(channel="ops", timeout="1m30s", secretRef={"name": "s"}))
    assert (spec.type, spec.channel, spec.timeout, spec.secret_name) == (
        "generic",
        "ops",
        90.0,
        "s",
    )
    assert parse_provider(provider()).timeout == 15.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "discord"}, "spec.type"),
        ({"proxy": "http://proxy:3128"}, "spec.proxy"),
        ({"certSecretRef": {"name": "ca"}}, "spec.certSecretRef"),
        ({"timeout": "forever"}, "spec.timeout"),
        ({"timeout": "1h"}, "spec.timeout"),
        ({"suspend": "yes"}, "spec.suspend"),
    ],
)
def test_provider_refusals_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_provider(provider(**spec))
    assert exc.value.field == field
    assert "Provider flux-system/hook" in str(exc.value)


def test_proxy_is_refused_not_ignored() -> None:
    with pytest.raises(UnsupportedField):
        parse_provider(provider(proxy="http://p:1"))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"providerRef": None}, "spec.providerRef"),
        ({"eventSources": []}, "spec.eventSources"),
        ({"eventSeverity": "warning"}, "spec.eventSeverity"),
        ({"inclusionList": ["("]}, "spec.inclusionList[0]"),
        ({"exclusionList": ["x" * 600]}, "spec.exclusionList[0]"),
        (
            {"eventSources": [{"kind": "Kustomization", "name": "a", "matchLabels": {"a": "b"}}]},
            "spec.eventSources[0].matchLabels",
        ),
    ],
)
def test_alert_refusals_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_alert(alert(**spec))
    assert exc.value.field == field


def test_ready_state_ignores_in_progress() -> None:
    assert ready_state(kustomization("Unknown", "Progressing", "working")) is None
    assert ready_state({"status": {}}) is None
    failed = ready_state(
        kustomization(
            "False",
            "BuildFailed",
            "kustomize build failed",
            lastAttemptedRevision="main@sha1:" + "b" * 40,
        )
    )
    assert failed == ReadyState(
        "False", "BuildFailed", "kustomize build failed", "main@sha1:" + "b" * 40
    )


def test_event_has_flux_shape() -> None:
    obj = kustomization("False", "BuildFailed", "kustomize build failed")
    state = ready_state(obj)
    assert state is not None
    payload = flux_event(obj, state, now=NOW).payload()
    assert payload == {
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "webapp",
            "namespace": "flux-system",
            "uid": "u-1",
        },
        "severity": "error",
        "timestamp": "2026-12-02T12:00:00Z",
        "message": "kustomize build failed",
        "reason": "BuildFailed",
        "metadata": {
            "env": "prod",
            "kustomize.toolkit.fluxcd.io/revision": "main@sha1:" + "a" * 40,
        },
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller",
    }
    ok = kustomization("True", "ReconciliationSucceeded", "Applied revision")
    assert flux_event(ok, ready_state(ok) or state).severity == "info"


def test_alert_metadata_never_overrides_the_event() -> None:
    obj = kustomization("True", "ReconciliationSucceeded", "done")
    event = flux_event(obj, ready_state(obj) or ReadyState("", "", "", ""))
    merged = event.with_metadata({"env": "staging", "summary": "cluster eu"})
    assert dict(merged.metadata)["env"] == "prod"
    assert dict(merged.metadata)["summary"] == "cluster eu"
    assert merged.fingerprint() != event.fingerprint()


def _event(status: str = "False", message: str = "apply failed: quota exceeded") -> Any:
    obj = kustomization(status, "Failed" if status == "False" else "Succeeded", message)
    state = ready_state(obj)
    assert state is not None
    return flux_event(obj, state)


def test_matching_by_kind_name_namespace_labels() -> None:
    assert alert_matches(parse_alert(alert()), _event())
    named = parse_alert(alert(eventSources=[{"kind": "Kustomization", "name": "other"}]))
    assert not alert_matches(named, _event())
    other_ns = parse_alert(
        alert(eventSources=[{"kind": "Kustomization", "name": "*", "namespace": "apps"}])
    )
    assert not alert_matches(other_ns, _event())
    labelled = alert(
        eventSources=[{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}]
    )
    assert alert_matches(parse_alert(labelled), _event())
    labelled["spec"]["eventSources"][0]["matchLabels"] = {"team": "b"}
    assert not alert_matches(parse_alert(labelled), _event())
    kind = parse_alert(alert(eventSources=[{"kind": "HelmRelease", "name": "*"}]))
    assert not alert_matches(kind, _event())


def test_severity_and_message_filters() -> None:
    errors_only = parse_alert(alert(eventSeverity="error"))
    assert alert_matches(errors_only, _event("False"))
    assert not alert_matches(errors_only, _event("True", "Applied revision main"))
    assert alert_matches(parse_alert(alert()), _event("True", "Applied revision main"))
    included = parse_alert(alert(inclusionList=[".*quota.*"]))
    assert alert_matches(included, _event())
    assert not alert_matches(included, _event(message="timeout"))
    excluded = parse_alert(alert(exclusionList=["^apply failed"]))
    assert not alert_matches(excluded, _event())
    assert not alert_matches(parse_alert(alert(suspend=True)), _event())
