"""Filters, pagination, summaries and the resource tree."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.server.views import (
    FilterError,
    Filters,
    counts,
    filter_objects,
    paginate,
    resource_tree,
)


def app(
    name: str,
    project: str = "default",
    sync: str = "Synced",
    health: str = "Healthy",
    labels: dict[str, str] | None = None,
    ns: str = "argocd",
) -> dict[str, Any]:
    return {
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "project": project,
            "source": {"repoURL": "https://u:p@git.example/r.git", "path": "p"},
            "destination": {"namespace": "d", "server": "https://kubernetes.default.svc"},
        },
        "status": {"sync": {"status": sync, "revision": "abc"}, "health": {"status": health}},
    }


def test_filters_and_counts() -> None:
    apps = [
        app("a", "p1"),
        app("b", "p2", sync="OutOfSync"),
        app("c", "p1", health="Degraded", labels={"team": "x"}),
    ]
    rows = filter_objects("Application", apps, Filters.parse({"project": ["p1"]}))
    assert [r["name"] for _, r in rows] == ["a", "c"]
    rows = filter_objects("Application", apps, Filters.parse({"selector": ["team=x"]}))
    assert [r["name"] for _, r in rows] == ["c"]
    rows = filter_objects("Application", apps, Filters.parse({"sync": ["OutOfSync,Unknown"]}))
    assert [r["name"] for _, r in rows] == ["b"]
    rows = filter_objects("Application", apps, Filters.parse({"search": ["B"]}))
    assert [r["name"] for _, r in rows] == ["b"]
    all_rows = filter_objects("Application", apps, Filters())
    assert counts(r for _, r in all_rows) == {
        "sync": {"Synced": 2, "OutOfSync": 1},
        "health": {"Healthy": 2, "Degraded": 1},
    }


def test_summary_redacts_credentials_in_repo_urls() -> None:
    ((_, row),) = filter_objects("Application", [app("a")], Filters())
    assert "u:p@" not in row["source"]


@pytest.mark.parametrize(
    "query",
    [{"selector": ["a=b=c"]}, {"search": ["x" * 500]}, {"project": [",".join(["p"] * 200)]}],
)
def test_bad_filters_refused(query: dict[str, list[str]]) -> None:
    with pytest.raises(FilterError):
        Filters.parse(query)


def test_pagination_bounds() -> None:
    assert paginate(10, None, None) == (0, 100)
    assert paginate(10, "5", "2") == (5, 2)
    for offset, limit in (("-1", "1"), ("0", "0"), ("0", "100000"), ("x", "1")):
        with pytest.raises(FilterError):
            paginate(10, offset, limit)


def test_resource_tree_links_derived_objects_by_owner() -> None:
    a = app("a")
    a["status"]["resources"] = [
        {
            "group": "apps",
            "version": "v1",
            "kind": "Deployment",
            "namespace": "d",
            "name": "web",
            "status": "Synced",
            "health": {"status": "Healthy"},
        },
    ]
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-1",
            "namespace": "d",
            "ownerReferences": [{"kind": "Deployment", "name": "web"}],
        },
        "spec": {"replicas": 1},
        "status": {"availableReplicas": 1},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1-x",
            "namespace": "d",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}],
        },
        "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 2}]},
    }
    other = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "elsewhere",
            "namespace": "other",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}],
        },
    }
    nodes = resource_tree(a, {"ReplicaSet": [rs], "Pod": [pod, other]})["nodes"]
    assert [(n["kind"], n["name"]) for n in nodes] == [
        ("Deployment", "web"),
        ("ReplicaSet", "web-1"),
        ("Pod", "web-1-x"),
    ]
    assert nodes[2]["parentRefs"][0]["name"] == "web-1"
    assert nodes[2]["health"]["status"] == "Healthy"
