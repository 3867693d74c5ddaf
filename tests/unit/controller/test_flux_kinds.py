"""The Flux kinds as the registry drives them (``gitsail.controller.flux``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gitsail.controller.flux import _Kustomizations  # the kind as the registry sees it
from gitsail.controller.registry import KindRegistry, ObjectKey
from gitsail.model import Obj


def kustomization(inventory: list[dict[str, str]] | None) -> Obj:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system", "generation": 1},
        "spec": {
            "interval": "10m",
            "path": "./apps",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
        },
        "status": {"inventory": {"entries": inventory}} if inventory is not None else {},
    }


class Inner:
    api_version = "kustomize.toolkit.fluxcd.io/v1"
    kind = "Kustomization"

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        return 600.0


def kind(after_pass: Obj) -> tuple[_Kustomizations, list[tuple[str, str]]]:
    looked_up: list[tuple[str, str]] = []

    async def read(key: ObjectKey, fresh: bool) -> Obj | None:
        assert fresh  # the status the pass just wrote, not the lagging watch cache
        return after_pass

    async def live(api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        looked_up.append((api_version, kind))
        return None

    ctx: Any = SimpleNamespace(
        settings=SimpleNamespace(control_namespace="argocd"),
        registry=KindRegistry(),
        read=read,
        live=live,
    )
    return _Kustomizations(Inner(), ctx), looked_up  # type: ignore[arg-type]


async def test_each_kind_a_kustomization_applied_is_handed_once_to_the_managed_object_watch() -> (
    None
):
    applied = kustomization(
        [
            {"id": "apps_web_apps_Deployment", "v": "v1"},
            {"id": "apps_api_apps_Deployment", "v": "v1"},
            {"id": "apps_settings__ConfigMap", "v": "v1"},
        ]
    )
    reconciler, looked_up = kind(applied)

    assert await reconciler.reconcile(kustomization(None), frozenset()) == 600.0
    assert looked_up == [("apps/v1", "Deployment"), ("v1", "ConfigMap")]
    await reconciler.reconcile(kustomization(None), frozenset())
    assert len(looked_up) == 2  # already watched


async def test_an_unreadable_inventory_watches_nothing() -> None:
    reconciler, looked_up = kind(kustomization([{"id": "no-underscores", "v": "v1"}]))
    await reconciler.reconcile(kustomization(None), frozenset())
    assert looked_up == []
