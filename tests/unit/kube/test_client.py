"""Kube's own request logic, against an in-memory apiserver on httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.kube.client import Kube, service_account_user
from gitsail.kube.config import KubeConfig
from gitsail.kube.errors import (
    ConfigError,
    Conflict,
    Gone,
    Invalid,
    InvalidName,
    NotFoundKind,
    PreconditionFailed,
    ServerError,
)
from gitsail.kube.retry import Backoff, RetryPolicy
from tests.unit.kube.conftest import kubeconfig

DATA = Path(__file__).parent / "data"
FAST = RetryPolicy(attempts=3, backoff=Backoff(initial=0, jitter=0))
Route = Callable[[httpx.Request], httpx.Response]


def discovery(request: httpx.Request) -> httpx.Response | None:
    name = {"/api": "aggregated-api.json", "/apis": "aggregated-apis.json"}.get(request.url.path)
    if name is None:
        return None
    return httpx.Response(200, content=(DATA / name).read_bytes())


class FakeServer:
    """Serves recorded discovery; other requests go to ``route`` and are recorded."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.requests: list[httpx.Request] = []
        self.discoveries = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        found = discovery(request)
        if found is not None:
            self.discoveries += 1
            return found
        self.requests.append(request)
        return self.route(request)


def make_kube(route: Route, **kw: Any) -> tuple[Kube, FakeServer]:
    server = FakeServer(route)
    cfg = KubeConfig.from_dict(kubeconfig({"token": "t"}))
    kw.setdefault("retry", FAST)
    return Kube(cfg, transport=httpx.MockTransport(server), **kw), server


def ok(body: Any = None) -> Route:
    return lambda _req: httpx.Response(200, json=body if body is not None else {})


def status(code: int, reason: str, message: str, **headers: str) -> httpx.Response:
    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    return httpx.Response(code, json=body, headers=headers)


DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"replicas": 2},
}


async def test_apply_is_a_server_side_apply_patch() -> None:
    kube, server = make_kube(ok(DEPLOY))
    async with kube:
        await kube.apply(DEPLOY, field_manager="me", force=True, dry_run=True)
    (req,) = server.requests
    assert req.method == "PATCH"
    assert req.url.path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert req.headers["Content-Type"] == "application/apply-patch+yaml"
    assert dict(req.url.params) == {
        "fieldManager": "me",
        "fieldValidation": "Strict",
        "force": "true",
        "dryRun": "All",
    }
    assert json.loads(req.content) == DEPLOY


async def test_every_request_carries_one_of_each_header_and_its_credential() -> None:
    kube, server = make_kube(ok({"items": [], "metadata": {}}))
    async with kube:
        info = await kube.resource_for("v1", "Secret")
        await kube.get("v1", "ConfigMap", "c", "shop")
        await kube.list_metadata(info, "shop", limit=5)
    get, listed = server.requests
    for req in (get, listed):
        assert req.headers.get_list("Accept") == [req.headers["Accept"]]
        assert req.headers["Authorization"] == "Bearer t"
        assert req.headers["User-Agent"] == "gitsail"
        assert req.headers["Host"] == "k.test:6443"
    assert get.headers["Accept"] == "application/json"
    assert listed.headers["Accept"].startswith("application/json;as=PartialObjectMetadataList")


async def test_a_server_url_with_a_path_keeps_it_in_front_of_every_request() -> None:
    """A cluster behind a proxy (Rancher's /k8s/clusters/<id>): the path prefix stays."""
    server = FakeServer(ok({}))
    cfg = KubeConfig.from_dict(
        kubeconfig({"token": "t"}, {"server": "https://k.test/k8s/clusters/c-1/"})
    )
    async with Kube(cfg, transport=httpx.MockTransport(server), retry=FAST) as kube:
        await kube.server_version()
    (req,) = server.requests
    assert str(req.url) == "https://k.test/k8s/clusters/c-1/version"


async def test_namespaced_object_without_namespace_goes_to_the_context_namespace() -> None:
    kube, server = make_kube(ok())
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    async with kube:
        await kube.apply(obj)
        await kube.get("v1", "Namespace", "shop", namespace="ignored")
    assert [r.url.path for r in server.requests] == [
        "/api/v1/namespaces/apps/configmaps/c",
        "/api/v1/namespaces/shop",
    ]


