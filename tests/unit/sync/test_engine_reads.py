"""What run_sync reads to validate, with a watch cache (the controller) and without (CLI).

Objects to apply are checked for another owner's mark on the cache's view; the dry run's
answer (the stored object's resourceVersion, none for a new object) says whether that view
can be trusted, and only a view behind the server costs a GET. The fakes are the resume
tests' in-memory cluster (counting GETs, answering dry runs as the server does) and its
lagging dict of a watch cache.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from gitsail.kube import Kube
from gitsail.model import Obj, ResourceKey
from gitsail.sync import ArgoTracking, SyncRequest, run_sync
from tests.unit.sync.test_resume import OWNER, Cluster, World, configmap, deployment, hook

OTHER = ArgoTracking("argocd_other", display="argocd/other")


def request(*desired: Obj, **kw: Any) -> SyncRequest:
    return SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER, **kw)


def ours(obj: Obj, owner: ArgoTracking = OWNER) -> Obj:
    return owner.mark({**obj, "metadata": {**obj["metadata"], "namespace": "shop"}})


def applied(cluster: Cluster) -> list[str]:
    return [name for verb, _, name in cluster.writes if verb == "apply"]


async def test_new_objects_are_validated_from_the_cache_without_a_get() -> None:
    cluster = Cluster()
    world = World(cluster)
    result = await world.sync(request(configmap("config", 0), deployment("web", 0)))
    assert result.phase == "Succeeded", result.message
    assert cluster.gets == []


async def test_objects_the_cache_holds_current_are_validated_without_a_get() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.gate_open = True
    desired = (configmap("config", 0), deployment("web", 0))
    assert (await world.sync(request(*desired))).phase == "Succeeded"
    world.step()  # the cache catches up with what was applied
    cluster.gets.clear()
    result = await world.sync(request(*desired))
    assert result.phase == "Succeeded", result.message
    assert cluster.gets == []


async def test_an_object_of_another_owner_the_cache_does_not_hold_yet_is_refused() -> None:
    cluster = Cluster()
    world = World(cluster)
    cluster.put(ours(configmap("config", 0), OTHER))  # created after the cache last listed
    result = await world.sync(request(configmap("config", 0), configmap("mine", 0)))
    assert result.phase == "Failed"
    assert "Shared resource found" in result.message
    assert "argocd/other" in result.message
    assert applied(cluster) == []  # refused at validation: nothing applied
    assert cluster.gets == [("ConfigMap", "config")]  # only the object the dry run found


async def test_a_cached_view_behind_a_new_mark_of_another_owner_is_read_again() -> None:
    cluster = Cluster()
    world = World(cluster)
    cluster.put(ours(configmap("config", 0)))
    world.step()  # the cache holds it as ours
    cluster.put(ours(configmap("config", 0), OTHER))  # taken over since
    result = await world.sync(request(configmap("config", 0)))
    assert result.phase == "Failed"
    assert "Shared resource found" in result.message
    assert applied(cluster) == []


async def test_a_refusal_read_from_a_lagging_cache_is_checked_with_the_server() -> None:
    cluster = Cluster()
    world = World(cluster)
    cluster.put(ours(configmap("config", 0), OTHER))
    world.step()  # the cache still shows the other owner's object...
    del cluster.objects[ResourceKey("", "ConfigMap", "shop", "config")]  # ...which is gone
    result = await world.sync(request(configmap("config", 0)))
    assert result.phase == "Succeeded", result.message
    assert applied(cluster) == ["config"]


async def test_skip_dry_run_reads_the_server_since_no_dry_run_confirms_the_cache() -> None:
    cluster = Cluster()
    world = World(cluster)
    cluster.put(ours(configmap("config", 0), OTHER))
    skipped = copy.deepcopy(configmap("config", 0))
    skipped["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] = (
        "SkipDryRunOnMissingResource=true"
    )
    result = await world.sync(request(skipped))
    assert result.phase == "Failed"
    assert "Shared resource found" in result.message
    assert applied(cluster) == []


async def test_hooks_are_read_with_a_get() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.gate_open = True
    result = await world.sync(request(hook("PreSync", name="seed"), configmap("config", 0)))
    assert result.phase == "Succeeded", result.message
    assert ("Job", "seed") in cluster.gets


async def test_without_a_cache_every_object_is_read_with_a_get() -> None:
    """The CLI's way: no lookup; the ownership check reads the server."""
    cluster = Cluster()
    result = await run_sync(
        cast(Kube, cluster), request(configmap("config", 0), configmap("more", 0))
    )
    assert result.phase == "Succeeded", result.message
    assert cluster.gets == [("ConfigMap", "config"), ("ConfigMap", "more")]
