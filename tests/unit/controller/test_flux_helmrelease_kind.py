"""HelmReleases as the registry drives them (``gitsail.controller.flux._HelmReleases``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gitsail.controller.flux import _HelmReleases
from gitsail.controller.registry import KindRegistry, ObjectKey
from gitsail.model import Obj

HR: Obj = {
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {"name": "redis", "namespace": "apps", "generation": 1},
    "spec": {
        "interval": "1h",
        "chart": {
            "spec": {
                "chart": "redis",
                "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux"},
            }
        },
        "dependsOn": [{"name": "db"}],
    },
}


class Inner:
    api_version = "helm.toolkit.fluxcd.io/v2"
    kind = "HelmRelease"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Any] = {
            ("apps", "redis"): (
                ("v1", "ConfigMap", "redis-config", "apps"),
                ("apps/v1", "Deployment", "redis-app", "apps"),
                ("v1", "ConfigMap", "redis-other", "apps"),
            )
        }

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        return 3600.0

    def release_objects(self, namespace: str, name: str) -> Any:
        return self.objects.get((namespace, name), ())

    def forget(self, namespace: str, name: str) -> None:
        self.objects.pop((namespace, name), None)


def kind() -> tuple[_HelmReleases, KindRegistry, list[tuple[str, str]], Inner]:
    looked_up: list[tuple[str, str]] = []

    async def live(api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        looked_up.append((api_version, kind))
        return None

    registry = KindRegistry()
    ctx: Any = SimpleNamespace(
        settings=SimpleNamespace(control_namespace="argocd"), registry=registry, live=live
    )
    inner = Inner()
    return _HelmReleases(inner, ctx), registry, looked_up, inner  # type: ignore[arg-type]


async def test_its_helmchart_and_dependencies_wake_it_and_its_objects_join_the_watch() -> None:
    releases, registry, looked_up, inner = kind()
    assert await releases.reconcile(HR, frozenset()) == 3600.0
    key = ObjectKey("HelmRelease", "apps", "redis")
    assert registry.dependencies.dependencies(key) == {
        ObjectKey("HelmChart", "flux", "apps-redis"),
        ObjectKey("HelmRelease", "apps", "db"),
    }
    assert looked_up == [("v1", "ConfigMap"), ("apps/v1", "Deployment")]
    await releases.reconcile(HR, frozenset())
    assert len(looked_up) == 2  # each kind once
    releases.forget(key)
    assert inner.release_objects("apps", "redis") == ()


def test_objects_with_helm_controllers_labels_wake_their_release() -> None:
    releases, *_ = kind()
    labelled = {
        "metadata": {
            "labels": {
                "helm.toolkit.fluxcd.io/name": "redis",
                "helm.toolkit.fluxcd.io/namespace": "apps",
            }
        }
    }
    assert releases.keys_for_managed(labelled) == [ObjectKey("HelmRelease", "apps", "redis")]
    assert releases.keys_for_managed({"metadata": {"labels": {"app": "x"}}}) == []
