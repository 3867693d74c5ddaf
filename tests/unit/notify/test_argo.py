"""Argo CD notifications (pure): the ConfigMap, the when subset, subscriptions, once-only."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gitsail.notify.argo import (
    NOTIFIED_ANNOTATION,
    ConditionError,
    compile_path,
    compile_when,
    evaluate,
    notified_state,
    parse_config,
    subscriptions,
    webhook_request,
)
from gitsail.notify.providers import DeliveryError, validate_address

# Argo CD's catalog conditions, as users copy them into argocd-notifications-cm.
CATALOG = {
    "trigger.on-sync-succeeded": """\
- description: Application syncing has succeeded
  send: [app-sync-succeeded]
  when: app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']
""",
    "trigger.on-sync-failed": """\
- description: Application syncing has failed
  send: [app-sync-failed]
  when: app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']
""",
    "trigger.on-health-degraded": """\
- description: Application has degraded
  send: [app-health-degraded]
  when: app.status.health.status == 'Degraded'
""",
    "trigger.on-deployed": """\
- description: Application is synced and healthy. Triggered once per commit.
  oncePer: app.status.operationState?.syncResult?.revision
  send: [app-deployed]
  when: app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']
    and app.status.health.status == 'Healthy'
""",
}
TEMPLATES = {
    f"template.{name}": """\
message: "{{.app.metadata.name}}"
webhook:
  ci:
    method: POST
    path: /apps/{{.app.metadata.name}}
    body: |
      {"app": "{{.app.metadata.name}}", "phase": "{{.app.status.operationState.phase}}",
       "health": "{{.app.status.health.status}}", "url": "{{.context.argocdUrl}}"}
"""
    for name in ("app-sync-succeeded", "app-sync-failed", "app-health-degraded", "app-deployed")
}
SERVICE = """\
url: https://ci.example.com/hooks
headers:
  - name: Authorization
    value: Bearer $ci-token
