from __future__ import annotations

import pytest

from gitsail.model import ResourceKey
from gitsail.sync.inventory import Inventory, InventoryEntry, InventoryError

# As kustomize-controller writes status.inventory for the podinfo example.
FLUX_STATUS = {
    "entries": [
        {"id": "_podinfo__Namespace", "v": "v1"},
        {"id": "podinfo_podinfo__Service", "v": "v1"},
        {"id": "podinfo_podinfo_apps_Deployment", "v": "v1"},
        {"id": "podinfo_podinfo_autoscaling_HorizontalPodAutoscaler", "v": "v2"},
        {"id": "_system__auth-delegator_rbac.authorization.k8s.io_ClusterRoleBinding", "v": "v1"},
    ]
}


def test_flux_entries_decode_to_keys_and_versions() -> None:
    inventory = Inventory.from_flux(FLUX_STATUS)
    assert [(e.key, e.version) for e in inventory] == [
        (ResourceKey("", "Namespace", "", "podinfo"), "v1"),
        (ResourceKey("", "Service", "podinfo", "podinfo"), "v1"),
        (ResourceKey("apps", "Deployment", "podinfo", "podinfo"), "v1"),
        (ResourceKey("autoscaling", "HorizontalPodAutoscaler", "podinfo", "podinfo"), "v2"),
        (
            ResourceKey(
                "rbac.authorization.k8s.io", "ClusterRoleBinding", "", "system:auth-delegator"
            ),
            "v1",
        ),
    ]
    assert inventory.to_flux() == FLUX_STATUS
    assert inventory.get(ResourceKey("apps", "Deployment", "podinfo", "podinfo")) == (
        InventoryEntry(ResourceKey("apps", "Deployment", "podinfo", "podinfo"), "v1")
    )


def test_entry_id_of_an_object_is_flux_s() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "default"},
    }
    entry = InventoryEntry.of(deployment)
    assert entry.to_flux() == {"id": "default_podinfo_apps_Deployment", "v": "v1"}
    assert entry.api_version == "apps/v1"
    core = InventoryEntry.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert core.flux_id == "_x__Namespace"
    assert core.api_version == "v1"


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "no-separators", "v": "v1"},
        {"id": "ns_name_Kind", "v": "v1"},
        {"id": "ns_na_me_apps_Deployment", "v": "v1"},
        {"id": "ns__apps_Deployment", "v": "v1"},
        {"id": "ns_name_apps_", "v": "v1"},
        {"id": "default_podinfo_apps_Deployment"},
    ],
)
def test_a_malformed_flux_entry_is_an_error_naming_it(bad: dict[str, str]) -> None:
    with pytest.raises(InventoryError, match="inventory entry"):
        Inventory.from_flux({"entries": [bad]})


def test_an_absent_flux_inventory_is_empty() -> None:
    assert len(Inventory.from_flux(None)) == 0
    assert len(Inventory.from_flux({})) == 0
    with pytest.raises(InventoryError):
        Inventory.from_flux({"entries": "x"})


def test_argo_rows_round_trip_and_other_row_fields_are_ignored() -> None:
    rows = [
        {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop",
         "name": "web", "status": "Synced", "health": {"status": "Healthy"}},
        {"group": "", "version": "v1", "kind": "Namespace", "namespace": "", "name": "shop"},
        {"version": "v1", "kind": "ConfigMap", "namespace": "shop"},  # no name: skipped
    ]  # fmt: skip
    inventory = Inventory.from_argo(rows)
    assert inventory.to_argo() == [
        {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop",
         "name": "web"},
        {"group": "", "version": "v1", "kind": "Namespace", "namespace": "", "name": "shop"},
    ]  # fmt: skip
    assert Inventory.from_argo(inventory.to_argo()) == inventory
    # The same inventory in Flux's form and back.
    assert Inventory.from_flux(inventory.to_flux()) == inventory
    assert Inventory.from_argo(None) == Inventory()


def entry(kind: str, name: str, version: str = "v1", group: str = "") -> InventoryEntry:
    return InventoryEntry(ResourceKey(group, kind, "shop", name), version)


def test_diff_is_what_the_old_inventory_holds_and_the_new_one_does_not() -> None:
    old = Inventory((entry("ConfigMap", "a"), entry("ConfigMap", "b"), entry("Secret", "c")))
    new = Inventory((entry("ConfigMap", "b"), entry("ConfigMap", "d")))
    assert old.diff(new) == Inventory((entry("ConfigMap", "a"), entry("Secret", "c")))
    assert new.diff(old) == Inventory((entry("ConfigMap", "d"),))
    assert old.diff(old) == Inventory()


def test_a_new_api_version_does_not_make_an_object_stale() -> None:
    old = Inventory((entry("HorizontalPodAutoscaler", "web", "v2beta2", "autoscaling"),))
    new = Inventory((entry("HorizontalPodAutoscaler", "web", "v2", "autoscaling"),))
    assert old.diff(new) == Inventory()


def test_merge_keeps_order_and_the_first_version_of_an_entry() -> None:
    old = Inventory((entry("ConfigMap", "a", "v1"), entry("ConfigMap", "b")))
    new = Inventory((entry("ConfigMap", "a", "v2"), entry("ConfigMap", "c")))
    assert new.merge(old).entries == (
        entry("ConfigMap", "a", "v2"),
        entry("ConfigMap", "c"),
        entry("ConfigMap", "b"),
    )
    assert old.merge(new).get(entry("ConfigMap", "a").key) == entry("ConfigMap", "a", "v1")
    assert old.without([entry("ConfigMap", "a").key]) == Inventory((entry("ConfigMap", "b"),))


def test_an_inventory_holds_one_entry_per_object() -> None:
    twice = Inventory((entry("ConfigMap", "a", "v1"), entry("ConfigMap", "a", "v2")))
    assert twice.entries == (entry("ConfigMap", "a", "v1"),)
    assert entry("ConfigMap", "a").key in twice
    assert len(twice) == 1
