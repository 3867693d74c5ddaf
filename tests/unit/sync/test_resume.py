"""run_sync waiting on watch events, recording its progress, and resuming from it.

An in-memory cluster (``MemoryCluster`` of the ownership tests, with Jobs and Deployments)
stands in for the API server, a dict lagging behind it for the watch cache, and a fake
``Changes`` for the watch events: each ``after()`` is one event, in which the "world" moves
(kwok-like: Jobs complete, Deployments become available once their gate is open) and a
fake clock advances. Nothing sleeps; a crash is an exception raised from inside a wait.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import pytest

from gitsail.kube import Kube, NotFoundKind
from gitsail.kube.discovery import ResourceInfo
from gitsail.model import Obj, ResourceKey, split_api_version
from gitsail.sync import ArgoTracking, SyncRequest, SyncResult, run_sync
from gitsail.sync.engine import OperationProgress
from gitsail.sync.plan import Phase
from gitsail.sync.progress import ResourceResult
from tests.unit.sync.test_engine_ownership import MemoryCluster

OWNER = ArgoTracking("argocd_shop", display="argocd/shop")
KINDS = {"ConfigMap": "", "Job": "batch", "Deployment": "apps"}


class Crash(Exception):
    """The controller process dies (SIGKILL) in the middle of a wait."""


class Cluster(MemoryCluster):
    """Jobs and Deployments too; counts writes and GETs; Deployments get a generation."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.gets: list[tuple[str, str]] = []
        self.generated = 0

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        if kind not in KINDS:
            raise NotFoundKind(api_version, kind)
        group, version = split_api_version(api_version)
        return ResourceInfo(
            group, version, kind, kind.lower() + "s", True, frozenset(), frozenset()
        )

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        self.gets.append((kind, name))
        return await super().get(api_version, kind, name, namespace)

    def put(self, obj: Obj) -> Obj:
        old = self.objects.get(ResourceKey.of(obj))
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Deployment":
            generation = int((old or {}).get("metadata", {}).get("generation", 0)) + 1
            obj["metadata"]["generation"] = generation
            obj.setdefault("status", {})
            if old is not None and "status" in old and "status" not in obj:
                obj["status"] = old["status"]
        return super().put(obj)

    async def apply(self, obj: Obj, *, dry_run: bool = False, **kw: Any) -> Obj:
        if dry_run:
            # As the server answers a dry run: the stored object's uid and resourceVersion,
            # none for an object that does not exist yet.
            predicted = copy.deepcopy(obj)
            old = self.objects.get(ResourceKey.of(obj))
            if old is not None:
                for field in ("uid", "resourceVersion"):
                    predicted["metadata"][field] = old["metadata"][field]
            return predicted
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"]))
        old = self.objects.get(ResourceKey.of(obj))
        if old is not None and "status" in old:  # apply does not touch status
            obj = {**obj, "status": old["status"]}
        return await super().apply(obj, **kw)

    async def create(self, obj: Obj, *, dry_run: bool = False, **kw: Any) -> Obj:
        if dry_run:
            return copy.deepcopy(obj)
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            self.generated += 1
            meta["name"] = f"{meta.pop('generateName')}{self.generated:05d}"
        self.writes.append(("create", obj["kind"], meta["name"]))
        return await super().create(obj, **kw)

    def runs_of(self, kind: str) -> int:
        """How many objects of ``kind`` were created (each hook run creates one)."""
        return sum(1 for verb, k, _ in self.writes if k == kind and verb == "create")

    def applies_of(self, name: str) -> int:
        return sum(1 for verb, _, n in self.writes if n == name and verb == "apply")


