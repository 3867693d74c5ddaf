from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gitsail.kube.discovery import (
    AGGREGATED_ACCEPT,
    ResourceInfo,
    RESTMapper,
    check_names,
    fetch_mapper,
    parse_aggregated,
    parse_resource_list,
)
from gitsail.kube.errors import InvalidName, NotFoundKind, ServerError, Unauthorized

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / name).read_text())
    return doc


def info(**kw: Any) -> ResourceInfo:
    base: dict[str, Any] = {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "plural": "deployments",
        "namespaced": True,
        "verbs": frozenset(),
        "subresources": frozenset(),
    }
    return ResourceInfo(**{**base, **kw})


async def recorded_mapper() -> RESTMapper:
    async def get_json(path: str, accept: str) -> Any:
        assert accept == AGGREGATED_ACCEPT
        return recorded({"/api": "aggregated-api.json", "/apis": "aggregated-apis.json"}[path])

    return await fetch_mapper(get_json)


def test_aggregated_discovery_of_a_v1_36_server() -> None:
    resources, stale = parse_aggregated(recorded("aggregated-apis.json"))
    deploy = next(r for r in resources if r.kind == "Deployment")
    assert deploy == ResourceInfo(
        group="apps",
        version="v1",
        kind="Deployment",
        plural="deployments",
        namespaced=True,
        verbs=frozenset(
            {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
        ),
        subresources=frozenset({"scale", "status"}),
    )
    crd = next(r for r in resources if r.kind == "CustomResourceDefinition")
    assert not crd.namespaced
    assert stale == []


def test_core_group_comes_from_api_with_empty_group() -> None:
    resources, _ = parse_aggregated(recorded("aggregated-api.json"))
    pod = next(r for r in resources if r.kind == "Pod")
    assert (pod.group, pod.version, pod.plural, pod.api_version) == ("", "v1", "pods", "v1")
    assert {"status", "log", "eviction"} <= pod.subresources
    namespace = next(r for r in resources if r.kind == "Namespace")
    assert not namespace.namespaced


def test_stale_group_versions_are_left_out_and_reported() -> None:
    doc = {
        "kind": "APIGroupDiscoveryList",
        "items": [
            {
                "metadata": {"name": "metrics.k8s.io"},
                "versions": [{"version": "v1beta1", "freshness": "Stale", "resources": []}],
            }
        ],
    }
    resources, stale = parse_aggregated(doc)
    assert resources == []
    assert stale == ["metrics.k8s.io/v1beta1"]


async def test_mapper_resolves_kinds_and_refuses_unknown_ones() -> None:
    mapper = await recorded_mapper()
    assert mapper.resource_for("apps/v1", "Deployment").plural == "deployments"
    assert mapper.resource_for("autoscaling/v2", "HorizontalPodAutoscaler").version == "v2"
    assert mapper.resource_for("v1", "ConfigMap").namespaced
    with pytest.raises(NotFoundKind, match=r"no Widget in example\.com/v1"):
        mapper.resource_for("example.com/v1", "Widget")
    with pytest.raises(NotFoundKind):
        mapper.resource_for("apps/v1beta1", "Deployment")


async def test_api_versions_lists_group_versions_and_kinds() -> None:
    versions = (await recorded_mapper()).api_versions()
    for expected in (
        "v1",
        "v1/Pod",
        "apps/v1",
        "apps/v1/Deployment",
        "autoscaling/v1",
        "autoscaling/v2/HorizontalPodAutoscaler",
    ):
        assert expected in versions
    assert len(versions) == len(set(versions))


async def test_legacy_discovery_fallback_asks_each_group_version() -> None:
    asked: list[str] = []
    docs: dict[str, Any] = {
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
        "/apis": {
            "kind": "APIGroupList",
            "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]},
                {
                    "name": "metrics.k8s.io",
                    "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
                },
            ],
        },
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
                {"name": "pods/status", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
                {"name": "nodes", "kind": "Node", "namespaced": False, "verbs": ["list"]},
            ],
        },
        "/apis/apps/v1": {
            "kind": "APIResourceList",
            "groupVersion": "apps/v1",
            "resources": [{"name": "deployments", "kind": "Deployment", "namespaced": True}],
        },
    }

    async def get_json(path: str, accept: str) -> Any:
        asked.append(path)
        if path == "/apis/metrics.k8s.io/v1beta1":
            raise ServerError(503, "ServiceUnavailable", "backend down")
        return docs[path]

    mapper = await fetch_mapper(get_json)
    pod = mapper.resource_for("v1", "Pod")
    assert pod.subresources == frozenset({"status"})
    assert not mapper.resource_for("v1", "Node").namespaced
    assert mapper.resource_for("apps/v1", "Deployment").plural == "deployments"
    assert mapper.unavailable == frozenset({"metrics.k8s.io/v1beta1"})
    assert sorted(asked) == sorted([*docs, "/apis/metrics.k8s.io/v1beta1"])


def test_resource_list_skips_subresources() -> None:
    doc = {
        "groupVersion": "batch/v1",
        "resources": [
            {"name": "jobs", "kind": "Job", "namespaced": True, "verbs": ["get", "list"]},
            {"name": "jobs/status", "kind": "Job", "namespaced": True},
        ],
    }
    (job,) = parse_resource_list(doc)
    assert (job.group, job.version, job.plural, job.subresources) == (
        "batch",
        "v1",
        "jobs",
        frozenset({"status"}),
    )


