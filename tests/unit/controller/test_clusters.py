"""The ClusterPool on fakes: cluster Secrets from an in-memory cache, each cluster an httpx
mock transport that answers ``/version`` or refuses, the probe's sleep a seam."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from gitsail.app.model import Delivery, SourceRef, SyncPolicy
from gitsail.app.targets import Target, TargetUnavailable
from gitsail.controller.clusters import ClusterPool
from gitsail.controller.registry import ObjectKey
from gitsail.kube import Kube, KubeConfig, RetryPolicy
from gitsail.model import Obj
from gitsail.sync.inventory import Inventory
from gitsail.sync.ownership import ArgoTracking

TOKEN = "tok-" + "s3cr3t-value"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def cluster_secret(name: str, server: str, version: str = "1", **extra: str) -> Obj:
    data = {"name": name, "server": server, "config": json.dumps({"bearerToken": TOKEN}), **extra}
    return {
        "metadata": {"name": f"cluster-{name}", "namespace": "argocd", "resourceVersion": version},
        "data": {k: b64(v) for k, v in data.items()},
    }


class FakeSecrets:
    def __init__(self, items: list[Obj]) -> None:
        self.objects = items

    def items(self) -> list[Obj]:
        return list(self.objects)

    async def stop(self) -> None:
        return None


class FakeControl:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def merge_patch(
        self, _api: str, _kind: str, name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        self.patches.append((name, patch["metadata"]["annotations"]))
        return {}


class Clusters:
    """Servers that answer or not; every request's Authorization header is kept."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.auth: list[str] = []

    def client(self, config: KubeConfig) -> Kube:
        def handler(request: httpx.Request) -> httpx.Response:
            self.auth.append(request.headers.get("authorization", ""))
            if config.server in self.down:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json={"gitVersion": "v1.36.3"})

        return Kube(config, retry=RetryPolicy(attempts=1), transport=httpx.MockTransport(handler))


def delivery(server: str = "", name: str = "", app: str = "web") -> Delivery:
    return Delivery(
        api_version="argoproj.io/v1alpha1",
        kind="Application",
        namespace="argocd",
        name=app,
        generation=1,
        source=SourceRef(url="https://git.example/r.git"),
        render=None,
        destination_server=server,
        destination_name=name,
        destination_namespace="prod",
        policy=SyncPolicy(),
        owner=ArgoTracking(app),
        inventory=Inventory(),
    )


class Harness:
    def __init__(self, secrets: list[Obj]) -> None:
        self.control = FakeControl()
        self.clusters = Clusters()
        self.woken: list[tuple[ObjectKey, str]] = []
        self.ticks = asyncio.Event()
        in_cluster = Target("in-cluster", "https://kubernetes.default.svc", Kube.__new__(Kube))
        self.pool = ClusterPool(
            self.control,  # type: ignore[arg-type]
            "argocd",
            in_cluster,
            wake=lambda key, reason: self.woken.append((key, reason)),
            client=self.clusters.client,
            sleep=self.tick,
        )
        self.pool.secrets = FakeSecrets(secrets)  # type: ignore[assignment]
        self.in_cluster = in_cluster

    async def tick(self, _delay: float) -> None:
        self.ticks.set()
        await asyncio.sleep(0)

    async def until(self, check: Any, what: str) -> None:
        for _ in range(10_000):
            if check():
                return
            await asyncio.sleep(0)
        raise AssertionError(f"never: {what}")


@pytest.fixture
async def harness() -> Any:
    h = Harness(
        [
            cluster_secret("east", "https://east.example:6443"),
            cluster_secret("limited", "https://limited.example", namespaces="a,b"),
        ]
    )
    yield h
    await h.pool.stop()


async def test_destinations_resolve_by_server_or_name_and_share_one_connection(
    harness: Harness,
) -> None:
    by_server = await harness.pool.resolve(delivery(server="https://east.example:6443"))
    by_name = await harness.pool.resolve(delivery(name="east", app="api"))
    assert by_server is by_name
    assert by_server.kube.config.token == TOKEN
    assert harness.clusters.auth[0] == f"Bearer {TOKEN}"
    limited = await harness.pool.resolve(delivery(name="limited"))
    assert (limited.namespaces, limited.cluster_resources) == (("a", "b"), False)
    assert limited.live is None  # a namespace-limited cluster: GETs, no cluster-wide watches
    assert await harness.pool.resolve(delivery(name="in-cluster")) is harness.in_cluster
    assert await harness.pool.resolve(delivery()) is harness.in_cluster


async def test_an_unknown_destination_is_refused_until_a_secret_registers_it(
    harness: Harness,
) -> None:
    with pytest.raises(TargetUnavailable, match="no clusters with this name: west") as caught:
        await harness.pool.resolve(delivery(name="west"))
    assert not caught.value.transient
    with pytest.raises(TargetUnavailable, match="no clusters with this URL: https://w"):
        await harness.pool.resolve(delivery(server="https://w"))
    harness.pool.secrets.objects.append(cluster_secret("west", "https://w"))  # type: ignore[union-attr]
    assert (await harness.pool.resolve(delivery(name="west"))).server == "https://w"


async def test_a_cluster_that_stops_answering_marks_its_apps_and_recovers(
    harness: Harness,
) -> None:
    pool, clusters = harness.pool, harness.clusters
    await pool.resolve(delivery(name="east"))
    assert pool.states()["https://east.example:6443"].state == "Successful"
    assert harness.control.patches[-1][1]["status.gitsail.io/connection-state"] == "Successful"
    assert harness.control.patches[-1][1]["status.gitsail.io/server-version"] == "v1.36.3"

    clusters.down.add("https://east.example:6443")
    await harness.until(lambda: harness.woken, "the app woken")
    assert harness.woken[-1] == (ObjectKey("Application", "argocd", "web"), "cluster:Failed")
    with pytest.raises(TargetUnavailable, match=r"'east' .* is unreachable") as caught:
        await pool.resolve(delivery(name="east"))
    assert caught.value.transient
    assert TOKEN not in str(caught.value)
    failed = harness.control.patches[-1][1]
    assert failed["status.gitsail.io/connection-state"] == "Failed"
    assert "connection refused" in failed["status.gitsail.io/connection-message"]
    assert all(TOKEN not in json.dumps(p) for p in harness.control.patches)

    clusters.down.clear()
    await harness.until(lambda: harness.woken[-1][1] == "cluster:Successful", "recovery")
    assert (await pool.resolve(delivery(name="east"))).server == "https://east.example:6443"


async def test_a_changed_secret_replaces_the_connection(harness: Harness) -> None:
    first = await harness.pool.resolve(delivery(name="east"))
    harness.pool.secrets.objects[0] = cluster_secret(  # type: ignore[union-attr]
        "east", "https://east.example:6443", version="2", namespaces="x"
    )
    second = await harness.pool.resolve(delivery(name="east"))
    assert second is not first
    assert second.namespaces == ("x",)


def test_complete_fills_the_other_half_of_a_destination(harness: Harness) -> None:
    pool = harness.pool
    assert pool.complete("", "east") == ("https://east.example:6443", "east")
    assert pool.complete("https://east.example:6443", "") == ("https://east.example:6443", "east")
    assert pool.complete("", "in-cluster") == ("https://kubernetes.default.svc", "in-cluster")
    assert pool.complete("https://nowhere", "") == ("https://nowhere", "")
