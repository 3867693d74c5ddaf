"""Flux Receiver webhooks through ASGI, over an in-memory cluster (lists, watches, patches)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx
import pytest
from starlette.applications import Starlette

from gitsail.controller.metrics import Metrics
from gitsail.controller.receiver import FluxReceivers, verify_delivery
from gitsail.controller.webhook import WebhookError
from gitsail.controller.webhook_gate import WebhookGate
from gitsail.kinds.flux_receiver import parse_receiver, webhook_path
from gitsail.kube import Kube, NotFound, WatchEvent
from gitsail.kube.written import WrittenVersions
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy

NS = "flux-system"
TOKEN = "tok-0123456789"
NOW = datetime(2026, 12, 2, 4, 30, 0, 123000, tzinfo=UTC)
STAMP = "2026-12-02T04:30:00.123Z"
GITREPO = "source.toolkit.fluxcd.io/v1"


class FakeCluster:
    """Objects in memory; lists, watches (fed by ``put``), and merge patches of annotations."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.watchers: list[tuple[str, str | None, str | None, asyncio.Queue[WatchEvent]]] = []
        self.lists = 0
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []
        self.rv = 1
        self.written = WrittenVersions()  # the real record (Kube.written): pure logic

    def put(self, obj: Obj) -> None:
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        key = (obj["kind"], meta["namespace"], meta["name"])
        kind: Literal["ADDED", "MODIFIED"] = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[key] = obj
        for watched, ns, name, queue in self.watchers:
            if (
                watched == obj["kind"]
                and ns in (None, meta["namespace"])
                and name in (None, meta["name"])
            ):
                queue.put_nowait(WatchEvent(kind, obj))

    def _match(self, kind: str, ns: str | None, field: str | None, labels: str | None) -> list[Obj]:
        name = field.removeprefix("metadata.name=") if field else None
        wanted = dict(p.split("=", 1) for p in labels.split(",")) if labels else {}
        out = []
        for (k, n, nm), obj in self.objects.items():
            have = obj["metadata"].get("labels") or {}
            if (
                k == kind
                and ns in (None, n)
                and name in (None, nm)
                and wanted.items() <= have.items()
            ):
                out.append(obj)
        return out

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        self.lists += 1
        return self._match(kind, namespace, field_selector, label_selector), str(self.rv)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        self.lists += 1
        return self._match(kind, namespace, None, label_selector)

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        name = field_selector.removeprefix("metadata.name=") if field_selector else None
        self.watchers.append((kind, namespace, name, queue))
        while True:
            yield await queue.get()

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
        if (kind, namespace or "", name) not in self.objects:
            raise NotFound(404, "NotFound", f"{kind} {name} not found", {})
        self.patches.append((kind, namespace or "", name, patch))
        return self.objects[(kind, namespace or "", name)]


def receiver_obj(name: str = "hook", **spec: Any) -> Obj:
    body = {
        "type": "github",
        "events": ["push"],
        "secretRef": {"name": "token"},
        "resources": [{"kind": "GitRepository", "name": "web"}],
        **spec,
    }
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1",
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": body,
    }


def secret_obj(token: str = TOKEN, name: str = "token") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def gitrepo(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": GITREPO,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
    }


def github(
    body: bytes, event: str = "push", token: str = TOKEN, delivery: str = ""
) -> dict[str, str]:
    sig = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={sig}"}
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def path(name: str = "hook", token: str = TOKEN) -> str:
    return webhook_path(token, name, NS)


@pytest.fixture
async def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.put(secret_obj())
    fake.put(gitrepo("web"))
    return fake


@dataclasses.dataclass
class Endpoint:
    http: httpx.AsyncClient
    receivers: FluxReceivers
    metrics: Metrics


@pytest.fixture
async def endpoint(cluster: FakeCluster) -> AsyncIterator[Endpoint]:
    async with serve(cluster) as ep:
        yield ep


@dataclasses.dataclass
class serve:
    cluster: FakeCluster
    policy: Policy = DEFAULT_POLICY

    async def __aenter__(self) -> Endpoint:
        metrics = Metrics()
        self.receivers = FluxReceivers(
            lambda: cast(Kube, self.cluster), WebhookGate(self.policy, metrics), clock=lambda: NOW
        )
        app = Starlette(routes=[self.receivers.route()])
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g")
        return Endpoint(self.http, self.receivers, metrics)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.receivers.stop()


def annotated(cluster: FakeCluster) -> list[str]:
    return [
        f"{kind}/{ns}/{name}={patch['metadata']['annotations']['reconcile.fluxcd.io/requestedAt']}"
        for kind, ns, name, patch in cluster.patches
    ]


async def until(predicate: Any) -> None:
    """Let the watches run until ``predicate()`` holds (at most ~5 s)."""
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("timed out")


# -- verification (pure) ------------------------------------------------------------------------


