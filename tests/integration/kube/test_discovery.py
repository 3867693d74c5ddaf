"""Aggregated discovery of the real apiserver, and a new CRD becoming usable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from gitsail.kube import Kube, NotFoundKind, ResourceInfo

pytestmark = pytest.mark.integration


async def test_discovery_finds_core_and_group_kinds(api: Kube) -> None:
    mapper = await api.discover(refresh=True)
    deploy = mapper.resource_for("apps/v1", "Deployment")
    assert (deploy.plural, deploy.namespaced) == ("deployments", True)
    assert {"status", "scale"} <= deploy.subresources
    assert "patch" in deploy.verbs
    assert not mapper.resource_for("v1", "Namespace").namespaced
    versions = mapper.api_versions()
    assert {"v1", "apps/v1", "apps/v1/Deployment", "v1/ConfigMap"} <= set(versions)
    assert mapper.unavailable == frozenset()


@pytest.fixture
async def widget_crd(api: Kube) -> AsyncIterator[str]:
    group = f"w{uuid.uuid4().hex[:8]}.gitsail.test"
    name = f"widgets.{group}"
    await api.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"size": {"type": "integer"}},
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    yield group
    await api.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)


async def test_new_crd_becomes_resolvable_after_refresh(
    api: Kube, widget_crd: str, namespace: str
) -> None:
    from tests.integration.kube.conftest import eventually

    api_version = f"{widget_crd}/v1"
    with pytest.raises(NotFoundKind):
        api.mapper.resource_for(api_version, "Widget")

    async def resolvable() -> ResourceInfo | None:
        try:
            return await api.resource_for(api_version, "Widget")
        except NotFoundKind:
            return None

    info = await eventually(resolvable, what="Widget in discovery")
    assert (info.plural, info.namespaced) == ("widgets", True)
    assert f"{api_version}/Widget" in api.mapper.api_versions()
    widget = {
        "apiVersion": api_version,
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": 3},
    }

    async def applied() -> dict[str, object] | None:
        # The CRD's REST endpoint can lag a moment behind discovery.
        try:
            return await api.apply(widget)
        except NotFoundKind:
            return None

    stored = await eventually(applied, what="Widget apply")
    assert stored["spec"] == {"size": 3}