async def test_get_returns_none_for_404() -> None:
    kube, _ = make_kube(lambda _r: status(404, "NotFound", 'deployments.apps "web" not found'))
    async with kube:
        assert await kube.get("apps/v1", "Deployment", "web", "shop") is None


async def test_list_follows_continue_tokens_and_fills_kind() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("continue")
        if token is None:
            meta = {"resourceVersion": "100", "continue": "page2"}
            return httpx.Response(
                200, json={"metadata": meta, "items": [{"metadata": {"name": "a"}}]}
            )
        assert token == "page2"
        return httpx.Response(
            200,
            json={"metadata": {"resourceVersion": "100"}, "items": [{"metadata": {"name": "b"}}]},
        )

    kube, server = make_kube(route)
    async with kube:
        items, rv = await kube.list_with_version(
            "v1", "ConfigMap", "shop", label_selector="app=web", page_size=1
        )
    assert rv == "100"
    assert [(i["metadata"]["name"], i["apiVersion"], i["kind"]) for i in items] == [
        ("a", "v1", "ConfigMap"),
        ("b", "v1", "ConfigMap"),
    ]
    assert server.requests[0].url.params["limit"] == "1"
    assert server.requests[0].url.params["labelSelector"] == "app=web"
    assert server.requests[1].url.params["labelSelector"] == "app=web"


async def test_idempotent_requests_are_retried_on_server_errors() -> None:
    answers = iter([status(503, "ServiceUnavailable", "busy"), httpx.Response(200, json=DEPLOY)])
    kube, server = make_kube(lambda _r: next(answers))
    async with kube:
        assert await kube.get("apps/v1", "Deployment", "web", "shop") == DEPLOY
    assert len(server.requests) == 2


async def test_create_is_not_retried_on_server_errors_but_is_on_throttling() -> None:
    kube, server = make_kube(lambda _r: status(500, "InternalError", "etcd hiccup"))
    async with kube:
        with pytest.raises(ServerError, match="create apps/v1 Deployment shop/web: etcd hiccup"):
            await kube.create(DEPLOY)
    assert len(server.requests) == 1

    answers = iter(
        [
            status(429, "TooManyRequests", "slow down", **{"Retry-After": "0"}),
            httpx.Response(201, json=DEPLOY),
        ]
    )
    kube, server = make_kube(lambda _r: next(answers))
    async with kube:
        await kube.create(DEPLOY)
    assert len(server.requests) == 2


async def test_connection_errors_give_a_server_error_after_the_retries() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    kube, server = make_kube(route)
    async with kube:
        with pytest.raises(ServerError) as info:
            await kube.get("v1", "ConfigMap", "c", "shop")
    assert info.value.code == 0
    assert len(server.requests) == FAST.attempts


async def test_conflict_names_the_object() -> None:
    message = 'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas'
    kube, _ = make_kube(lambda _r: status(409, "Conflict", message))
    async with kube:
        with pytest.raises(Conflict) as info:
            await kube.apply(DEPLOY)
    assert str(info.value) == f"apply apps/v1 Deployment shop/web: {message}"


async def test_replace_fetches_the_resource_version_when_missing() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                200,
                json={
                    **DEPLOY,
                    "metadata": {
                        **DEPLOY["metadata"],  # type: ignore[dict-item]
                        "resourceVersion": "9",
                    },
                },
            )
        return httpx.Response(200, content=request.content)

    kube, server = make_kube(route)
    async with kube:
        stored = await kube.replace(DEPLOY)
    assert [r.method for r in server.requests] == ["GET", "PUT"]
    assert stored["metadata"]["resourceVersion"] == "9"
    assert "resourceVersion" not in DEPLOY["metadata"]


async def test_delete_sends_propagation_and_reports_absence() -> None:
    answers = iter([httpx.Response(200, json={}), status(404, "NotFound", "gone")])
    kube, server = make_kube(lambda _r: next(answers))
    async with kube:
        assert await kube.delete("apps/v1", "Deployment", "web", "shop", propagation="Background")
        assert not await kube.delete("apps/v1", "Deployment", "web", "shop")
    assert json.loads(server.requests[0].content)["propagationPolicy"] == "Background"
    assert json.loads(server.requests[1].content)["propagationPolicy"] == "Foreground"