def test_verify_github_prefers_sha256_and_accepts_the_older_sha1_header() -> None:
    r = parse_receiver(receiver_obj())
    body = b'{"ref":"refs/heads/main"}'
    assert verify_delivery(r, TOKEN, {k.lower(): v for k, v in github(body).items()}, body).act
    sha1 = hmac.new(TOKEN.encode(), body, "sha1").hexdigest()
    headers = {"x-github-event": "push", "x-hub-signature": f"sha1={sha1}"}
    assert verify_delivery(r, TOKEN, headers, body).act
    # a sha256 header that is wrong is not rescued by a right sha1 one
    with pytest.raises(WebhookError) as caught:
        verify_delivery(r, TOKEN, {**headers, "x-hub-signature-256": "sha256=00"}, body)
    assert caught.value.status == 401


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_verify_generic_hmac_takes_the_algorithm_from_the_header(algorithm: str) -> None:
    r = parse_receiver(receiver_obj(type="generic-hmac", events=None))
    body = b'{"image":"ghcr.io/org/app:v1"}'
    sig = hmac.new(TOKEN.encode(), body, algorithm).hexdigest()
    assert verify_delivery(r, TOKEN, {"x-signature": f"{algorithm}={sig}"}, body).act
    with pytest.raises(WebhookError, match="X-Signature is not of the form"):
        verify_delivery(r, TOKEN, {"x-signature": f"md5={sig}"}, body)
    with pytest.raises(WebhookError, match="does not match"):
        verify_delivery(r, TOKEN, {"x-signature": f"{algorithm}={sig}"}, body + b" ")


def test_verify_gitlab_compares_the_token_and_filters_events() -> None:
    r = parse_receiver(receiver_obj(type="gitlab", events=["Push Hook"]))
    ok = verify_delivery(r, TOKEN, {"x-gitlab-token": TOKEN, "x-gitlab-event": "Push Hook"}, b"")
    assert ok.act
    assert ok.event == "Push Hook"
    other = verify_delivery(
        r, TOKEN, {"x-gitlab-token": TOKEN, "x-gitlab-event": "Issue Hook"}, b""
    )
    assert not other.act
    for headers in (
        {"x-gitlab-event": "Push Hook"},
        {"x-gitlab-token": "nope", "x-gitlab-event": "Push Hook"},
    ):
        with pytest.raises(WebhookError) as caught:
            verify_delivery(r, TOKEN, headers, b"")
        assert caught.value.status == 401
        assert TOKEN not in caught.value.message


# -- the endpoint ----------------------------------------------------------------------------


