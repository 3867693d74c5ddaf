"""Flux's Receiver: spec parsing, Flux's webhook path, and the status one reconcile writes."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_receiver import (
    TOKEN_RETRY,
    ReceiverReconciler,
    ResourceRef,
    parse_receiver,
    rfc3339_nano,
    webhook_path,
)
from gitsail.model import Obj

NOW = datetime(2026, 12, 2, 4, 30, 0, tzinfo=UTC)


def receiver(**spec: Any) -> Obj:
    body: dict[str, Any] = {
        "type": "github",
        "events": ["ping", "push"],
        "secretRef": {"name": "receiver-token"},
        "resources": [
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "web"}
        ],
    }
    body.update(spec)
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1",
        "kind": "Receiver",
        "metadata": {"name": "github-receiver", "namespace": "flux-system", "generation": 2},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def secret(token: str | None) -> Obj:
    data = {} if token is None else {"token": base64.b64encode(token.encode()).decode()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "receiver-token"},
        "data": data,
    }


# -- the path -------------------------------------------------------------------------------


def test_webhook_path_is_sha256_of_token_then_name_then_namespace() -> None:
    expected = hashlib.sha256(b"s3cr3tgithub-receiverflux-system").hexdigest()
    assert webhook_path("s3cr3t", "github-receiver", "flux-system") == f"/hook/{expected}"
    # the order is Flux's: another order is another path
    assert webhook_path("github-receiver", "s3cr3t", "flux-system") != f"/hook/{expected}"


def test_requested_at_is_rfc3339_nano_in_utc() -> None:
    assert rfc3339_nano(NOW) == "2026-12-02T04:30:00Z"
    assert rfc3339_nano(NOW.replace(microsecond=120000)) == "2026-12-02T04:30:00.12Z"


# -- parsing ----------------------------------------------------------------------------------


def test_parse_applies_flux_defaults() -> None:
    r = parse_receiver(
        receiver(
            resources=[
                {"kind": "GitRepository", "name": "web"},
                {"kind": "Kustomization", "name": "apps", "namespace": "other"},
            ]
        )
    )
    assert r.type == "github"
    assert r.events == ("ping", "push")
    assert r.secret_name == "receiver-token"
    assert r.interval == 600.0
    assert r.resources == (
        ResourceRef("source.toolkit.fluxcd.io/v1", "GitRepository", "web", "flux-system"),
        ResourceRef("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps", "other"),
    )


def test_events_filter_ignores_case_and_empty_means_all() -> None:
    assert parse_receiver(receiver(events=["Push Hook"])).wants("push hook")
    assert not parse_receiver(receiver(events=["push"])).wants("issues")
    assert parse_receiver(receiver(events=None)).wants("anything")


def test_match_labels_need_a_star_name_and_a_star_needs_labels() -> None:
    r = parse_receiver(
        receiver(
            resources=[
                {"kind": "GitRepository", "name": "*", "matchLabels": {"app": "web", "tier": "a"}}
            ]
        )
    )
    assert r.resources[0].label_selector == "app=web,tier=a"
    with pytest.raises(
        SpecError, match=r"spec.resources\[0\].matchLabels: required when name is '\*'"
    ):
        parse_receiver(receiver(resources=[{"kind": "GitRepository", "name": "*"}]))
    with pytest.raises(SpecError, match="only allowed with name"):
        parse_receiver(
            receiver(
                resources=[{"kind": "GitRepository", "name": "web", "matchLabels": {"a": "b"}}]
            )
        )


@pytest.mark.parametrize(
    ("spec", "error", "text"),
    [
        ({"type": "bitbucket"}, UnsupportedField, "bitbucket receivers are not implemented"),
        ({"type": "nope"}, SpecError, "is not one of"),
        ({"resourceFilter": "true"}, UnsupportedField, "CEL"),
        ({"secretRef": {}}, SpecError, "spec.secretRef.name: required"),
        ({"resources": []}, SpecError, "spec.resources: required"),
        ({"resources": [{"kind": "ConfigMap", "name": "x"}]}, SpecError, "not a Flux kind"),
        ({"resources": [{"kind": "ImagePolicy", "name": "x"}]}, SpecError, "apiVersion: required"),
        (
            {"resources": [{"kind": "GitRepository", "name": "../x"}]},
            SpecError,
            "not an object name",
        ),
        ({"evnets": ["push"]}, SpecError, "spec.evnets: unknown field"),
        ({"interval": "soon"}, SpecError, "not a duration"),
    ],
)
def test_bad_specs_are_refused_naming_the_field_and_object(
    spec: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text) as caught:
        parse_receiver(receiver(**spec))
    assert str(caught.value).startswith("Receiver flux-system/github-receiver: ")


# -- reconcile -----------------------------------------------------------------------------------


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj:
        self.patches.append((kind, name, patch, subresource))
        return {}


def reconciler(kube: FakeKube, found: Obj | None) -> ReceiverReconciler:
    async def secrets(namespace: str, name: str) -> Obj | None:
        assert (namespace, name) == ("flux-system", "receiver-token")
        return found

    return ReceiverReconciler(kube, secrets, clock=lambda: NOW)


async def test_a_ready_receiver_reports_its_path_in_one_status_patch() -> None:
    kube = FakeKube()
    obj = receiver(interval="5m")
    obj["metadata"]["annotations"] = {"reconcile.fluxcd.io/requestedAt": "now-1"}
    again = await reconciler(kube, secret("tok")).reconcile(obj, frozenset({"startup"}))
    assert again == 300.0
    assert len(kube.patches) == 1
    kind, name, patch, subresource = kube.patches[0]
    assert (kind, name, subresource) == ("Receiver", "github-receiver", "status")
    path = webhook_path("tok", "github-receiver", "flux-system")
    status = patch["status"]
    assert status["webhookPath"] == path
    assert status["observedGeneration"] == 2
    assert status["lastHandledReconcileAt"] == "now-1"
    assert status["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Succeeded",
            "message": f"Receiver initialized for path: {path}",
            "lastTransitionTime": "2026-12-02T04:30:00Z",
            "observedGeneration": 2,
        }
    ]
    # the same facts again: nothing to write
    obj["status"] = status
    await reconciler(kube, secret("tok")).reconcile(obj, frozenset())
    assert len(kube.patches) == 1


async def test_a_missing_token_is_not_ready_and_retried_and_clears_the_path() -> None:
    for found, text in (
        (None, "Secret not found"),
        (secret(None), "required field 'token'"),
        (secret(""), "is empty"),
    ):
        kube = FakeKube()
        obj = receiver()
        obj["status"] = {"webhookPath": "/hook/old", "observedGeneration": 1}
        again = await reconciler(kube, found).reconcile(obj, frozenset())
        assert again == TOKEN_RETRY
        status = kube.patches[0][2]["status"]
        assert status["webhookPath"] == ""
        assert status["observedGeneration"] == 1  # the last generation that became ready
        ready = {c["type"]: c for c in status["conditions"]}
        assert ready["Ready"]["status"] == "False"
        assert ready["Ready"]["reason"] == "TokenNotFound"
        assert text in ready["Ready"]["message"]
        assert ready["Reconciling"]["status"] == "True"


async def test_a_bad_spec_is_stalled_and_not_retried() -> None:
    kube = FakeKube()
    again = await reconciler(kube, secret("tok")).reconcile(receiver(type="quay"), frozenset())
    assert again is None
    conditions = {c["type"]: c for c in kube.patches[0][2]["status"]["conditions"]}
    assert conditions["Stalled"]["status"] == "True"
    assert "quay receivers are not implemented" in conditions["Ready"]["message"]


async def test_a_suspended_receiver_is_left_alone() -> None:
    kube = FakeKube()
    assert (
        await reconciler(kube, secret("tok")).reconcile(receiver(suspend=True), frozenset()) is None
    )
    assert kube.patches == []


async def test_the_token_never_appears_in_status() -> None:
    kube = FakeKube()
    await reconciler(kube, secret("very-secret-token")).reconcile(receiver(), frozenset())
    assert "very-secret-token" not in repr(kube.patches)