async def test_delete_sends_preconditions_and_a_failed_one_is_precondition_failed() -> None:
    answers = iter(
        [
            httpx.Response(200, json={}),
            status(409, "Conflict", "Precondition failed: UID in precondition: u1, UID: u2"),
        ]
    )
    kube, server = make_kube(lambda _r: next(answers))
    pre = {"uid": "u1", "resourceVersion": "7"}
    async with kube:
        assert await kube.delete("v1", "ConfigMap", "web", "shop", preconditions=pre)
        with pytest.raises(PreconditionFailed, match="replaced or changed since it was read"):
            await kube.delete("v1", "ConfigMap", "web", "shop", preconditions=pre)
    assert json.loads(server.requests[0].content)["preconditions"] == pre
    assert len(server.requests) == 2  # a failed precondition is not retried


@pytest.mark.parametrize("pre", [{"uid": ""}, {"uid": "u1", "resourceVersion": ""}])
async def test_a_precondition_without_a_value_refuses_the_delete_without_a_request(
    pre: dict[str, str],
) -> None:
    # Dropping it would turn a delete of "the object I saw" into a delete of whatever is there.
    kube, server = make_kube(ok())
    async with kube:
        with pytest.raises(PreconditionFailed, match="conditional on"):
            await kube.delete("v1", "ConfigMap", "web", "shop", preconditions=pre)
    assert server.requests == []


@pytest.mark.parametrize("name", [".", "..", "a/b"])
async def test_no_request_is_sent_for_a_name_kubernetes_would_refuse(name: str) -> None:
    kube, server = make_kube(ok())
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "s"}}
    async with kube:
        with pytest.raises(InvalidName):
            await kube.delete("v1", "ConfigMap", name, "shop")
        with pytest.raises(InvalidName):
            await kube.get("v1", "ConfigMap", name, "shop")
        with pytest.raises(InvalidName):
            await kube.apply(obj)
        with pytest.raises(InvalidName):
            await kube.create(obj)  # the name is in the body, checked all the same
        with pytest.raises(InvalidName):
            await kube.delete("v1", "Namespace", name)
        with pytest.raises(InvalidName):
            await kube.list("v1", "ConfigMap", namespace=name)
    assert server.requests == []


async def test_patches_use_their_content_types_and_subresources() -> None:
    kube, server = make_kube(ok())
    async with kube:
        await kube.merge_patch("apps/v1", "Deployment", "web", {"status": {}}, "shop", "status")
        await kube.json_patch(
            "apps/v1", "Deployment", "web", [{"op": "remove", "path": "/x"}], "shop"
        )
    merge, patch = server.requests
    assert merge.headers["Content-Type"] == "application/merge-patch+json"
    assert merge.url.path.endswith("/deployments/web/status")
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert json.loads(patch.content) == [{"op": "remove", "path": "/x"}]


async def test_unknown_kind_refreshes_discovery_at_most_once_per_interval() -> None:
    kube, server = make_kube(ok(), rediscover_interval=3600)
    async with kube:
        await kube.discover()
        assert server.discoveries == 2  # /api and /apis
        with pytest.raises(NotFoundKind, match="Widget"):
            await kube.resource_for("example.com/v1", "Widget")
        assert server.discoveries == 2  # refreshed too recently

    kube, server = make_kube(ok(), rediscover_interval=0)
    async with kube:
        await kube.discover()
        with pytest.raises(NotFoundKind):
            await kube.get("example.com/v1", "Widget", "w")
        assert server.discoveries == 4
        assert server.requests == []


def test_mapper_before_discovery_says_what_to_do() -> None:
    kube, _ = make_kube(ok())
    with pytest.raises(RuntimeError, match=r"await kube\.discover\(\)"):
        _ = kube.mapper


async def test_watch_streams_events_and_raises_gone_on_410() -> None:
    lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}},
    ]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    kube, server = make_kube(lambda _r: httpx.Response(200, text=body))
    seen = []

    async def consume() -> None:
        async for event in kube.watch("v1", "ConfigMap", "shop", resource_version="4"):
            seen.append((event.type, event.resource_version, event.object.get("kind")))

    async with kube:
        with pytest.raises(Gone, match="watch v1 ConfigMap shop: too old"):
            await consume()
    assert seen == [("ADDED", "5", "ConfigMap"), ("BOOKMARK", "6", None)]
    params = server.requests[0].url.params
    assert params["watch"] == "true"
    assert params["allowWatchBookmarks"] == "true"
    assert params["resourceVersion"] == "4"


