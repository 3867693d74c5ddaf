"""run_sync with an Owner and an Inventory, against an in-memory cluster.

The fake answers only what the sync stage asks (discovery, get, server-side apply, create,
delete with preconditions); objects are kept as written, with a uid and resourceVersion.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any, cast

import pytest

from gitsail.kube import Kube, NotFoundKind, PreconditionFailed
from gitsail.kube.discovery import ResourceInfo
from gitsail.model import Obj, ResourceKey, split_api_version
from gitsail.sync import (
    ArgoTracking,
    FluxLabels,
    Inventory,
    SyncRequest,
    SyncResult,
    parse_sync_options,
    run_sync,
)

NAMESPACED = {"ConfigMap": True, "Secret": True, "Namespace": False}


class MemoryCluster:
    def __init__(self) -> None:
        self.objects: dict[ResourceKey, Obj] = {}
        self.deleted: list[ResourceKey] = []
        self._counter = itertools.count(1)

    async def discover(self, refresh: bool = False) -> None:
        return None

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        if kind not in NAMESPACED:
            raise NotFoundKind(api_version, kind)
        group, version = split_api_version(api_version)
        return ResourceInfo(
            group, version, kind, kind.lower() + "s", NAMESPACED[kind], frozenset(), frozenset()
        )

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        group, _ = split_api_version(api_version)
        found = self.objects.get(ResourceKey(group, kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def put(self, obj: Obj) -> Obj:
        """Store ``obj`` as the server would: a new resourceVersion, the uid kept."""
        stored = copy.deepcopy(obj)
        key = ResourceKey.of(stored)
        meta = stored["metadata"]
        old = self.objects.get(key)
        meta["uid"] = old["metadata"]["uid"] if old else f"uid-{next(self._counter)}"
        meta["resourceVersion"] = str(next(self._counter))
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def apply(self, obj: Obj, *, dry_run: bool = False, **_: Any) -> Obj:
        if dry_run:
            return copy.deepcopy(obj)
        old = self.objects.get(ResourceKey.of(obj))
        merged = copy.deepcopy(obj)
        if old is not None:  # what server-side apply keeps of other managers' metadata
            for part in ("labels", "annotations"):
                kept = {**(old["metadata"].get(part) or {}), **(obj["metadata"].get(part) or {})}
                if kept:
                    merged["metadata"][part] = kept
        return self.put(merged)

    async def create(self, obj: Obj, **_: Any) -> Obj:
        return self.put(obj)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = "Foreground",
        dry_run: bool = False,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> bool:
        group, _ = split_api_version(api_version)
        key = ResourceKey(group, kind, namespace or "", name)
        live = self.objects.get(key)
        if live is None:
            return False
        for field, value in (preconditions or {}).items():
            if value and live["metadata"].get(field) != value:
                raise PreconditionFailed(409, "Conflict", f"{field} changed")
        del self.objects[key]
        self.deleted.append(key)
        return True


def configmap(name: str, **labels: str) -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": "shop"}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


def key(name: str) -> ResourceKey:
    return ResourceKey("", "ConfigMap", "shop", name)


async def sync(cluster: MemoryCluster, request: SyncRequest) -> SyncResult:
    return await run_sync(cast(Kube, cluster), request)


FLUX = FluxLabels("apps", "flux-system")
ARGO_OTHER = ArgoTracking("argocd_other", display="argocd/other")


async def test_flux_owner_labels_what_it_applies_and_prunes_only_its_own_stale_entries() -> None:
    cluster = MemoryCluster()
    gone = cluster.put(FLUX.mark(configmap("gone")))
    argo_owned = cluster.put(ARGO_OTHER.mark(configmap("argo-owned")))
    last = Inventory.of([gone, argo_owned])

    result = await sync(
        cluster,
        SyncRequest(
            destination_namespace="shop",
            desired=(configmap("web", app="web"),),
            owner=FLUX,
            inventory=last,
            owned_live=(gone, argo_owned),
            prune=True,
        ),
    )

    assert result.phase == "Succeeded", result.message
    web = cluster.objects[key("web")]
    assert web["metadata"]["labels"] == {
        "app": "web",
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    assert cluster.deleted == [key("gone")]
    assert cluster.objects[key("argo-owned")] == argo_owned  # not taken, not pruned
    assert {(r.key.name, r.status) for r in result.resources} == {
        ("web", "Synced"),
        ("gone", "Pruned"),
    }
    assert result.inventory is not None
    assert result.inventory.to_flux() == {"entries": [{"id": "shop_web__ConfigMap", "v": "v1"}]}


async def test_flux_owner_refuses_to_apply_over_an_argo_apps_object() -> None:
    cluster = MemoryCluster()
    theirs = cluster.put(ARGO_OTHER.mark(configmap("shared")))

    result = await sync(
        cluster,
        SyncRequest(
            destination_namespace="shop",
            desired=(configmap("shared"), configmap("mine")),
            owner=FLUX,
        ),
    )

    assert result.phase == "Failed"
    assert (
        "ConfigMap/shared is part of Kustomization flux-system/apps and application argocd/other"
        in result.message
    )
    assert cluster.objects[key("shared")] == theirs
    assert key("mine") not in cluster.objects  # nothing applied
    assert result.inventory == Inventory()


async def test_argo_owner_never_prunes_an_object_a_kustomization_also_marks() -> None:
    mine = ArgoTracking("web")
    cluster = MemoryCluster()
    both = cluster.put(FLUX.mark(mine.mark(configmap("both"))))
    only_mine = cluster.put(mine.mark(configmap("only-mine")))

    result = await sync(
        cluster,
        SyncRequest(
            destination_namespace="shop",
            desired=(),
            owner=mine,
            owned_live=(both, only_mine),
            prune=True,
        ),
    )

    assert result.phase == "Succeeded", result.message
    assert cluster.deleted == [key("only-mine")]
    assert key("both") in cluster.objects
    assert result.inventory == Inventory()


async def test_a_kept_stale_entry_stays_in_the_inventory() -> None:
    cluster = MemoryCluster()
    kept = cluster.put(FLUX.mark(configmap("kept")))
    not_asked = cluster.put(FLUX.mark(configmap("not-asked")))
    kept["metadata"]["annotations"] = {"argocd.argoproj.io/sync-options": "Prune=false"}
    cluster.objects[key("kept")] = copy.deepcopy(kept)

    result = await sync(
        cluster,
        SyncRequest(
            destination_namespace="shop",
            desired=(configmap("web"),),
            owner=FLUX,
            inventory=Inventory.of([kept, not_asked]),
            owned_live=(kept, not_asked),
            prune=False,
        ),
    )

    assert result.phase == "Succeeded", result.message
    assert cluster.deleted == []
    assert result.inventory is not None
    assert [e.key.name for e in result.inventory] == ["web", "kept", "not-asked"]


async def test_an_entry_that_lost_the_owners_mark_since_it_was_read_is_kept() -> None:
    cluster = MemoryCluster()
    read = cluster.put(FLUX.mark(configmap("old")))
    relabelled = copy.deepcopy(read)
    relabelled["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "someone-else"}
    cluster.objects[key("old")] = relabelled

    result = await sync(
        cluster,
        SyncRequest(
            destination_namespace="shop",
            desired=(),
            owner=FLUX,
            owned_live=(read,),
            prune=True,
            options=parse_sync_options(None),
        ),
    )

    assert cluster.deleted == []
    (row,) = result.resources
    assert row.status == "PruneSkipped"
    assert "no longer carries the mark of Kustomization flux-system/apps" in row.message
    assert result.inventory is not None
    assert [e.key.name for e in result.inventory] == ["old"]  # the next sync looks again


def test_the_app_name_is_the_older_spelling_of_an_argo_owner() -> None:
    request = SyncRequest(destination_namespace="shop", desired=(), app="argocd_web")
    assert request.owner == ArgoTracking("argocd_web")
    with pytest.raises(ValueError, match="needs an owner"):
        SyncRequest(destination_namespace="shop", desired=())
