"""Dry-run answers already known are not asked for again (``gitsail.sync.predictions``).

The comparison and the sync's validation both dry-run an apply before writing; after a sync,
the object the apply returned is the answer to the next dry run of the same manifest. The
fakes are the resume tests' in-memory cluster and watch cache, counting the dry runs.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from gitsail.kube import Kube
from gitsail.model import Obj, ResourceKey
from gitsail.sync import SyncRequest, run_sync
from gitsail.sync.predictions import Predictions, applies_as_is, live_version
from tests.unit.sync.test_resume import OWNER, Cluster, World, configmap, deployment


class Counting(Cluster):
    def __init__(self) -> None:
        super().__init__()
        self.dry_runs: list[str] = []

    async def apply(self, obj: Obj, *, dry_run: bool = False, **kw: Any) -> Obj:
        if dry_run:
            self.dry_runs.append(obj["metadata"]["name"])
        return await super().apply(obj, dry_run=dry_run, **kw)


def request(*desired: Obj) -> SyncRequest:
    return SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER)


async def sync(world: World, predictions: Predictions, *desired: Obj) -> str:
    result = await run_sync(
        cast(Kube, world.cluster),
        request(*desired),
        lookup=world.lookup,
        changes=world,
        checkpoint=world.checkpoint,
        clock=world.clock,
        predictions=predictions,
    )
    return result.phase


def live(name: str, **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}}


# -- the memo ---------------------------------------------------------------------------


def test_nothing_is_known_about_a_missing_object() -> None:
    predictions = Predictions()
    predictions.put(configmap("a", 0), None, configmap("a", 0), field_manager="m")
    assert len(predictions) == 0
    assert predictions.get(configmap("a", 0), None, field_manager="m") is None


def test_an_answer_is_reused_for_the_same_manifest_live_version_manager_and_validation() -> None:
    predictions = Predictions()
    current = live("a", resourceVersion="7")
    answer = {**configmap("a", 0), "status": "answered"}
    predictions.put(configmap("a", 0), current, answer, field_manager="m")
    assert predictions.get(configmap("a", 0), current, field_manager="m") == answer
    assert (
        predictions.get(configmap("a", 0), live("a", resourceVersion="8"), field_manager="m")
        is None
    )
    assert predictions.get(configmap("b", 0), current, field_manager="m") is None
    assert predictions.get(configmap("a", 0), current, field_manager="other") is None
    assert (
        predictions.get(configmap("a", 0), current, field_manager="m", validation="Ignore") is None
    )


def test_a_status_write_keeps_the_answer_of_a_kind_with_a_generation() -> None:
    before = live("d", generation=3, resourceVersion="10", labels={"a": "1"})
    status_written = {**before, "metadata": {**before["metadata"], "resourceVersion": "11"}}
    relabelled = {**before, "metadata": {**before["metadata"], "labels": {"a": "2"}}}
    assert live_version(before) == live_version(status_written)
    assert live_version(before) != live_version(relabelled)


def test_one_answer_is_kept_per_object_the_latest() -> None:
    """What is kept is bounded by the objects, not by how often they changed."""
    predictions = Predictions()
    for number in range(5):
        current = live("a", resourceVersion=str(number))
        predictions.put(configmap("a", number), current, current, field_manager="m")
    assert len(predictions) == 1
    latest = live("a", resourceVersion="4")
    assert predictions.get(configmap("a", 4), latest, field_manager="m") == latest
    earlier = live("a", resourceVersion="3")
    assert predictions.get(configmap("a", 3), earlier, field_manager="m") is None
    predictions.put(configmap("a", 4), latest, latest, field_manager="other")
    assert len(predictions) == 2  # another manager's answer is its own


def test_a_full_memo_forgets_everything_and_starts_again() -> None:
    predictions = Predictions(limit=2)
    for name in ("a", "b", "c"):
        current = live(name, resourceVersion="1")
        predictions.put(configmap(name, 0), current, current, field_manager="m")
    assert len(predictions) == 1
    assert predictions.get(configmap("c", 0), live("c", resourceVersion="1"), field_manager="m")


# -- in a sync --------------------------------------------------------------------------


async def test_creates_are_dry_run_and_a_repeated_sync_of_applied_objects_is_not() -> None:
    cluster = Counting()
    world = World(cluster)
    world.gate_open = True
    predictions = Predictions()
    desired = (configmap("config", 0), deployment("web", 0))
    assert await sync(world, predictions, *desired) == "Succeeded"
    assert sorted(cluster.dry_runs) == ["config", "web"]  # a create is validated
    world.step()  # the cache catches up (the Deployment's status was written)
    cluster.dry_runs.clear()
    assert await sync(world, predictions, *desired) == "Succeeded"
    assert cluster.dry_runs == []  # the applies answered them
    assert cluster.applies_of("config") == 2  # still applied: only the dry run is known


async def test_an_object_changed_by_someone_else_is_dry_run_again() -> None:
    cluster = Counting()
    world = World(cluster)
    predictions = Predictions()
    assert await sync(world, predictions, configmap("config", 0)) == "Succeeded"
    edited = copy.deepcopy(cluster.objects[ResourceKey("", "ConfigMap", "shop", "config")])
    edited["data"] = {"k": "edited"}
    cluster.put(edited)  # a new resourceVersion
    world.step()
    cluster.dry_runs.clear()
    assert await sync(world, predictions, configmap("config", 0)) == "Succeeded"
    assert cluster.dry_runs == ["config"]


async def test_a_changed_manifest_is_dry_run_again() -> None:
    cluster = Counting()
    world = World(cluster)
    predictions = Predictions()
    assert await sync(world, predictions, configmap("config", 0)) == "Succeeded"
    world.step()
    cluster.dry_runs.clear()
    changed = configmap("config", 0)
    changed["data"] = {"k": "new"}
    assert await sync(world, predictions, changed) == "Succeeded"
    assert cluster.dry_runs == ["config"]


# -- applies_as_is: answers that need no server --------------------------------------------

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "shop"}},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


def live_service(**spec: Any) -> Obj:
    """SERVICE as the apiserver stores it after ``applier`` applied it (recorded shape)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"team": "shop"},
            "resourceVersion": "222",
            "managedFields": [
                {
                    "manager": "applier",
                    "operation": "Apply",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:team": {}}},
                        "f:spec": {
                            "f:ports": {
                                'k:{"port":80,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:port": {},
                                    "f:targetPort": {},
                                }
                            },
                            "f:selector": {},
                        },
                    },
                }
            ],
        },
        "spec": {
            "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"},
            "clusterIP": "10.96.62.176",
            "type": "ClusterIP",
            **spec,
        },
        "status": {"loadBalancer": {}},
    }


