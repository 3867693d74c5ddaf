"""The Kustomization apply skips objects known unchanged, and only those.

An object is skipped (no dry run, no apply) when this process applied the same object and
the live one still has the resourceVersion that apply returned. A manual edit, a deleted
object, a changed build, another owner or a new reconcile request applies it again. The
cluster is in memory (server-side apply keeps what it was sent; every write is a new
resourceVersion)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, cast

from gitsail.kinds import parse_kustomization
from gitsail.kinds.flux_kustomization_build import Build, objects_digest
from gitsail.kinds.flux_kustomization_reconciler import KustomizationReconciler
from gitsail.kube import Kube, NotFoundKind
from gitsail.kube.discovery import ResourceInfo
from gitsail.model import Obj, ResourceKey, split_api_version
from gitsail.render import Renderer
from gitsail.source import GitSource
from gitsail.sync import ArgoTracking, Inventory, SyncResult

NAMESPACED = {"ConfigMap": True, "Namespace": False}


class Cluster:
    impersonated_user = None

    def __init__(self) -> None:
        self.objects: dict[ResourceKey, Obj] = {}
        self.applies: list[tuple[str, bool]] = []  # (name, dry run)
        self.gets = 0
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
        self.gets += 1
        group, _ = split_api_version(api_version)
        found = self.objects.get(ResourceKey(group, kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def put(self, obj: Obj) -> Obj:
        stored = copy.deepcopy(obj)
        meta = stored["metadata"]
        old = self.objects.get(ResourceKey.of(stored))
        meta["uid"] = old["metadata"]["uid"] if old else f"uid-{next(self._counter)}"
        meta["resourceVersion"] = str(next(self._counter))
        self.objects[ResourceKey.of(stored)] = stored
        return copy.deepcopy(stored)

    def edit(self, name: str, value: str) -> None:
        live = copy.deepcopy(self.objects[key(name)])
        live["data"] = {"k": value}
        self.put(live)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *_: Any,
        **__: Any,
    ) -> bool:
        group, _ = split_api_version(api_version)
        return self.objects.pop(ResourceKey(group, kind, namespace or "", name), None) is not None

    async def apply(self, obj: Obj, *, dry_run: bool = False, **_: Any) -> Obj:
        self.applies.append((obj["metadata"]["name"], dry_run))
        if dry_run:
            return copy.deepcopy(obj)
        return self.put(obj)


def configmap(name: str, value: str = "v1") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
        "data": {"k": value},
    }


def key(name: str) -> ResourceKey:
    return ResourceKey("", "ConfigMap", "shop", name)


def kustomization(status: Obj | None = None, **meta: Any) -> Obj:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux", "uid": "ks-1", **meta},
        "spec": {
            "interval": "5m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
        },
        "status": status or {},
    }


class Driver:
    """Runs ``_apply`` as a pass does: the inventory from the last result."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.cluster = Cluster()
        self.reconciler = KustomizationReconciler(
            cast(Kube, self.cluster),
            git=GitSource(tmp_path / "cache"),
            renderer=Renderer(work_dir=tmp_path / "render"),
            **options,
        )
        self.inventory = Inventory(())

    async def apply(self, *objects: Obj, obj: Obj | None = None) -> SyncResult:
        obj = obj or kustomization()
        built = Build("main@sha1:x", tuple(objects), objects_digest(objects))
        self.cluster.applies.clear()
        result, applied, fresh = await self.reconciler._apply(
            parse_kustomization(obj), cast(Kube, self.cluster), built, self.inventory, obj
        )
        assert result.phase == "Succeeded", result.message
        assert result.inventory is not None
        self.inventory = result.inventory
        # Health covers every desired object, applied or found unchanged.
        assert {t.key for t in applied} == {ResourceKey.of(o) for o in objects}
        assert set(fresh) <= {t.key for t in applied}
        return result

    def applied(self) -> list[str]:
        return sorted(name for name, dry in self.cluster.applies if not dry)

    def dry_runs(self) -> list[str]:
        return sorted(name for name, dry in self.cluster.applies if dry)