class World:
    """Watch cache, watch events, clock and what the cluster's controllers do."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cache: dict[ResourceKey, Obj] = {}
        self.events = 0
        self.now = 1000.0
        self.gate_open = False  # the node label the Deployment's pods need
        self.jobs_finish = True
        self.crash_when: Callable[[World], bool] = lambda _w: False
        self.saved: list[OperationProgress] = []

    # lookup, Changes, checkpoint and clock seams of run_sync
    async def lookup(self, api_version: str, kind: str, name: str, ns: str | None) -> Obj | None:
        group, _ = split_api_version(api_version)
        found = self.cache.get(ResourceKey(group, kind, ns or "", name))
        return copy.deepcopy(found) if found is not None else None

    def seen(self) -> int:
        return self.events

    async def after(self, token: int) -> None:
        assert self.events == token, "a change since the token was taken must not be waited for"
        if self.crash_when(self):
            raise Crash
        self.step()

    async def checkpoint(self, progress: OperationProgress) -> None:
        self.saved.append(progress)

    def clock(self) -> float:
        return self.now

    def step(self) -> None:
        """One watch event: the controllers act, the cache catches up, time passes."""
        for key, obj in list(self.cluster.objects.items()):
            if key.kind == "Job" and self.jobs_finish:
                obj["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
            if key.kind == "Deployment" and self.gate_open:
                replicas = obj["spec"].get("replicas", 1)
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                }
        self.cache = copy.deepcopy(self.cluster.objects)
        self.events += 1
        self.now += 1.0

    async def sync(self, request: SyncRequest) -> SyncResult:
        return await run_sync(
            cast(Kube, self.cluster),
            request,
            lookup=self.lookup,
            changes=self,
            checkpoint=self.checkpoint,
            clock=self.clock,
        )


def configmap(name: str, wave: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": str(wave)}},
        "data": {"k": name},
    }


def deployment(name: str, wave: int) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"argocd.argoproj.io/sync-wave": str(wave)}},
        "spec": {"replicas": 1, "template": {"spec": {"nodeSelector": {"gate": "open"}}}},
    }


def hook(phase: str, *, generate: str = "", name: str = "", policy: str = "") -> Obj:
    meta: dict[str, Any] = {"annotations": {"argocd.argoproj.io/hook": phase}}
    if generate:
        meta["generateName"] = generate
    else:
        meta["name"] = name
    if policy:
        meta["annotations"]["argocd.argoproj.io/hook-delete-policy"] = policy
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}


DESIRED = (
    hook("PreSync", generate="migrate-"),
    configmap("config", 0),
    deployment("web", 1),
    configmap("after", 2),
)


def request(resume: OperationProgress | None = None, **kw: Any) -> SyncRequest:
    return SyncRequest(
        destination_namespace="shop", desired=DESIRED, owner=OWNER, resume=resume, **kw
    )


def waiting_for_web(world: World) -> bool:
    return bool(world.saved) and world.saved[-1].message.startswith(
        "waiting for healthy state of apps/Deployment/web"
    )


async def crash_while_waiting_for_web(world: World) -> OperationProgress:
    """Run until the operation waits for the gated Deployment, then "kill" it."""
    world.crash_when = waiting_for_web
    with pytest.raises(Crash):
        await world.sync(request())
    world.crash_when = lambda _w: False
    # What the controller reads back from operationState after the restart.
    progress = OperationProgress.from_state(world.saved[-1].to_state())
    assert progress is not None
    return progress


def hook_rows(result: SyncResult) -> list[ResourceResult]:
    return [r for r in result.resources if r.hook_type]


async def test_a_presync_hook_that_succeeded_is_not_run_again_after_a_restart() -> None:
    cluster = Cluster()
    world = World(cluster)
    progress = await crash_while_waiting_for_web(world)
    assert (progress.phase, progress.wave) == (Phase.Sync, 1)
    assert cluster.runs_of("Job") == 1

    world.gate_open = True
    world.saved.clear()
    result = await world.sync(request(progress))

    assert result.phase == "Succeeded", result.message
    assert cluster.runs_of("Job") == 1  # the hook ran exactly once
    # The recorded step only moves forward: nothing of PreSync is recorded again, and the
    # last wave (no hook, nothing waits on it) is not recorded at all.
    assert [(str(p.phase), p.wave) for p in world.saved] == [("Sync", 1)]
    (row,) = hook_rows(result)
    assert (row.hook_type, row.hook_phase, row.status) == ("PreSync", "Succeeded", "Synced")
    assert row.uid == cluster.objects[row.key]["metadata"]["uid"]


async def test_without_the_record_a_second_run_runs_the_hook_again() -> None:
    """What happened before resumable operations: the same operation, started over."""
    cluster = Cluster()
    world = World(cluster)
    await crash_while_waiting_for_web(world)
    world.gate_open = True
    result = await world.sync(request())
    assert result.phase == "Succeeded", result.message
    assert cluster.runs_of("Job") == 2


async def test_a_resume_carries_finished_waves_over_and_applies_the_current_wave_again() -> None:
    cluster = Cluster()
    world = World(cluster)
    progress = await crash_while_waiting_for_web(world)
    world.gate_open = True
    result = await world.sync(request(progress))

    assert result.phase == "Succeeded", result.message
    assert cluster.applies_of("config") == 1  # wave 0 had finished: not applied again
    assert cluster.applies_of("web") == 2  # wave 1 was running: applied again, waited on
    assert cluster.applies_of("after") == 1
    synced = {r.key.name: r.status for r in result.resources if not r.hook_type}
    assert synced == {"config": "Synced", "web": "Synced", "after": "Synced"}


async def test_a_hook_still_running_at_the_restart_is_waited_on_not_recreated() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.jobs_finish = False
    world.crash_when = lambda w: (
        bool(w.saved)
        and w.saved[-1].message.startswith("waiting for completion of hook batch/Job/migrate-")
    )
    with pytest.raises(Crash):
        await world.sync(request())
    progress = OperationProgress.from_state(world.saved[-1].to_state())
    assert progress is not None
    assert progress.phase is Phase.PreSync
    (running,) = progress.results
    assert running.hook_phase == "Running"
    assert running.uid

    world.crash_when = lambda _w: False
    world.jobs_finish = world.gate_open = True
    result = await world.sync(request(progress))

    assert result.phase == "Succeeded", result.message
    assert cluster.runs_of("Job") == 1
    (row,) = hook_rows(result)
    assert (row.key.name, row.uid, row.hook_phase) == (
        running.key.name,
        running.uid,
        "Succeeded",
    )


async def test_a_running_hook_whose_object_was_replaced_runs_again() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.gate_open = True
    stale = ResourceResult(
        ResourceKey("batch", "Job", "shop", "migrate-00042"),
        "v1",
        "Synced",
        "hook started",
        sync_phase="PreSync",
        hook_type="PreSync",
        hook_phase="Running",
        uid="uid-of-an-object-long-gone",
    )
    progress = OperationProgress(Phase.PreSync, 0, "waiting", (stale,))
    result = await world.sync(request(progress))
    assert result.phase == "Succeeded", result.message
    assert cluster.runs_of("Job") == 1
    (row,) = hook_rows(result)
    assert row.key.name != "migrate-00042"


async def test_an_operation_that_had_failed_only_finishes_its_sync_fail_hooks() -> None:
    cluster = Cluster()
    world = World(cluster)
    failed_web = ResourceResult(
        ResourceKey("apps", "Deployment", "shop", "web"), "v1", "Synced", "applied"
    )
    progress = OperationProgress(
        Phase.SyncFail, 0, "apps/Deployment/shop/web is Degraded: crash loop", (failed_web,)
    )
    desired = (*DESIRED, hook("SyncFail", name="notify"))
    result = await world.sync(
        SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER, resume=progress)
    )
    assert result.phase == "Failed"
    assert result.message == "apps/Deployment/shop/web is Degraded: crash loop"
    assert [w for w in cluster.writes] == [("apply", "Job", "notify")]
    assert failed_web in result.resources


async def test_progress_is_written_per_step_and_hook_not_per_poll() -> None:
    cluster = Cluster()
    world = World(cluster)
    polls = 0

    def open_after_five_events(w: World) -> bool:
        nonlocal polls
        if waiting_for_web(w):
            polls += 1
            w.gate_open = polls >= 5
        return False

    world.crash_when = open_after_five_events
    result = await world.sync(request())

    assert result.phase == "Succeeded", result.message
    assert polls >= 5
    steps = [(str(p.phase), p.wave, p.message.split("-0")[0]) for p in world.saved]
    # Where a resume differs from a new run: a hook started and ended, a wait began (wave 0
    # is healthy at once: no wait, no record). A step that merely starts is not recorded.
    assert steps == [
        ("PreSync", 0, "waiting for completion of hook batch/Job/migrate"),
        ("PreSync", 0, "PreSync hook batch/Job/migrate"),
        ("Sync", 1, "waiting for healthy state of apps/Deployment/web"),
    ]


async def test_health_waits_read_the_watch_cache_and_check_a_lagging_view_once() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.gate_open = True
    # A previous rollout of web, fully available, is what the cache holds: after the new
    # apply (generation 2) it must not count as healthy.
    await world.sync(request())
    world.gate_open = False
    cluster.gets.clear()
    changed = (
        hook("PreSync", generate="migrate-"),
        configmap("config", 0),
        {**deployment("web", 1), "spec": {**deployment("web", 1)["spec"], "replicas": 2}},
        configmap("after", 2),
    )
    polls = 0

    def open_after_three_events(w: World) -> bool:
        nonlocal polls
        if waiting_for_web(w):
            polls += 1
            w.gate_open = polls >= 3
        return False

    world.crash_when = open_after_three_events
    result = await world.sync(
        SyncRequest(destination_namespace="shop", desired=changed, owner=OWNER)
    )

    assert result.phase == "Succeeded", result.message
    assert polls == 3  # "after" waited for the new generation of web to be available
    web_gets = [g for g in cluster.gets if g == ("Deployment", "web")]
    # Validation read the cache (current: the dry run's resourceVersion matched); one GET
    # when the cache was behind the new generation; the three waits after it read the
    # cache only.
    assert len(web_gets) == 1


async def test_a_health_wait_times_out_on_the_operation_clock() -> None:
    cluster = Cluster()
    world = World(cluster)
    result = await world.sync(request(wave_timeout=30))
    assert result.phase == "Failed"
    assert "timed out waiting for healthy state of apps/Deployment shop/web" in result.message
    assert 30 <= world.now - 1000.0 <= 40


async def test_without_watch_events_waits_read_with_get() -> None:
    """The CLI's way: no lookup, no changes; every read is a GET (poll_interval 0 here)."""
    cluster = Cluster()
    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "shop"},
        }
    )
    gets_before = len(cluster.gets)
    result = await run_sync(
        cast(Kube, cluster),
        SyncRequest(
            destination_namespace="shop",
            desired=(configmap("config", 0), configmap("after", 1)),
            owner=OWNER,
            poll_interval=0,
        ),
    )
    assert result.phase == "Succeeded", result.message
    assert ("ConfigMap", "config") in cluster.gets[gets_before:]


