"""AppProject ``orphanedResources``: which objects of a namespace are orphaned (pure), the
message Argo CD writes, and the bounded, metadata-only reading of a namespace (over an
in-memory fake of the two client calls it makes)."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.kinds.argo_application import AppSpecError
from gitsail.kinds.argo_appproject import Project
from gitsail.kinds.argo_appproject_orphans import (
    NamespaceReads,
    Orphans,
    find_orphans,
    known_exclusion,
    orphaned,
    read_namespace,
)
from gitsail.kube import Forbidden, ResourceInfo, RESTMapper
from gitsail.model import Obj, ResourceKey
from gitsail.sync.ownership import ArgoTracking, FluxLabels


def project(**spec: Any) -> Project:
    return Project.from_object({"metadata": {"name": "p", "namespace": "argocd"}, "spec": spec})


def obj(kind: str, name: str, ns: str = "team", api: str = "v1", **meta: Any) -> Obj:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns, **meta}}


def names(keys: list[ResourceKey]) -> list[str]:
    return [f"{k.kind}/{k.name}" for k in keys]


def test_warn_defaults_to_true_once_the_block_is_set() -> None:
    assert project().orphaned_warn is None
    assert project(orphanedResources={}).orphaned_warn is True
    assert project(orphanedResources={"warn": None}).orphaned_warn is True
    assert project(orphanedResources={"warn": False}).orphaned_warn is False
    with pytest.raises(AppSpecError, match="warn must be true or false"):
        project(orphanedResources={"warn": "yes"})
    with pytest.raises(AppSpecError, match="orphanedResources must be an object"):
        project(orphanedResources=["x"])
    with pytest.raises(AppSpecError, match="ignore entries must be objects"):
        project(orphanedResources={"ignore": ["ConfigMap"]})


def test_top_level_untracked_objects_are_orphans_and_derived_or_tracked_ones_are_not() -> None:
    p = project(orphanedResources={"warn": True})
    tracked = ArgoTracking("other").mark(obj("ConfigMap", "of-another-app"))
    flux = FluxLabels("ks", "flux-system").mark(obj("Secret", "of-a-kustomization"))
    objects = [
        obj("ConfigMap", "by-hand"),
        obj("Deployment", "web", api="apps/v1"),
        obj("ReplicaSet", "web-1", api="apps/v1", ownerReferences=[{"kind": "Deployment"}]),
        tracked,
        flux,
        obj("ServiceAccount", "default"),
        obj("ConfigMap", "kube-root-ca.crt"),
        obj("ConfigMap", "elsewhere", ns="other"),
        obj("ConfigMap", "desired-not-applied-yet"),
        obj("Event", "web.1"),
        obj("Lease", "l", api="coordination.k8s.io/v1"),
        # Deleted, still there while a foreground deletion waits for its dependents.
        obj("ConfigMap", "going", deletionTimestamp="2026-12-03T18:00:00Z"),
    ]
    managed = {ResourceKey("", "ConfigMap", "team", "desired-not-applied-yet")}
    assert names(orphaned(p, "team", objects, managed)) == ["ConfigMap/by-hand", "Deployment/web"]


def test_a_copied_tracking_id_marks_nobody() -> None:
    # The annotation names another object (copied by hand): the copy is still an orphan.
    copy = ArgoTracking("app").mark(obj("ConfigMap", "original"))
    copy["metadata"]["name"] = "copy"
    assert names(orphaned(project(orphanedResources={}), "team", [copy])) == ["ConfigMap/copy"]


def test_the_kubernetes_service_is_known_only_in_default() -> None:
    p = project(orphanedResources={})
    assert known_exclusion(p, ResourceKey("", "Service", "default", "kubernetes"))
    assert not known_exclusion(p, ResourceKey("", "Service", "team", "kubernetes"))
    assert not known_exclusion(p, ResourceKey("apps", "ServiceAccount", "team", "default"))


def test_ignore_entries_match_group_kind_and_name_globs() -> None:
    p = project(
        orphanedResources={
            "ignore": [
                {"kind": "ConfigMap", "name": "istio-*"},  # group "" : the core group only
                {"group": "apps", "kind": "Deploy*"},  # no name: every name
                {"group": "*.example.com"},  # no kind: every kind of these groups
            ]
        }
    )
    objects = [
        obj("ConfigMap", "istio-ca"),
        obj("ConfigMap", "mine"),
        obj("Deployment", "web", api="apps/v1"),
        obj("StatefulSet", "db", api="apps/v1"),
        obj("Widget", "w", api="stuff.example.com/v1"),
        obj("Widget", "x", api="example.org/v1"),
    ]
    assert names(orphaned(p, "team", objects)) == [
        "ConfigMap/mine",
        "StatefulSet/db",
        "Widget/x",
    ]


def test_kinds_the_project_does_not_permit_are_not_its_orphans() -> None:
    p = project(
        orphanedResources={},
        namespaceResourceWhitelist=[{"group": "", "kind": "ConfigMap"}],
        namespaceResourceBlacklist=[{"group": "", "kind": "ConfigMap"}],
    )
    assert orphaned(p, "team", [obj("ConfigMap", "a"), obj("Secret", "s")]) == []
    q = project(orphanedResources={}, namespaceResourceBlacklist=[{"group": "", "kind": "Secret"}])
    assert names(orphaned(q, "team", [obj("ConfigMap", "a"), obj("Secret", "s")])) == [
        "ConfigMap/a"
    ]


def test_the_message_is_argo_cds_and_says_when_the_count_is_a_lower_bound() -> None:
    key = ResourceKey("", "ConfigMap", "team", "a")
    assert Orphans("team", ()).message() == ""
    assert Orphans("team", (key, key)).message() == "Application has 2 orphaned resources"
    assert Orphans("team", (key,), truncated=True).message() == (
        "Application has at least 1 orphaned resources"
    )
    assert Orphans("team", (key,)).rows() == [
        {"group": "", "kind": "ConfigMap", "namespace": "team", "name": "a"}
    ]


def info(group: str, version: str, kind: str, *, namespaced: bool = True, verbs: str = "list"):
    return ResourceInfo(
        group=group,
        version=version,
        kind=kind,
        plural=kind.lower() + "s",
        namespaced=namespaced,
        verbs=frozenset(verbs.split()),
        subresources=frozenset(),
    )


class FakeKube:
    """The two calls ``read_namespace`` makes: discovery and one metadata LIST per kind."""

    def __init__(self, resources: list[ResourceInfo], objects: dict[str, list[Obj]]) -> None:
        self.mapper = RESTMapper(resources)
        self.objects = objects
        self.listed: list[tuple[str, int]] = []
        self.forbidden: set[str] = set()

    async def discover(self) -> RESTMapper:
        return self.mapper

    async def list_metadata(
        self, info: ResourceInfo, namespace: str, *, limit: int
    ) -> tuple[list[Obj], bool]:
        self.listed.append((f"{info.api_version}/{info.kind}", limit))
        if info.kind in self.forbidden:
            raise Forbidden(403, "Forbidden", "no", {})
        items = [
            o for o in self.objects.get(info.kind, []) if o["metadata"]["namespace"] == namespace
        ]
        return items[:limit], len(items) > limit


async def test_reading_a_namespace_lists_each_listable_namespaced_kind_once() -> None:
    kube = FakeKube(
        [
            info("", "v1", "ConfigMap"),
            info("autoscaling", "v2", "HorizontalPodAutoscaler"),
            info("autoscaling", "v1", "HorizontalPodAutoscaler"),  # not the preferred version
            info("", "v1", "Namespace", namespaced=False),
            info("", "v1", "Event"),
            info("", "v1", "Binding", verbs="create"),
            info("", "v1", "Secret"),
        ],
        {"ConfigMap": [obj("ConfigMap", "a")], "Secret": [obj("Secret", "s")]},
    )
    kube.forbidden.add("Secret")  # not ours to see: skipped
    objects, truncated = await read_namespace(kube, "team")  # type: ignore[arg-type]
    assert [o["metadata"]["name"] for o in objects] == ["a"]
    assert not truncated
    assert [k for k, _ in kube.listed] == [
        "v1/ConfigMap",
        "autoscaling/v2/HorizontalPodAutoscaler",
        "v1/Secret",
    ]


async def test_reading_stops_at_the_limit_and_says_the_result_is_incomplete() -> None:
    many = [obj("ConfigMap", f"c{i}") for i in range(5)]
    kube = FakeKube(
        [info("", "v1", "ConfigMap"), info("", "v1", "Secret")],
        {"ConfigMap": many, "Secret": [obj("Secret", "s")]},
    )
    found = await find_orphans(kube, project(orphanedResources={}), "team", limit=3)  # type: ignore[arg-type]
    assert found.truncated
    assert len(found.keys) == 3
    assert kube.listed == [("v1/ConfigMap", 3)]  # the Secrets were never asked for
    kube = FakeKube(
        [info("", "v1", "ConfigMap"), info("", "v1", "Secret")],
        {"ConfigMap": many[:3], "Secret": [obj("Secret", "s")]},
    )
    found = await find_orphans(kube, project(orphanedResources={}), "team", limit=3)  # type: ignore[arg-type]
    assert found.truncated
    assert found.message() == "Application has at least 3 orphaned resources"
    assert kube.listed == [("v1/ConfigMap", 3)]


async def test_a_namespace_read_is_shared_for_a_while_and_fresh_on_request() -> None:
    kube = FakeKube([info("", "v1", "ConfigMap")], {"ConfigMap": [obj("ConfigMap", "a")]})
    clock = [100.0]
    reads = NamespaceReads(60.0, clock=lambda: clock[0])
    p = project(orphanedResources={})
    for _ in range(3):  # three apps of the namespace
        found = await find_orphans(kube, p, "team", reads=reads)  # type: ignore[arg-type]
        assert found.message() == "Application has 1 orphaned resources"
    assert len(kube.listed) == 1
    kube.objects["ConfigMap"] = []
    assert (await find_orphans(kube, p, "team", reads=reads)).keys  # type: ignore[arg-type]
    found = await find_orphans(kube, p, "team", reads=reads, fresh=True)  # type: ignore[arg-type]
    assert found.keys == ()
    kube.objects["ConfigMap"] = [obj("ConfigMap", "b")]
    clock[0] += 60
    assert len((await find_orphans(kube, p, "team", reads=reads)).keys) == 1  # type: ignore[arg-type]
    assert len(kube.listed) == 3
