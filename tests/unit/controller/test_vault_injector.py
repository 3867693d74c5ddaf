"""The injector webhook: AdmissionReview answers, its registration, certificate renewal, and
a real TLS round trip on loopback (no apiserver: the HTTP client plays its part)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import ssl
from typing import Any, cast

import httpx
import pytest
from cryptography import x509

from gitsail.controller.vault_injector import (
    InjectorOptions,
    VaultInjector,
    WebhookPKI,
    parse_selector,
    review_response,
    webhook_configuration,
)
from gitsail.dev.cluster import free_ports
from gitsail.kube import Conflict, Kube
from gitsail.secrets.vault_agent import InjectorDefaults

SA_MOUNT = {
    "name": "kube-api-access-x",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
}
T0 = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def review(annotations: dict[str, str] | None, operation: str = "CREATE") -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": "myapp-"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "default",
            "operation": operation,
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"containers": [{"name": "app", "image": "a", "volumeMounts": [SA_MOUNT]}]},
            },
        },
    }


INJECT = {"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "myapp"}


def test_unannotated_pod_is_allowed_without_patch() -> None:
    answer = review_response(review(None), InjectorDefaults())
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True},
    }


def test_annotated_pod_gets_a_jsonpatch() -> None:
    response = review_response(review(INJECT), InjectorDefaults())["response"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert {op["path"] for op in ops} >= {"/spec/initContainers", "/spec/containers/-"}


def test_update_operations_are_not_mutated() -> None:
    response = review_response(review(INJECT, "UPDATE"), InjectorDefaults())["response"]
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_bad_annotations_are_refused_with_the_reason() -> None:
    bad = {**INJECT, "vault.hashicorp.com/agent-inject": "sure"}
    response = review_response(review(bad), InjectorDefaults())["response"]
    assert response["allowed"] is False
    assert "not a boolean" in response["status"]["message"]


def test_registration_by_url_and_by_service() -> None:
    by_url = webhook_configuration(InjectorOptions(port=9443), b"PEM")
    (hook,) = by_url["webhooks"]
    assert hook["clientConfig"] == {
        "caBundle": base64.b64encode(b"PEM").decode(),
        "url": "https://127.0.0.1:9443/mutate",
    }
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["rules"][0]["operations"] == ["CREATE"]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn"
    assert "kube-system" in excluded["values"]
    by_service = webhook_configuration(
        InjectorOptions(service=("argocd", "gitsail-controller", 8443)), b"PEM"
    )
    assert by_service["webhooks"][0]["clientConfig"]["service"] == {
        "namespace": "argocd",
        "name": "gitsail-controller",
        "port": 8443,
        "path": "/mutate",
    }


def test_parse_selector() -> None:
    assert parse_selector("a=b, c=d") == {"matchLabels": {"a": "b", "c": "d"}}
    for bad in ("", "a", "a!=b", "a==b"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_selector(bad)


def test_serving_certificate_is_renewed_after_two_thirds_of_its_life() -> None:
    pki = WebhookPKI(
        ["127.0.0.1"],
        cert_lifetime=dt.timedelta(days=3),
        ca_lifetime=dt.timedelta(days=30),
        now=T0,
    )
    first, bundle = pki.cert_pem, pki.ca_bundle
    assert not pki.rotate(T0 + dt.timedelta(days=1))
    assert pki.rotate(T0 + dt.timedelta(days=2, minutes=1))
    assert pki.cert_pem != first
    assert pki.ca_bundle == bundle  # same CA: no re-registration needed


def test_ca_renewal_keeps_the_old_ca_in_the_bundle_until_it_expires() -> None:
    pki = WebhookPKI(
        ["127.0.0.1"],
        cert_lifetime=dt.timedelta(days=3),
        ca_lifetime=dt.timedelta(days=30),
        now=T0,
    )
    old_ca = pki.ca
    assert pki.rotate(T0 + dt.timedelta(days=21))
    cas = x509.load_pem_x509_certificates(pki.ca_bundle)
    assert [c.serial_number for c in cas] == [pki.ca.serial_number, old_ca.serial_number]
    assert pki.cert.issuer == pki.ca.subject
    pki.rotate(T0 + dt.timedelta(days=31))
    assert len(x509.load_pem_x509_certificates(pki.ca_bundle)) == 1


async def test_tls_round_trip_with_the_published_bundle_and_hot_reload() -> None:
    (port,) = free_ports(1)
    injector = VaultInjector(cast(Kube, None), InjectorOptions(port=port))
    server = injector.server()
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:  # noqa: ASYNC110 (uvicorn has no started event)
                await asyncio.sleep(0.02)
        ctx = ssl.create_default_context(cadata=injector.pki.ca_bundle.decode())
        async with httpx.AsyncClient(verify=ctx) as client:
            resp = await client.post(f"https://127.0.0.1:{port}/mutate", json=review(INJECT))
            assert resp.json()["response"]["patchType"] == "JSONPatch"
            big = await client.post(
                f"https://127.0.0.1:{port}/mutate", content=b"x" * (3 * 1024 * 1024 + 1)
            )
            assert big.status_code == 413
        # A renewed certificate is served to new connections without a restart.
        injector.pki.rotate(dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
        injector._load_chain()
        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port))
        assert served.encode() == injector.pki.cert_pem
    finally:
        server.should_exit = True
        await task


class FakeKube:
    """Just the calls the injector makes: Secrets by resourceVersion, applies recorded."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.applied: list[dict[str, Any]] = []

    async def get(self, _v: str, _k: str, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.secrets.get((namespace, name))
        return json.loads(json.dumps(found)) if found else None

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.secrets:
            raise Conflict(409, "AlreadyExists", "exists")
        return self._store(key, obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if self.secrets[key]["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "stale")
        return self._store(key, obj)

    async def apply(self, obj: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        self.applied.append(obj)
        return obj

    def _store(self, key: tuple[str, str], obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.secrets[key] = obj
        return obj


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def shared(kube: FakeKube, clock: Clock) -> VaultInjector:
    options = InjectorOptions(
        tls_secret=("argocd", "injector-tls"),
        cert_lifetime=dt.timedelta(days=3),
        ca_lifetime=dt.timedelta(days=30),
    )
    return VaultInjector(cast(Kube, kube), options, clock=clock)


async def test_replicas_share_one_ca_and_certificate_through_the_secret() -> None:
    kube, clock = FakeKube(), Clock()
    first, second = shared(kube, clock), shared(kube, clock)
    assert first.pki.cert_pem != second.pki.cert_pem  # each starts with its own
    await first._sync_store(("argocd", "injector-tls"), serving=False)
    await second._sync_store(("argocd", "injector-tls"), serving=False)
    assert first.pki.cert_pem == second.pki.cert_pem
    assert first.pki.ca_bundle == second.pki.ca_bundle
    stored = kube.secrets[("argocd", "injector-tls")]
    assert base64.b64decode(stored["data"]["ca.crt"]) == first.pki.ca_bundle


async def test_one_replica_renews_and_the_other_adopts() -> None:
    kube, clock = FakeKube(), Clock()
    first, second = shared(kube, clock), shared(kube, clock)
    store = ("argocd", "injector-tls")
    await first._sync_store(store, serving=False)
    await second._sync_store(store, serving=False)
    old = first.pki.cert_pem
    clock.now += dt.timedelta(days=2, hours=1)  # past two thirds of 3 days
    await first._sync_store(store)
    assert first.pki.cert_pem != old
    await second._sync_store(store)
    assert second.pki.cert_pem == first.pki.cert_pem
    assert kube.applied == []  # same CA: the registration's bundle did not change


async def test_a_new_ca_is_registered_before_it_is_served() -> None:
    kube, clock = FakeKube(), Clock()
    injector = shared(kube, clock)
    store = ("argocd", "injector-tls")
    await injector._sync_store(store, serving=False)
    old_ca = injector.pki.ca
    served_at_registration: list[bytes] = []

    async def apply(obj: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        served_at_registration.append(
            (injector._dir / "tls.crt").read_bytes()  # what the TLS context serves now
        )
        kube.applied.append(obj)
        return obj

    kube.apply = apply  # type: ignore[method-assign]
    clock.now += dt.timedelta(days=21)
    await injector._sync_store(store)
    (registered,) = kube.applied
    bundle = base64.b64decode(registered["webhooks"][0]["clientConfig"]["caBundle"])
    cas = x509.load_pem_x509_certificates(bundle)
    assert [c.serial_number for c in cas] == [injector.pki.ca.serial_number, old_ca.serial_number]
    assert served_at_registration[0] != injector.pki.cert_pem  # still the old one then


async def test_an_unusable_secret_is_replaced() -> None:
    kube, clock = FakeKube(), Clock()
    kube.secrets[("argocd", "injector-tls")] = {
        "metadata": {"name": "injector-tls", "namespace": "argocd", "resourceVersion": "7"},
        "data": {"ca.crt": base64.b64encode(b"garbage").decode()},
    }
    injector = shared(kube, clock)
    await injector._sync_store(("argocd", "injector-tls"), serving=False)
    stored = kube.secrets[("argocd", "injector-tls")]
    assert base64.b64decode(stored["data"]["tls.crt"]) == injector.pki.cert_pem
