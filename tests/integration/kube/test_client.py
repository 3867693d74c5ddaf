"""Reads and writes on the real apiserver: server-side apply, errors, delete, pagination."""

from __future__ import annotations

import pytest

from gitsail.kube import Conflict, Invalid, Kube, NotFound
from gitsail.model import Obj
from tests.integration.kube.conftest import eventually

pytestmark = pytest.mark.integration


def configmap(namespace: str, name: str = "settings", **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def deployment(namespace: str, name: str = "web", replicas: int = 1) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }


def managers(obj: Obj) -> set[str]:
    return {m["manager"] for m in obj["metadata"].get("managedFields", [])}


async def test_apply_creates_then_updates(api: Kube, namespace: str) -> None:
    created = await api.apply(configmap(namespace, a="1"))
    assert created["data"] == {"a": "1"}
    assert managers(created) == {"gitsail"}
    updated = await api.apply(configmap(namespace, a="2", b="3"))
    assert updated["data"] == {"a": "2", "b": "3"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    live = await api.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["data"] == {"a": "2", "b": "3"}


async def test_dry_run_apply_changes_nothing(api: Kube, namespace: str) -> None:
    stored = await api.apply(configmap(namespace, a="1"))
    preview = await api.apply(configmap(namespace, a="changed"), dry_run=True)
    assert preview["data"] == {"a": "changed"}
    live = await api.get("v1", "ConfigMap", "settings", namespace)
    assert live is not None
    assert live["data"] == {"a": "1"}
    assert live["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    new = await api.apply(configmap(namespace, "never", x="y"), dry_run=True)
    assert new["metadata"]["name"] == "never"
    assert await api.get("v1", "ConfigMap", "never", namespace) is None


async def test_apply_conflict_names_the_other_manager_and_force_wins(
    api: Kube, namespace: str
) -> None:
    await api.apply(deployment(namespace, replicas=1), field_manager="other-tool")
    with pytest.raises(Conflict) as info:
        await api.apply(deployment(namespace, replicas=3))
    message = str(info.value)
    assert message.startswith(f"apply apps/v1 Deployment {namespace}/web: ")
    assert "other-tool" in message
    assert ".spec.replicas" in message

    forced = await api.apply(deployment(namespace, replicas=3), force=True)
    assert forced["spec"]["replicas"] == 3
    assert "gitsail" in managers(forced)


async def test_rejected_object_raises_invalid_with_the_servers_message(
    api: Kube, namespace: str
) -> None:
    bad = deployment(namespace)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(Invalid) as info:
        await api.apply(bad)
    err = info.value
    assert err.code == 422
    assert str(err).startswith(f"apply apps/v1 Deployment {namespace}/web: ")
    assert "`selector` does not match template `labels`" in str(err)
    assert err.status["details"]["causes"]
    assert await api.get("apps/v1", "Deployment", "web", namespace) is None


async def test_unknown_field_is_rejected_by_strict_validation(api: Kube, namespace: str) -> None:
    obj = configmap(namespace, a="1")
    obj["spec"] = {"nope": True}
    # The apiserver answers 500 "failed to create typed patch object"; it is the object
    # that is wrong, so it surfaces as Invalid and is not retried.
    with pytest.raises(Invalid, match=r"\.spec: field not declared in schema"):
        await api.apply(obj)
    assert await api.get("v1", "ConfigMap", "settings", namespace) is None


async def test_create_replace_and_patches(api: Kube, namespace: str) -> None:
    created = await api.create(configmap(namespace, a="1"))
    with pytest.raises(Conflict, match="already exists"):
        await api.create(configmap(namespace, a="1"))
    replaced = await api.replace(configmap(namespace, a="2"))
    assert replaced["data"] == {"a": "2"}
    stale = configmap(namespace, a="3")
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        await api.replace(stale)
    merged = await api.merge_patch("v1", "ConfigMap", "settings", {"data": {"b": "x"}}, namespace)
    assert merged["data"] == {"a": "2", "b": "x"}
    patched = await api.json_patch(
        "v1", "ConfigMap", "settings", [{"op": "remove", "path": "/data/a"}], namespace
    )
    assert patched["data"] == {"b": "x"}
    with pytest.raises(NotFound):
        await api.merge_patch("v1", "ConfigMap", "absent", {"data": {}}, namespace)


async def test_status_subresource_patch(api: Kube, namespace: str) -> None:
    await api.apply(deployment(namespace))
    patched = await api.merge_patch(
        "apps/v1",
        "Deployment",
        "web",
        {"status": {"conditions": [{"type": "Gitsail", "status": "True"}]}},
        namespace,
        subresource="status",
    )
    (condition,) = patched["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Gitsail", "True")


async def replica_sets(api: Kube, namespace: str) -> list[Obj]:
    return await api.list("apps/v1", "ReplicaSet", namespace, label_selector="app=web")


async def test_delete_foreground_removes_dependents(api: Kube, namespace: str) -> None:
    await api.apply(deployment(namespace))
    await eventually(lambda: replica_sets(api, namespace), what="the ReplicaSet")
    assert await api.delete("apps/v1", "Deployment", "web", namespace)

    async def all_gone() -> bool:
        deploy = await api.get("apps/v1", "Deployment", "web", namespace)
        return deploy is None and not await replica_sets(api, namespace)

    await eventually(all_gone, what="Deployment and ReplicaSet gone")
    assert not await api.delete("apps/v1", "Deployment", "web", namespace)


async def test_delete_orphan_keeps_dependents(api: Kube, namespace: str) -> None:
    await api.apply(deployment(namespace))
    await eventually(lambda: replica_sets(api, namespace), what="the ReplicaSet")
    assert await api.delete("apps/v1", "Deployment", "web", namespace, propagation="Orphan")

    async def orphaned() -> list[Obj] | None:
        if await api.get("apps/v1", "Deployment", "web", namespace) is not None:
            return None
        sets = await replica_sets(api, namespace)
        return sets if sets and not sets[0]["metadata"].get("ownerReferences") else None

    await eventually(orphaned, what="orphaned ReplicaSet")


async def test_delete_dry_run_keeps_the_object(api: Kube, namespace: str) -> None:
    await api.apply(configmap(namespace, a="1"))
    assert await api.delete("v1", "ConfigMap", "settings", namespace, dry_run=True)
    assert await api.get("v1", "ConfigMap", "settings", namespace) is not None


async def test_list_paginates_and_fills_kind(api: Kube, namespace: str) -> None:
    for i in range(7):
        await api.apply(configmap(namespace, f"cm-{i}", i=str(i)))
    items, rv = await api.list_with_version("v1", "ConfigMap", namespace, page_size=2)
    names = [i["metadata"]["name"] for i in items]
    # kube-root-ca.crt may or may not be published in the namespace yet.
    assert len(names) == len(set(names))
    assert sorted(n for n in names if n.startswith("cm-")) == [f"cm-{i}" for i in range(7)]
    assert all(i["apiVersion"] == "v1" and i["kind"] == "ConfigMap" for i in items)
    assert int(rv) > 0
    selected = await api.list("v1", "ConfigMap", namespace, field_selector="metadata.name=cm-3")
    assert [c["metadata"]["name"] for c in selected] == ["cm-3"]


async def test_cluster_scoped_get_and_list(api: Kube, namespace: str) -> None:
    ns = await api.get("v1", "Namespace", namespace)
    assert ns is not None
    assert ns["metadata"]["name"] == namespace
    nodes = await api.list("v1", "Node")
    assert len(nodes) >= 2