async def test_an_unchanged_pass_applies_nothing_and_keeps_the_inventory(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"), configmap("b"))
    assert d.applied() == ["a", "b"]
    assert d.dry_runs() == ["a", "b"]
    result = await d.apply(configmap("a"), configmap("b"))
    assert d.cluster.applies == []
    assert {e.key for e in result.inventory or ()} == {key("a"), key("b")}


async def test_a_manual_edit_is_applied_again(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"), configmap("b"))
    d.cluster.edit("b", "edited by hand")
    await d.apply(configmap("a"), configmap("b"))
    assert d.applied() == ["b"]
    assert d.cluster.objects[key("b")]["data"] == {"k": "v1"}
    await d.apply(configmap("a"), configmap("b"))
    assert d.applied() == []  # healed, and known again


async def test_a_deleted_object_is_created_again(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"), configmap("b"))
    del d.cluster.objects[key("a")]
    await d.apply(configmap("a"), configmap("b"))
    assert d.applied() == ["a"]
    assert key("a") in d.cluster.objects


async def test_a_changed_build_is_applied(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"), configmap("b"))
    await d.apply(configmap("a", "v2"), configmap("b"), configmap("c"))
    assert d.applied() == ["a", "c"]
    assert d.cluster.objects[key("a")]["data"] == {"k": "v2"}


async def test_a_removed_object_is_still_pruned(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"), configmap("b"))
    result = await d.apply(configmap("a"))
    assert d.cluster.applies == []
    assert key("b") not in d.cluster.objects
    assert [e.key for e in result.inventory or ()] == [key("a")]


async def test_a_reconcile_request_applies_everything_again(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"))
    requested = kustomization(annotations={"reconcile.fluxcd.io/requestedAt": "now"})
    await d.apply(configmap("a"), obj=requested)
    assert d.applied() == ["a"]
    await d.apply(configmap("a"), obj=requested)
    assert d.applied() == []


async def test_an_object_another_owner_took_is_not_skipped(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"))
    live = d.cluster.objects[key("a")]
    # Someone relabels it for an Argo CD app: a write, so a new resourceVersion anyway;
    # the dry run then refuses to take it over (shared resource), as on a first apply.
    d.cluster.put(ArgoTracking("argocd_other").mark(live))
    d.cluster.applies.clear()
    built = Build("r", (configmap("a"),), "")
    ks = kustomization()
    result, _, _ = await d.reconciler._apply(
        parse_kustomization(ks), cast(Kube, d.cluster), built, d.inventory, ks
    )
    assert result.phase == "Failed"
    assert "Shared resource" in result.message


async def test_a_recreated_kustomization_applies_everything(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"))
    await d.apply(configmap("a"), obj=kustomization(uid="ks-2"))
    assert d.applied() == ["a"]


async def test_what_was_applied_is_bounded_per_kustomization_count(tmp_path: Path) -> None:
    d = Driver(tmp_path, max_applied=1)
    await d.apply(configmap("a"))
    other = kustomization()
    other["metadata"]["name"] = "other"
    inventory, d.inventory = d.inventory, Inventory(())
    await d.apply(configmap("z"), obj=other)  # the first one's record is dropped
    d.inventory = inventory
    await d.apply(configmap("a"))
    assert d.applied() == ["a"]
    assert len(d.reconciler._applied) == 1


async def test_finalize_forgets_what_was_applied(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    await d.apply(configmap("a"))
    assert d.reconciler._applied
    d.reconciler._forget(kustomization())
    assert not d.reconciler._applied


class LaggingCache:
    """A watch cache that has seen the cluster up to the last ``catch_up``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[ResourceKey, Obj] = {}
        self.reads: list[str] = []

    def catch_up(self) -> None:
        self.seen = copy.deepcopy(self.cluster.objects)

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        self.reads.append(name)
        group, _ = split_api_version(api_version)
        return self.seen.get(ResourceKey(group, kind, namespace or "", name))


async def test_objects_still_wanted_are_read_from_the_watch_cache(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    cache = LaggingCache(d.cluster)
    d.reconciler.target_live = cache.get
    await d.apply(configmap("a"), configmap("b"))
    cache.catch_up()
    gets_before = d.cluster.gets
    await d.apply(configmap("a"), configmap("b"))
    assert d.cluster.applies == []
    assert sorted(cache.reads) == ["a", "b"]
    assert d.cluster.gets == gets_before  # no GET at all


async def test_an_edit_the_cache_has_not_seen_yet_is_applied_once_it_has(
    tmp_path: Path,
) -> None:
    d = Driver(tmp_path)
    cache = LaggingCache(d.cluster)
    d.reconciler.target_live = cache.get
    await d.apply(configmap("a"))
    cache.catch_up()
    d.cluster.edit("a", "edited by hand")
    await d.apply(configmap("a"))  # the cache lags: nothing known changed yet
    assert d.applied() == []
    cache.catch_up()  # the watch event arrives, and wakes the Kustomization
    await d.apply(configmap("a"))
    assert d.applied() == ["a"]
    assert d.cluster.objects[key("a")]["data"] == {"k": "v1"}


async def test_prune_candidates_are_read_from_the_server_not_the_cache(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    cache = LaggingCache(d.cluster)
    d.reconciler.target_live = cache.get
    await d.apply(configmap("a"), configmap("b"))
    cache.catch_up()
    await d.apply(configmap("a"))
    assert cache.reads == ["a"]
    assert key("b") not in d.cluster.objects


async def test_a_service_account_reads_with_its_own_identity_not_the_cache(
    tmp_path: Path,
) -> None:
    d = Driver(tmp_path)
    cache = LaggingCache(d.cluster)
    d.reconciler.target_live = cache.get
    ks = kustomization()
    ks["spec"]["serviceAccountName"] = "deployer"
    await d.apply(configmap("a"), obj=ks)
    await d.apply(configmap("a"), obj=ks)
    assert cache.reads == []
    assert d.applied() == []  # found unchanged by a GET