async def test_a_signed_github_push_annotates_the_named_source(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    body = b'{"ref":"refs/heads/main","after":"abc"}'
    response = await endpoint.http.post(path(), content=body, headers=github(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"requested": [f"GitRepository/{NS}/web"], "missing": []}
    assert annotated(cluster) == [f"GitRepository/{NS}/web={STAMP}"]


async def test_a_forged_signature_is_401_and_annotates_nothing(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    body = b'{"ref":"refs/heads/main"}'
    response = await endpoint.http.post(path(), content=body, headers=github(body, token="guess"))
    assert response.status_code == 401
    assert response.headers["connection"] == "close"
    assert cluster.patches == []


async def test_an_event_not_listed_and_a_ping_are_answered_but_reconcile_nothing(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    body = b"{}"
    issues = await endpoint.http.post(path(), content=body, headers=github(body, event="issues"))
    ping = await endpoint.http.post(path(), content=body, headers=github(body, event="ping"))
    assert (issues.status_code, ping.status_code) == (200, 200)
    assert issues.json()["ignored"] == "event 'issues' is not in spec.events"
    assert ping.json()["ignored"] == "pong"
    assert cluster.patches == []


async def test_an_unknown_path_is_404_without_reading_the_body(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read += 1
        yield b"{}"

    for unknown in (path(token="other-token"), "/hook/not-hex", path("other")):
        response = await endpoint.http.post(unknown, content=body(), headers=github(b"{}"))
        assert response.status_code == 404
    assert read == 0


async def test_paths_come_from_watches_not_a_list_per_request(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    body = b"{}"
    await endpoint.http.post(path(), content=body, headers=github(body))
    lists = cluster.lists
    for n in range(5):
        body = f'{{"after":"{n}"}}'.encode()
        response = await endpoint.http.post(path(), content=body, headers=github(body))
        assert response.status_code == 200
    assert cluster.lists == lists


async def test_a_rotated_token_moves_the_path_and_a_new_receiver_is_served(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(receiver_obj())
    body = b"{}"
    assert (await endpoint.http.post(path(), content=body, headers=github(body))).status_code == 200
    body = b'{"after":"next"}'
    cluster.put(secret_obj("rotated-token"))
    index = endpoint.receivers.index
    await until(lambda: index.lookup(path(token="rotated-token")) is not None)
    assert (
        await endpoint.http.post(path(), content=body, headers=github(body, delivery="x"))
    ).status_code == 404
    rotated = await endpoint.http.post(
        path(token="rotated-token"),
        content=body,
        headers=github(body, token="rotated-token", delivery="y"),
    )
    assert rotated.status_code == 200
    # a Receiver created later, with a Secret of its own, gets a watch of that Secret
    cluster.put(receiver_obj("late", type="generic", secretRef={"name": "late-token"}))
    cluster.put(secret_obj("late-secret", name="late-token"))
    await until(lambda: index.lookup(path("late", "late-secret")) is not None)
    assert (await endpoint.http.post(path("late", "late-secret"))).status_code == 200


async def test_gitlab_generic_and_generic_hmac(cluster: FakeCluster, endpoint: Endpoint) -> None:
    cluster.put(receiver_obj("gl", type="gitlab", events=["Push Hook"]))
    cluster.put(receiver_obj("gen", type="generic", events=None))
    cluster.put(receiver_obj("hm", type="generic-hmac", events=None))
    gl = await endpoint.http.post(
        path("gl"), content=b"{}", headers={"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}
    )
    gl_wrong = await endpoint.http.post(
        path("gl"), content=b"{}", headers={"X-Gitlab-Token": "x", "X-Gitlab-Event": "Push Hook"}
    )
    gen = await endpoint.http.post(path("gen"))
    sig = hmac.new(TOKEN.encode(), b"{}", "sha1").hexdigest()
    hm = await endpoint.http.post(path("hm"), content=b"{}", headers={"X-Signature": f"sha1={sig}"})
    hm_again = await endpoint.http.post(
        path("hm"), content=b"{}", headers={"X-Signature": f"sha1={sig}"}
    )
    hm_unsigned = await endpoint.http.post(path("hm"), content=b"{}")
    codes = [r.status_code for r in (gl, gl_wrong, gen, hm, hm_again, hm_unsigned)]
    assert codes == [200, 401, 200, 200, 200, 401]
    assert len(cluster.patches) == 4


async def test_a_replayed_github_push_is_refused(cluster: FakeCluster, endpoint: Endpoint) -> None:
    cluster.put(receiver_obj())
    body = b'{"after":"abc"}'
    first = await endpoint.http.post(path(), content=body, headers=github(body, delivery="d1"))
    again = await endpoint.http.post(path(), content=body, headers=github(body, delivery="d2"))
    assert (first.status_code, again.status_code) == (200, 409)
    assert len(cluster.patches) == 1


async def test_match_labels_annotate_every_match_and_missing_names_are_reported(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    cluster.put(gitrepo("a", {"team": "x"}))
    cluster.put(gitrepo("b", {"team": "x"}))
    cluster.put(gitrepo("c", {"team": "y"}))
    resources = [
        {"kind": "GitRepository", "name": "*", "matchLabels": {"team": "x"}},
        {"kind": "GitRepository", "name": "gone"},
    ]
    cluster.put(receiver_obj(type="generic", events=None, resources=resources))
    response = await endpoint.http.post(path())
    assert response.status_code == 200
    assert sorted(response.json()["requested"]) == [
        f"GitRepository/{NS}/a",
        f"GitRepository/{NS}/b",
    ]
    assert response.json()["missing"] == [f"GitRepository/{NS}/gone"]


async def test_a_suspended_receiver_is_503(cluster: FakeCluster, endpoint: Endpoint) -> None:
    cluster.put(receiver_obj(type="generic", events=None, suspend=True))
    response = await endpoint.http.post(path())
    assert response.status_code == 503
    assert cluster.patches == []


async def test_the_shared_body_limit_applies(cluster: FakeCluster) -> None:
    cluster.put(receiver_obj(type="generic", events=None))
    policy = dataclasses.replace(DEFAULT_POLICY, webhook_body_bytes=100)
    async with serve(cluster, policy) as ep:
        response = await ep.http.post(path(), content=b"x" * 500)
    assert response.status_code == 413
    assert cluster.patches == []


async def test_a_failed_start_is_503_and_not_retried_on_every_request(
    cluster: FakeCluster, endpoint: Endpoint
) -> None:
    calls = 0

    async def refused(*args: Any, **kwargs: Any) -> tuple[list[Obj], str]:
        nonlocal calls
        calls += 1
        raise NotFound(404, "NotFound", "the server could not find the requested resource", {})

    cluster.list_with_version = refused  # type: ignore[method-assign]
    answers = [(await endpoint.http.post(path())).status_code for _ in range(5)]
    assert answers == [503] * 5
    assert calls == 1


async def test_the_index_never_shows_a_token(cluster: FakeCluster, endpoint: Endpoint) -> None:
    cluster.put(receiver_obj(type="generic", events=None))
    assert (await endpoint.http.post(path())).status_code == 200
    entry = endpoint.receivers.index.lookup(path())
    assert entry is not None
    assert entry.token == TOKEN
    assert TOKEN not in repr(entry)