def test_a_manifest_applied_unchanged_onto_an_unchanged_object_applies_as_is() -> None:
    assert applies_as_is(SERVICE, live_service(), field_manager="applier")


def test_no_answer_without_this_manager_s_apply_of_this_api_version() -> None:
    live = live_service()
    assert not applies_as_is(SERVICE, live, field_manager="other")
    assert not applies_as_is(SERVICE, None, field_manager="applier")
    moved = copy.deepcopy(live)
    moved["metadata"]["managedFields"][0]["apiVersion"] = "v2"
    assert not applies_as_is(SERVICE, moved, field_manager="applier")
    twice = copy.deepcopy(live)
    twice["metadata"]["managedFields"].append(copy.deepcopy(live["metadata"]["managedFields"][0]))
    assert not applies_as_is(SERVICE, twice, field_manager="applier")
    other_type = copy.deepcopy(live)
    other_type["metadata"]["managedFields"][0]["fieldsType"] = "FieldsV2"
    assert not applies_as_is(SERVICE, other_type, field_manager="applier")


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["spec"]["ports"][0].update(targetPort=9090),  # a value differs
        lambda m: m["spec"]["ports"][0].update(targetPort="8080"),  # same text, other type
        lambda m: m["spec"]["ports"].append({"port": 443}),  # an item more
        lambda m: m["metadata"]["labels"].update(tier=None),  # a null: not judged
        lambda m: m["metadata"].pop("labels"),  # an owned field released: removed
        lambda m: m["spec"].pop("ports"),  # an owned list released
        lambda m: m["spec"].update(sessionAffinity="ClientIP"),  # a field live lacks
    ],
)
def test_any_change_an_apply_could_make_is_left_to_the_server(change: Any) -> None:
    manifest = copy.deepcopy(SERVICE)
    change(manifest)
    assert not applies_as_is(manifest, live_service(), field_manager="applier")


def test_an_item_someone_else_added_to_a_list_is_left_to_the_server() -> None:
    live = live_service()
    live["spec"]["ports"].append({"protocol": "TCP", "port": 443, "targetPort": 8443})
    assert not applies_as_is(SERVICE, live, field_manager="applier")


def test_an_owned_item_missing_from_live_is_left_to_the_server() -> None:
    live = live_service()
    live["spec"]["ports"][0]["protocol"] = "UDP"  # the owned key names no item now
    assert not applies_as_is(SERVICE, live, field_manager="applier")


def test_an_answer_that_applies_as_is_gives_is_not_kept_twice() -> None:
    """The watch cache holds the object already: the memo holds no second copy."""
    predictions = Predictions()
    live = live_service()
    predictions.applied(SERVICE, live, field_manager="applier")
    assert len(predictions) == 0
    changed = copy.deepcopy(SERVICE)
    changed["spec"]["ports"][0]["targetPort"] = 9090
    predictions.put(changed, live, {"answer": 1}, field_manager="applier")
    assert len(predictions) == 1
    predictions.applied(SERVICE, live, field_manager="applier")  # applied as it stands now
    assert len(predictions) == 0


def test_an_atomic_value_must_be_exactly_what_the_manifest_sets() -> None:
    """``f:selector: {}`` owns the selector whole: applied, a narrower one replaces it."""
    live = live_service()
    live["spec"]["selector"] = {"app": "web", "tier": "front"}
    assert not applies_as_is(SERVICE, live, field_manager="applier")


def test_a_map_the_manager_does_not_own_is_left_to_the_server() -> None:
    live = live_service(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    manifest = copy.deepcopy(SERVICE)
    manifest["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    assert not applies_as_is(manifest, live, field_manager="applier")


def test_metadata_without_owned_fields_is_judged_by_its_name() -> None:
    live = live_service()
    del live["metadata"]["labels"]
    fields = live["metadata"]["managedFields"][0]["fieldsV1"]
    del fields["f:metadata"]
    manifest = copy.deepcopy(SERVICE)
    del manifest["metadata"]["labels"]
    assert applies_as_is(manifest, live, field_manager="applier")
    manifest["metadata"]["name"] = "other"
    assert not applies_as_is(manifest, live, field_manager="applier")