def test_progress_round_trips_through_operation_state() -> None:
    row = ResourceResult(
        ResourceKey("batch", "Job", "shop", "migrate-1"),
        "v1",
        "Synced",
        "done",
        sync_phase="PreSync",
        hook_type="PreSync",
        hook_phase="Succeeded",
        uid="u-1",
    )
    progress = OperationProgress(
        Phase.Sync, 3, "waiting for healthy state of apps/Deployment/x", (row,)
    )
    state = progress.to_state()
    assert state["phase"] == "Running"
    assert state["progress"] == {"syncPhase": "Sync", "wave": 3}
    assert state["syncResult"]["resources"][0]["hookPhase"] == "Succeeded"
    assert state["syncResult"]["resources"][0]["uid"] == "u-1"
    assert OperationProgress.from_state(state) == progress


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"progress": "x"},
        {"progress": {"syncPhase": "Later", "wave": 0}},
        {"progress": {"syncPhase": "Sync", "wave": "w"}},
    ],
)
def test_no_progress_is_read_from_a_state_without_a_valid_step(state: dict[str, Any]) -> None:
    assert OperationProgress.from_state(state) is None


async def test_a_named_hook_waits_for_its_previous_run_to_leave_the_cache() -> None:
    cluster = Cluster()
    world = World(cluster)
    world.gate_open = True
    desired = (hook("PreSync", name="seed"), configmap("config", 0))
    req = SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER)
    assert (await world.sync(req)).phase == "Succeeded"
    seed = ResourceKey("batch", "Job", "shop", "seed")
    first_uid = cluster.objects[seed]["metadata"]["uid"]
    cached_at_apply: list[Obj | None] = []
    apply = cluster.apply

    async def watched_apply(obj: Obj, **kw: Any) -> Obj:
        if obj["kind"] == "Job" and not kw.get("dry_run"):
            cached_at_apply.append(world.cache.get(seed))
        return await apply(obj, **kw)

    cluster.apply = watched_apply  # type: ignore[method-assign]
    result = await world.sync(req)  # BeforeHookCreation: the first run goes first

    assert result.phase == "Succeeded", result.message
    assert seed in cluster.deleted
    assert cluster.objects[seed]["metadata"]["uid"] != first_uid
    assert cached_at_apply == [None]  # created once the cache, too, saw the deletion


