"""The controller's notifications runtime with in-memory caches and a recording dispatcher:
one Flux event per Ready transition, none at start-up, none for a repeat; Argo CD state is
recorded on the Application before anything is queued, and a lagging cache does not resend."""

from __future__ import annotations

import json
from typing import Any, cast

from gitsail.controller.notifications import Notifications
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.notify.argo import CONFIGMAP, NOTIFIED_ANNOTATION
from gitsail.notify.delivery import Dispatcher, Notification
from gitsail.notify.flux import API_VERSION

NS = "flux-system"


class FakeCache:
    def __init__(self, *objs: Obj) -> None:
        self.objs = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self.objs.get((namespace or "", name))

    def items(self) -> list[Obj]:
        return list(self.objs.values())


class Recording(Dispatcher):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Notification] = []

    def submit(self, notification: Notification) -> bool:
        self.sent.append(notification)
        return True


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def merge_patch(
        self, api_version: str, kind: str, name: str, body: Any, **kw: Any
    ) -> Obj:
        self.patches.append((name, body))
        return {}


def ks(status: str, message: str) -> Obj:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": NS, "uid": "u-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": status, "reason": "R", "message": message}]
        },
    }


def runtime(kube: Any = None) -> tuple[Notifications, Recording]:
    recording = Recording()
    rt = Notifications(
        cast(Kube, kube or FakeKube()),
        namespaces=(NS,),
        control_namespace=NS,
        dispatcher=recording,
        clock=lambda: 1000.0,
    )
    provider = {
        "apiVersion": API_VERSION,
        "kind": "Provider",
        "metadata": {"name": "hook", "namespace": NS, "uid": "p-1"},
        "spec": {"type": "generic", "address": "https://hooks.example.com/x"},
    }
    alert = {
        "apiVersion": API_VERSION,
        "kind": "Alert",
        "metadata": {"name": "all", "namespace": NS},
        "spec": {
            "providerRef": {"name": "hook"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
        },
    }
    rt.caches[(API_VERSION, "Provider", NS)] = cast(Any, FakeCache(provider))
    rt.caches[(API_VERSION, "Alert", NS)] = cast(Any, FakeCache(alert))
    return rt, recording


async def feed(rt: Notifications, obj: Obj) -> None:
    event = rt._on_flux(obj)
    if event is not None:
        await rt._dispatch_flux(event)


async def test_one_event_per_ready_transition() -> None:
    rt, recording = runtime()
    assert rt._on_flux(ks("False", "build failed"), seed=True) is None  # start-up: not news
    await feed(rt, ks("False", "build failed"))  # the same failure again (a retry)
    await feed(rt, ks("Unknown", "reconciling"))  # in progress: no event, nothing forgotten
    await feed(rt, ks("False", "build failed"))
    assert recording.sent == []
    await feed(rt, ks("True", "Applied revision: main@sha1:abc"))
    await feed(rt, ks("True", "Applied revision: main@sha1:abc"))
    await feed(rt, ks("False", "health check failed"))
    bodies = [json.loads(n.request.body) for n in recording.sent]
    assert [(b["severity"], b["message"]) for b in bodies] == [
        ("info", "Applied revision: main@sha1:abc"),
        ("error", "health check failed"),
    ]


async def test_a_suspended_provider_or_a_missing_one_sends_nothing() -> None:
    rt, recording = runtime()
    provider = rt.caches[(API_VERSION, "Provider", NS)].get(NS, "hook")
    assert provider is not None
    provider["spec"]["suspend"] = True
    await feed(rt, ks("False", "x"))
    rt.caches[(API_VERSION, "Provider", NS)] = cast(Any, FakeCache())
    await feed(rt, ks("False", "y"))
    assert recording.sent == []


def application(phase: str, notified: dict[str, int] | None = None) -> Obj:
    annotations = {"notifications.argoproj.io/subscribe.on-sync-failed.ci": ""}
    if notified is not None:
        annotations[NOTIFIED_ANNOTATION] = json.dumps(notified)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": NS, "uid": "a-1", "annotations": annotations},
        "status": {"operationState": {"phase": phase}},
    }


async def test_argo_state_is_written_first_and_a_lagging_cache_does_not_resend() -> None:
    kube = FakeKube()
    rt, recording = runtime(kube)
    cm = {
        "metadata": {"name": CONFIGMAP, "namespace": NS, "resourceVersion": "1"},
        "data": {
            "service.webhook.ci": "url: https://ci.example.com\n",
            "trigger.on-sync-failed": (
                "- when: app.status.operationState.phase in ['Failed']\n  send: [failed]\n"
            ),
            "template.failed": "webhook:\n  ci:\n    body: '{{.app.metadata.name}}'\n",
        },
    }
    rt.config_caches["cm"] = cast(Any, FakeCache(cm))
    await rt._on_app(application("Failed"))
    assert len(kube.patches) == 1
    assert len(recording.sent) == 1
    assert recording.sent[0].request.body == b"shop"
    written = json.loads(kube.patches[0][1]["metadata"]["annotations"][NOTIFIED_ANNOTATION])
    # The watch cache still shows the Application without the annotation: no resend.
    await rt._on_app(application("Failed"))
    assert len(recording.sent) == 1
    # A new runtime (a restart) reads the annotation: no resend either.
    rt2, recording2 = runtime(FakeKube())
    rt2.config_caches["cm"] = cast(Any, FakeCache(cm))
    await rt2._on_app(application("Failed", written))
    assert recording2.sent == []


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    async def record(self, obj: Obj, *, reason: str, message: str, type: str = "Normal") -> None:
        self.recorded.append((type, reason, message))


async def test_an_alert_that_cannot_be_used_gets_a_warning_event() -> None:
    events = FakeEvents()
    rt = Notifications(
        cast(Kube, FakeKube()),
        namespaces=(NS,),
        control_namespace=NS,
        events=cast(Any, events),
        dispatcher=Recording(),
    )
    bad = {
        "apiVersion": API_VERSION,
        "kind": "Alert",
        "metadata": {"name": "bad", "namespace": NS},
        "spec": {"providerRef": {"name": "hook"}, "eventSources": [], "eventSeverity": "all"},
    }
    assert await rt.reconcile(bad, frozenset()) is None
    [(kind, reason, message)] = events.recorded
    assert (kind, reason) == ("Warning", "InvalidAlert")
    assert "spec.eventSources" in message
