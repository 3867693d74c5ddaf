"""Ownership as data, on the real cluster: a sync for a Flux Kustomization owner.

The sync stage gets a ``FluxLabels`` owner and the inventory as kustomize-controller stores
it (``status.inventory.entries``); it labels what it applies as kustomize-controller does,
prunes only stale entries still carrying those labels, and neither takes nor prunes an
object an Argo CD Application tracks.
"""

from __future__ import annotations

import pytest

from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.sync import (
    ArgoTracking,
    FluxLabels,
    Inventory,
    InventoryEntry,
    SyncRequest,
    run_sync,
)

pytestmark = pytest.mark.integration


def configmap(name: str, namespace: str, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data or {"name": name},
    }


async def read_inventory(kube: Kube, inventory: Inventory) -> tuple[Obj, ...]:
    """The live objects of the inventory's entries, as a caller reads them for a sync."""
    found = []
    for entry in inventory:
        live = await kube.get(
            entry.api_version, entry.key.kind, entry.key.name, entry.key.namespace or None
        )
        if live is not None:
            found.append(live)
    return tuple(found)


async def test_flux_owner_labels_what_it_applies_and_prunes_only_its_own(
    kube_client: Kube, namespace: str
) -> None:
    owner = FluxLabels("apps", namespace)
    argo_app = await kube_client.create(
        ArgoTracking(f"{namespace}_other").mark(configmap("argo-owned", namespace, x="argo"))
    )

    first = await run_sync(
        kube_client,
        SyncRequest(
            destination_namespace=namespace,
            desired=(configmap("web", namespace), configmap("old", namespace)),
            owner=owner,
        ),
    )

    assert first.phase == "Succeeded", first.message
    web = await kube_client.get("v1", "ConfigMap", "web", namespace)
    assert web is not None
    assert web["metadata"]["labels"] == {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": namespace,
    }
    assert first.inventory is not None
    stored = first.inventory.to_flux()  # status.inventory, as kustomize-controller writes it
    assert stored == {
        "entries": [
            {"id": f"{namespace}_web__ConfigMap", "v": "v1"},
            {"id": f"{namespace}_old__ConfigMap", "v": "v1"},
        ]
    }

    # The stored inventory also names the Argo app's ConfigMap (tampered with, or written
    # by an older version): it is stale for this owner, but not this owner's to prune.
    last = Inventory.from_flux(stored).merge(Inventory((InventoryEntry.of(argo_app),)))
    second = await run_sync(
        kube_client,
        SyncRequest(
            destination_namespace=namespace,
            desired=(configmap("web", namespace),),
            owner=owner,
            inventory=last,
            owned_live=await read_inventory(kube_client, last),
            prune=True,
        ),
    )

    assert second.phase == "Succeeded", second.message
    old = await kube_client.get("v1", "ConfigMap", "old", namespace)
    assert old is None or "deletionTimestamp" in old["metadata"]  # Foreground propagation
    kept = await kube_client.get("v1", "ConfigMap", "argo-owned", namespace)
    assert kept is not None
    assert kept["metadata"]["uid"] == argo_app["metadata"]["uid"]
    assert kept["metadata"]["resourceVersion"] == argo_app["metadata"]["resourceVersion"]
    assert {(r.key.name, r.status) for r in second.resources} == {
        ("web", "Synced"),
        ("old", "Pruned"),
    }
    assert second.inventory is not None
    assert second.inventory.to_flux() == {
        "entries": [{"id": f"{namespace}_web__ConfigMap", "v": "v1"}]
    }


async def test_flux_owner_does_not_take_an_argo_apps_object(
    kube_client: Kube, namespace: str
) -> None:
    argo_app = await kube_client.create(
        ArgoTracking(f"{namespace}_other").mark(configmap("shared", namespace, owner="argo"))
    )

    result = await run_sync(
        kube_client,
        SyncRequest(
            destination_namespace=namespace,
            desired=(
                configmap("shared", namespace, owner="flux"),
                configmap("flux-only", namespace),
            ),
            owner=FluxLabels("apps", namespace),
        ),
    )

    assert result.phase == "Failed"
    assert "Shared resource found: ConfigMap/shared is part of Kustomization" in result.message
    live = await kube_client.get("v1", "ConfigMap", "shared", namespace)
    assert live is not None
    assert live["metadata"]["resourceVersion"] == argo_app["metadata"]["resourceVersion"]
    assert live["data"] == {"owner": "argo"}
    assert "labels" not in live["metadata"]
    assert await kube_client.get("v1", "ConfigMap", "flux-only", namespace) is None


async def test_argo_app_does_not_prune_an_object_a_kustomization_also_marks(
    kube_client: Kube, namespace: str
) -> None:
    app = ArgoTracking(f"{namespace}_web")
    # Once the app's, then labelled by a Kustomization: it carries both marks.
    flux_owned = await kube_client.create(
        FluxLabels("apps", namespace).mark(app.mark(configmap("flux-owned", namespace)))
    )
    mine = await kube_client.create(app.mark(configmap("mine", namespace)))
    last = Inventory.of([flux_owned, mine])  # both in the app's status.resources

    result = await run_sync(
        kube_client,
        SyncRequest(
            destination_namespace=namespace,
            desired=(),
            owner=app,
            inventory=last,
            owned_live=await read_inventory(kube_client, last),
            prune=True,
        ),
    )

    assert result.phase == "Succeeded", result.message
    kept = await kube_client.get("v1", "ConfigMap", "flux-owned", namespace)
    assert kept is not None
    assert "deletionTimestamp" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == flux_owned["metadata"]["resourceVersion"]
    gone = await kube_client.get("v1", "ConfigMap", "mine", namespace)
    assert gone is None or "deletionTimestamp" in gone["metadata"]  # Foreground propagation
    assert [(r.key.name, r.status) for r in result.resources] == [("mine", "Pruned")]
    assert result.inventory == Inventory()