async def test_a_sync_without_hooks_in_one_wave_writes_no_checkpoint() -> None:
    """Nothing waits and no hook runs: a resume would apply it all again, as a new run does;
    the final status carries the result (one status write fewer per sync)."""
    cluster = Cluster()
    world = World(cluster)
    desired = (configmap("config", 0), deployment("web", 0), configmap("more", 0))
    result = await world.sync(
        SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER)
    )
    assert result.phase == "Succeeded", result.message
    assert [r.status for r in result.resources] == ["Synced"] * 3
    assert world.saved == []


async def test_a_restart_before_any_checkpoint_runs_the_operation_again_whole() -> None:
    """A crash in a wave's wait before anything was recorded: the rerun applies every wave
    (nothing is skipped on the strength of a step that was never recorded)."""
    cluster = Cluster()
    world = World(cluster)
    desired = (configmap("config", 0), deployment("web", 1), configmap("after", 2))
    req = SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER)
    world.crash_when = waiting_for_web
    with pytest.raises(Crash):
        await world.sync(req)
    # Wave 0 was healthy at once: the only record is the wait for web.
    assert [(str(p.phase), p.wave) for p in world.saved] == [("Sync", 1)]
    world.crash_when = lambda _w: False
    world.gate_open = True
    world.saved.clear()
    result = await world.sync(req)  # no resume: as if the record had not been written
    assert result.phase == "Succeeded", result.message
    assert (cluster.applies_of("config"), cluster.applies_of("web")) == (2, 2)
    assert cluster.applies_of("after") == 1