"""


def config(**extra: str) -> Any:
    data = {
        **CATALOG,
        **TEMPLATES,
        "service.webhook.ci": SERVICE,
        "context": "argocdUrl: https://argocd.example.com\n",
        **extra,
    }
    return parse_config(data, {"ci-token": "tok-123"})


def app(
    phase: str | None, health: str = "Healthy", revision: str = "abc", **annotations: str
) -> dict[str, Any]:
    status: dict[str, Any] = {"health": {"status": health}, "sync": {"status": "Synced"}}
    if phase:
        status["operationState"] = {"phase": phase, "syncResult": {"revision": revision}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "guestbook",
            "namespace": "argocd",
            "uid": "u-1",
            "annotations": {
                "notifications.argoproj.io/subscribe.on-sync-failed.ci": "",
                "notifications.argoproj.io/subscribe.on-health-degraded.ci": "",
                "notifications.argoproj.io/subscribe.on-deployed.ci": "",
                "notifications.argoproj.io/subscribe.on-sync-succeeded.ci": "",
                **annotations,
            },
        },
        "status": status,
    }


def fired(sends: list[Any]) -> list[str]:
    return sorted(s.trigger for s in sends)


def test_catalog_conditions_parse_and_evaluate() -> None:
    cfg = config()
    assert cfg.problems == []
    assert set(cfg.triggers) == {
        "on-sync-succeeded",
        "on-sync-failed",
        "on-health-degraded",
        "on-deployed",
    }
    sends, _, problems = evaluate(app("Failed"), cfg, {}, 1)
    assert problems == []
    assert fired(sends) == ["on-sync-failed"]
    sends, _, _ = evaluate(app("Succeeded"), cfg, {}, 1)
    assert fired(sends) == ["on-deployed", "on-sync-succeeded"]
    sends, _, _ = evaluate(app("Succeeded", health="Degraded"), cfg, {}, 1)
    assert fired(sends) == ["on-health-degraded", "on-sync-succeeded"]
    sends, _, _ = evaluate(app(None), cfg, {}, 1)
    assert sends == []


def test_each_event_notifies_once() -> None:
    cfg = config()
    sends, state, _ = evaluate(app("Failed"), cfg, {}, 1)
    assert len(sends) == 1
    again, state2, _ = evaluate(app("Failed"), cfg, state, 2)
    assert again == []
    assert state2 == state
    # the condition goes false (a retry runs), then true again: a new failure, one notification
    _, state3, _ = evaluate(app("Running"), cfg, state2, 3)
    sends, _, _ = evaluate(app("Failed"), cfg, state3, 4)
    assert fired(sends) == ["on-sync-failed"]


def test_once_per_revision() -> None:
    cfg = config()
    sends, state, _ = evaluate(app("Succeeded", revision="r1"), cfg, {}, 1)
    assert "on-deployed" in fired(sends)
    _, state, _ = evaluate(app("Running", revision="r1"), cfg, state, 2)
    sends, state, _ = evaluate(app("Succeeded", revision="r1"), cfg, state, 3)
    assert fired(sends) == ["on-sync-succeeded"]  # deployed r1 already notified, ever
    sends, _, _ = evaluate(app("Succeeded", revision="r2"), cfg, state, 4)
    assert "on-deployed" in fired(sends)


def test_notified_state_round_trips_through_the_annotation() -> None:
    _sends, state, _ = evaluate(app("Failed"), config(), {}, 7)
    obj = app("Failed", **{NOTIFIED_ANNOTATION: json.dumps(state)})
    assert notified_state(obj) == state
    assert evaluate(obj, config(), notified_state(obj), 8)[0] == []
    assert notified_state(app("Failed", **{NOTIFIED_ANNOTATION: "not json"})) == {}


def test_webhook_request_renders_path_body_and_secret_header() -> None:
    cfg = config()
    obj = app("Failed", health="Degraded")
    [send] = [s for s in evaluate(obj, cfg, {}, 1)[0] if s.trigger == "on-sync-failed"]
    req = webhook_request(cfg, send, obj)
    assert req is not None
    assert req.method == "POST"
    assert req.url == "https://ci.example.com/hooks/apps/guestbook"
    assert json.loads(req.body) == {
        "app": "guestbook",
        "phase": "Failed",
        "health": "Degraded",
        "url": "https://argocd.example.com",
    }
    assert dict(req.headers)["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(cfg.services["ci"])


def test_basic_auth_and_unknown_secret_reference() -> None:
    cfg = parse_config(
        {"service.webhook.x": "url: https://h/x\nbasicAuth: {username: u, password: $pw}\n"},
        {"pw": "p"},
    )
    assert (
        dict(cfg.services["x"].headers)["Authorization"]
        == "Basic " + base64.b64encode(b"u:p").decode()
    )
    cfg = parse_config({"service.webhook.x": "url: $missing\n"}, {})
    assert cfg.services["x"].url == "$missing"  # an unknown key stays as written
    with pytest.raises(DeliveryError):
        validate_address(cfg.services["x"].url)


@pytest.mark.parametrize(
    "when",
    [
        "app.status.sync.status == 'Synced' or app.status.health.status == 'Healthy'",
        "time.Now().Sub(time.Parse(app.status.operationState.startedAt)).Minutes() >= 5",
        "app.status.health.status matches 'Deg.*'",
        "len(app.status.resources) > 3",
        "",
    ],
)
def test_unknown_when_expressions_are_refused(when: str) -> None:
    with pytest.raises(ConditionError):
        compile_when(when)
    cfg = parse_config({"trigger.custom": f"- when: {json.dumps(when)}\n  send: [t]\n"}, {})
    assert "custom" not in cfg.triggers
    assert any("trigger.custom" in p and "never fires" in p for p in cfg.problems)


def test_when_subset() -> None:
    check = compile_when(
        "app.status.sync.status != 'Synced' and app.metadata.name == \"guestbook\""
    )
    assert check({"status": {"sync": {"status": "OutOfSync"}}, "metadata": {"name": "guestbook"}})
    assert not check({"status": {"sync": {"status": "Synced"}}, "metadata": {"name": "guestbook"}})
    assert compile_when("true")({})
    assert compile_path("app.status?.sync?.revision")({"status": {}}) is None


def test_subscriptions_and_default_triggers() -> None:
    cfg = config(defaultTriggers="- on-sync-failed\n- on-health-degraded\n")
    obj = {
        "metadata": {
            "annotations": {
                "notifications.argoproj.io/subscribe.ci": "",
                "notifications.argoproj.io/subscribe.on-deployed.ci": "alice;bob",
                "unrelated": "x",
            }
        }
    }
    assert subscriptions(obj, cfg) == [
        ("on-sync-failed", "ci", ("",)),
        ("on-health-degraded", "ci", ("",)),
        ("on-deployed", "ci", ("alice", "bob")),
    ]


def test_unknown_trigger_and_non_webhook_service_are_problems() -> None:
    cfg = config(**{"service.slack": "token: $slack-token\n"})
    assert any("only webhook services" in p for p in cfg.problems)
    obj = app(
        "Failed",
        **{
            "notifications.argoproj.io/subscribe.on-sync-failed.slack": "ops",
            "notifications.argoproj.io/subscribe.on-nothing.ci": "",
        },
    )
    sends, _, problems = evaluate(obj, cfg, {}, 1)
    assert fired(sends) == ["on-sync-failed"]  # the ci one only
    assert any("'slack'" in p for p in problems)
    assert any("'on-nothing'" in p for p in problems)