@pytest.mark.parametrize(
    ("resource", "args", "path"),
    [
        (info(), {}, "/apis/apps/v1/deployments"),
        (info(), {"namespace": "shop"}, "/apis/apps/v1/namespaces/shop/deployments"),
        (
            info(),
            {"name": "web", "namespace": "shop"},
            "/apis/apps/v1/namespaces/shop/deployments/web",
        ),
        (
            info(),
            {"name": "web", "namespace": "shop", "subresource": "status"},
            "/apis/apps/v1/namespaces/shop/deployments/web/status",
        ),
        (
            info(group="", kind="Pod", plural="pods"),
            {"name": "p", "namespace": "n"},
            "/api/v1/namespaces/n/pods/p",
        ),
        (
            info(group="", kind="Namespace", plural="namespaces", namespaced=False),
            {"name": "shop", "namespace": "ignored"},
            "/api/v1/namespaces/shop",
        ),
        (
            info(
                group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                plural="clusterroles",
                namespaced=False,
            ),
            {"name": "system:admin"},
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aadmin",
        ),
    ],
)
def test_paths(resource: ResourceInfo, args: dict[str, str], path: str) -> None:
    assert resource.path(**args) == path


def test_path_refuses_empty_name_and_subresource_without_name() -> None:
    with pytest.raises(InvalidName, match=r"metadata\.name '' is not valid"):
        info().path(name="")
    with pytest.raises(ValueError, match="needs an object name"):
        info().path(subresource="status")


CONFIGMAP = info(group="", kind="ConfigMap", plural="configmaps")
CLUSTER_ROLE = info(
    group="rbac.authorization.k8s.io", kind="ClusterRole", plural="clusterroles", namespaced=False
)
NAMESPACE = info(group="", kind="Namespace", plural="namespaces", namespaced=False)


@pytest.mark.parametrize("name", [".", "..", "a/b", "50%", "", "Web", "-web", "web-", "a_b"])
def test_path_refuses_object_names_kubernetes_would_refuse(name: str) -> None:
    # "." and ".." would be normalized away: .../configmaps/. is the whole collection.
    with pytest.raises(InvalidName, match=r"metadata\.name"):
        CONFIGMAP.path(name=name, namespace="shop")


@pytest.mark.parametrize("namespace", [".", "..", "a/b", "%2e", "a.b", "Shop", "x" * 64])
def test_path_refuses_namespaces_that_are_not_dns_labels(namespace: str) -> None:
    with pytest.raises(InvalidName, match=r"metadata\.namespace"):
        CONFIGMAP.path(name="web", namespace=namespace)
    with pytest.raises(InvalidName, match=r"metadata\.namespace"):
        CONFIGMAP.path(namespace=namespace)  # list and watch too


@pytest.mark.parametrize("name", [".", "..", "a/b", "a%2fb", ""])
def test_path_segment_kinds_still_refuse_dot_segments_slash_and_percent(name: str) -> None:
    with pytest.raises(InvalidName, match="path segment"):
        CLUSTER_ROLE.path(name=name)


def test_namespace_objects_take_dns_labels() -> None:
    with pytest.raises(InvalidName, match="DNS-1123 label"):
        NAMESPACE.path(name="a.b")
    assert NAMESPACE.path(name="a-b") == "/api/v1/namespaces/a-b"


def test_names_at_the_limits() -> None:
    longest = ".".join(["a" * 63] * 4)[:253]
    assert CONFIGMAP.path(name=longest, namespace="n" * 63).endswith(longest)
    with pytest.raises(InvalidName):
        CONFIGMAP.path(name=longest + "a", namespace="shop")
    assert CLUSTER_ROLE.path(name="system:controller:x").endswith("system%3Acontroller%3Ax")


def test_subresources_are_checked_as_names() -> None:
    with pytest.raises(InvalidName, match="subresource"):
        CONFIGMAP.path(name="web", namespace="shop", subresource="..")


def test_check_names_for_custom_resources_uses_dns_subdomains() -> None:
    check_names("example.com", "Widget", "a.b-c", "shop")
    with pytest.raises(InvalidName):
        check_names("example.com", "Widget", "..", "shop")
    check_names("example.com", "Widget", None, None)  # nothing to check


async def test_discovery_leaves_out_group_versions_that_are_not_paths() -> None:
    requested: list[str] = []

    async def get_json(path: str, accept: str) -> Any:
        requested.append(path)
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "groups": [{"versions": [{"groupVersion": "../v1"}, {"groupVersion": "x/v1"}]}],
            }
        return {"groupVersion": path.split("/", 2)[2], "resources": []}

    mapper = await fetch_mapper(get_json)
    assert "/apis/../v1" not in requested
    assert {"/api/v1", "/apis/x/v1"} <= set(requested)
    assert "../v1" in mapper.unavailable


async def test_when_one_discovery_document_fails_the_other_request_is_cancelled() -> None:
    waiting = asyncio.Event()
    cancelled: list[str] = []

    async def get_json(path: str, _accept: str) -> Any:
        if path == "/api":
            await waiting.wait()
            raise Unauthorized(401, "Unauthorized", "refused")
        waiting.set()
        try:
            await asyncio.Event().wait()  # an answer that never comes
        except asyncio.CancelledError:
            cancelled.append(path)
            raise

    with pytest.raises(Unauthorized):
        await fetch_mapper(get_json)
    assert cancelled == ["/apis"]  # not left running once the discovery failed
