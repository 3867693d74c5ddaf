"""kubeseal's path to the controller: the Service's first port, through the service proxy."""

from __future__ import annotations

import json

import httpx
import pytest

from gitsail.kube.client import Kube
from gitsail.kube.config import KubeConfig
from gitsail.kube.errors import InvalidName
from gitsail.secrets import controller_api
from tests.unit.kube.conftest import kubeconfig
from tests.unit.kube.test_client import DATA, FAST, FakeServer, Route, status


def _discovery_with_services() -> bytes:
    doc = json.loads((DATA / "aggregated-api.json").read_bytes())
    resources = doc["items"][0]["versions"][0]["resources"]
    configmaps = next(r for r in resources if r["resource"] == "configmaps")
    resources.append(
        {
            **configmaps,
            "resource": "services",
            "responseKind": {**configmaps["responseKind"], "kind": "Service"},
            "singularResource": "service",
            "shortNames": ["svc"],
        }
    )
    return json.dumps(doc).encode()


def make_kube(route: Route) -> tuple[Kube, FakeServer]:
    api = _discovery_with_services()

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api":
            return httpx.Response(200, content=api)
        return server(request)

    server = FakeServer(route)
    cfg = KubeConfig.from_dict(kubeconfig({"token": "t"}))
    return Kube(cfg, transport=httpx.MockTransport(serve), retry=FAST), server


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "sealed-secrets-controller", "namespace": "kube-system"},
    "spec": {"ports": [{"name": "http", "port": 8080}]},
}
PROXY = "/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:http/proxy"


def route(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/api/v1/namespaces/kube-system/services/sealed-secrets-controller":
        return httpx.Response(200, json=SERVICE)
    if path == f"{PROXY}/v1/cert.pem":
        return httpx.Response(200, content=b"-----BEGIN CERTIFICATE-----\n")
    if path == f"{PROXY}/v1/verify":
        body = json.loads(request.content)
        if body["metadata"]["name"] == "good":
            return httpx.Response(200)
        return status(409, "Conflict", "unable to decrypt sealed secret")
    if path == f"{PROXY}/v1/rotate":
        return httpx.Response(200, json={"kind": "SealedSecret", "rotated": True})
    return status(404, "NotFound", path)


async def test_fetch_cert_verify_and_rotate_go_through_the_service_proxy() -> None:
    kube, server = make_kube(route)
    ns, name = "kube-system", "sealed-secrets-controller"
    assert (await controller_api.fetch_cert(kube, ns, name)).startswith(b"-----BEGIN")
    assert await controller_api.verify(kube, ns, name, {"metadata": {"name": "good"}})
    assert not await controller_api.verify(kube, ns, name, {"metadata": {"name": "bad"}})
    assert (await controller_api.rotate(kube, ns, name, {}))["rotated"] is True
    assert [r.method for r in server.requests if "/proxy/" in r.url.path] == [
        "GET",
        "POST",
        "POST",
        "POST",
    ]


async def test_a_missing_controller_service_says_which_flags_to_check() -> None:
    kube, _ = make_kube(lambda r: status(404, "NotFound", "not found"))
    with pytest.raises(LookupError, match="--controller-namespace"):
        await controller_api.fetch_cert(kube, "kube-system", "nope")


async def test_proxy_paths_are_validated() -> None:
    kube, _ = make_kube(route)
    with pytest.raises(InvalidName):
        await kube.proxy_service("GET", "kube-system", "a/b", "http", "/v1/cert.pem")
    with pytest.raises(InvalidName):
        await kube.proxy_service("GET", "kube-system", "svc", "http", "/v1/../x")
    for path in ("/v1/./x", "/v1/%2e%2e/x", "/v1/x#y", "/v1\\..\\x"):
        with pytest.raises(InvalidName):
            await kube.proxy_service("GET", "kube-system", "svc", "http", path)
    with pytest.raises(InvalidName):
        await kube.proxy_service("GET", "kube-system", "svc", "ht:tp", "/v1/cert.pem")