async def test_watch_open_failure_raises_the_servers_error() -> None:
    kube, _ = make_kube(lambda _r: status(410, "Expired", "too old resource version"))
    async with kube:
        with pytest.raises(Gone):
            async for _ in kube.watch("v1", "ConfigMap", resource_version="1"):
                pass


async def test_apply_rejected_for_its_schema_is_not_retried() -> None:
    kube, server = make_kube(
        lambda _r: status(500, "InternalError", "failed to create typed patch object (x): .spec")
    )
    async with kube:
        with pytest.raises(Invalid):
            await kube.apply(DEPLOY)
    assert len(server.requests) == 1


# -- impersonation ---------------------------------------------------------------------------

SA_USER = "system:serviceaccount:shop:deployer"


async def test_impersonating_view_sends_the_headers_on_every_request() -> None:
    kube, server = make_kube(ok({"metadata": {"name": "web"}}))
    view = kube.impersonating(SA_USER, groups=["ops", "devs"])
    async with kube:
        await view.apply(DEPLOY, dry_run=True)
        await view.get("v1", "ConfigMap", "c", "shop")
        await view.delete("v1", "ConfigMap", "c", "shop")
        await kube.get("v1", "ConfigMap", "c", "shop")  # the original is unchanged
    *as_view, own = server.requests
    for request in as_view:
        assert request.headers.get_list("Impersonate-User") == [SA_USER]
        assert request.headers.get_list("Impersonate-Group") == ["ops", "devs"]
    assert "Impersonate-User" not in own.headers
    assert view.impersonated_user == SA_USER
    assert kube.impersonated_user is None
    assert "system:serviceaccount:shop:deployer" in repr(view)


async def test_impersonating_view_sends_the_header_on_watch() -> None:
    kube, server = make_kube(lambda _r: httpx.Response(200, text=""))
    async with kube:
        async for _ in kube.impersonating(SA_USER).watch("v1", "ConfigMap", "shop"):
            pass
    assert server.requests[0].headers["Impersonate-User"] == SA_USER
    assert "Impersonate-Group" not in server.requests[0].headers


async def test_impersonating_view_shares_discovery_and_the_connection() -> None:
    kube, server = make_kube(ok({}))
    view = kube.impersonating(SA_USER)
    async with kube:
        await view.get("v1", "ConfigMap", "c", "shop")
        await kube.get("v1", "ConfigMap", "c", "shop")
        assert kube.mapper is view.mapper
        await view.close()  # a view closes nothing: the original still works
        await kube.get("v1", "ConfigMap", "c", "shop")
    assert server.discoveries == 2  # /api and /apis, once, for both
    assert len(server.requests) == 3


def test_service_account_user_is_built_from_validated_names() -> None:
    assert service_account_user("shop", "deployer") == SA_USER
    for namespace, name in [("shop", "a:b"), ("Shop", "deployer"), ("shop", ""), ("", "x")]:
        with pytest.raises(InvalidName):
            service_account_user(namespace, name)


@pytest.mark.parametrize(
    "user",
    [
        "",
        "alice\r\nImpersonate-Group: system:masters",
        "alice\n",
        " alice",
        "al\x00ice",
        "älice",
    ],
)
def test_impersonating_refuses_user_names_that_could_forge_headers(user: str) -> None:
    kube, _ = make_kube(ok())
    with pytest.raises(ConfigError, match="impersonation: user"):
        kube.impersonating(user)


def test_impersonating_refuses_bad_groups_and_malformed_service_accounts() -> None:
    kube, _ = make_kube(ok())
    with pytest.raises(ConfigError, match="impersonation: group"):
        kube.impersonating(SA_USER, groups=["ops\r\nX: y"])
    for user in [
        "system:serviceaccount:shop",
        "system:serviceaccount:shop:a:b",
        "system:serviceaccount:Shop:x",
        "system:serviceaccount::x",
    ]:
        with pytest.raises(InvalidName):
            kube.impersonating(user)
