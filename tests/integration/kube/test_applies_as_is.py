"""``applies_as_is`` against the real apiserver: when it says an apply would change nothing,
the server's own dry run says the same; and it says so for what a controller re-applies
unchanged (what a restarted controller compares), so those need no dry run.
"""

from __future__ import annotations

import copy

import pytest

from gitsail.diff import normalize
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.sync.predictions import applies_as_is

pytestmark = pytest.mark.integration

MANAGER = "gitsail-as-is"


def deployment(namespace: str) -> Obj:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": namespace,
            "labels": {"team": "shop", "tier": "front"},
            "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:x/web"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "MODE", "value": "prod"}],
                        }
                    ]
                },
            },
        },
    }


def service(namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def configmap(namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"a": "1"},
    }


async def judge(api: Kube, manifest: Obj) -> bool:
    """``applies_as_is`` of ``manifest`` onto the live object, checked against the server:
    whenever it says True, the dry run's answer is the live object."""
    meta = manifest["metadata"]
    for _ in range(20):
        live = await api.get(
            manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace")
        )
        verdict = applies_as_is(manifest, live, field_manager=MANAGER)
        if not verdict:
            return False
        answer = await api.apply(manifest, field_manager=MANAGER, force=True, dry_run=True)
        assert live is not None
        if _version(answer) != _version(live):
            continue  # another manager wrote in between (the Deployment controller): again
        assert normalize(answer) == normalize(live), "said unchanged, the server disagrees"
        return True
    raise AssertionError("the object kept changing under the dry runs")


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@pytest.mark.parametrize("make", [deployment, service, configmap])
async def test_what_this_manager_applied_unchanged_needs_no_dry_run(
    api: Kube, namespace: str, make: object
) -> None:
    manifest = make(namespace)  # type: ignore[operator]
    await api.apply(manifest, field_manager=MANAGER, force=True)
    assert await judge(api, manifest)
    namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    assert not await judge(api, namespace_obj)  # created by the fixture, not applied by us


async def test_every_change_an_apply_would_make_is_left_to_the_server(
    api: Kube, namespace: str
) -> None:
    manifest = deployment(namespace)
    await api.apply(manifest, field_manager=MANAGER, force=True)

    changed_image = copy.deepcopy(manifest)
    changed_image["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    dropped_label = copy.deepcopy(manifest)
    del dropped_label["metadata"]["labels"]["tier"]  # an apply releases it: removed
    dropped_env = copy.deepcopy(manifest)
    del dropped_env["spec"]["template"]["spec"]["containers"][0]["env"]
    with_null = copy.deepcopy(manifest)
    with_null["metadata"]["labels"]["tier"] = None
    as_string = copy.deepcopy(manifest)
    as_string["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    for variant in (changed_image, dropped_label, dropped_env, with_null, as_string):
        assert not await judge(api, variant)
    assert not applies_as_is(
        manifest,
        await api.get("apps/v1", "Deployment", "web", namespace),
        field_manager="someone-else",
    )

    # Drift by another manager (kubectl scale): the value differs.
    await api.merge_patch(
        "apps/v1", "Deployment", "web", {"spec": {"replicas": 2}}, namespace=namespace
    )
    assert not await judge(api, manifest)
    await api.apply(manifest, field_manager=MANAGER, force=True)
    assert await judge(api, manifest)

    # Another manager adds a container: the list is longer than the manifest's.
    await api.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}
            },
        },
        field_manager="injector",
    )
    assert not await judge(api, manifest)


async def test_a_value_the_server_rewrites_is_left_to_the_server(api: Kube, namespace: str) -> None:
    manifest = deployment(namespace)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"cpu": "0.5"}}  # stored as "500m"
    await api.apply(manifest, field_manager=MANAGER, force=True)
    assert not await judge(api, manifest)


async def test_an_atomic_map_narrowed_or_widened_is_left_to_the_server(
    api: Kube, namespace: str
) -> None:
    """A Service's selector is an atomic map: applied, the manifest's replaces the live one."""
    wide = service(namespace)
    wide["spec"]["selector"] = {"app": "web", "tier": "front"}
    await api.apply(wide, field_manager=MANAGER, force=True)
    assert await judge(api, wide)
    narrow = service(namespace)  # selector {"app": "web"}: "tier" would go
    assert not await judge(api, narrow)
    answer = await api.apply(narrow, field_manager=MANAGER, force=True, dry_run=True)
    assert answer["spec"]["selector"] == {"app": "web"}  # (the server agrees it changes)

    # Someone else widens it (an Update): the manager no longer owns it whole.
    await api.apply(narrow, field_manager=MANAGER, force=True)
    await api.merge_patch(
        "v1", "Service", "web", {"spec": {"selector": {"extra": "1"}}}, namespace=namespace
    )
    assert not await judge(api, narrow)
    answer = await api.apply(narrow, field_manager=MANAGER, force=True, dry_run=True)
    assert answer["spec"]["selector"] == {"app": "web"}
