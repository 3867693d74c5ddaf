"""run_sync asked to stop (``terminated``): no step starts after the request, a wait ends
at its next pause, and the result is Failed, "Operation terminated", without SyncFail hooks.

The in-memory cluster and world of the resume tests; the request to stop is a flag the
world raises at a chosen moment, as the controller's check of the Application would.
"""

from __future__ import annotations

from typing import cast

from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.sync import SyncRequest, SyncResult, run_sync
from gitsail.sync.engine import TERMINATED_MESSAGE
from tests.unit.sync.test_resume import (
    DESIRED,
    OWNER,
    Cluster,
    World,
    hook,
    waiting_for_web,
)


class Stoppable(World):
    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.stop = False
        self.stop_on_wait = True
        self.asked = 0

    async def terminated(self) -> bool:
        self.asked += 1
        return self.stop

    async def after(self, token: int) -> None:
        if self.stop_on_wait and waiting_for_web(self):
            self.stop = True  # the user clicks Terminate while the Deployment is not ready
        await super().after(token)

    async def run(self, desired: tuple[Obj, ...] = DESIRED) -> SyncResult:
        return await run_sync(
            cast(Kube, self.cluster),
            SyncRequest(destination_namespace="shop", desired=desired, owner=OWNER),
            lookup=self.lookup,
            changes=self,
            checkpoint=self.checkpoint,
            clock=self.clock,
            terminated=self.terminated,
        )


async def test_terminating_during_a_health_wait_starts_no_later_wave() -> None:
    cluster = Cluster()
    world = Stoppable(cluster)
    result = await world.run()
    assert (result.phase, result.message, result.terminated) == (
        "Failed",
        TERMINATED_MESSAGE,
        True,
    )
    assert cluster.applies_of("config") == 1
    assert cluster.applies_of("web") == 1
    assert cluster.applies_of("after") == 0  # wave 2 never started
    # What was done is still reported, and the inventory keeps what was applied.
    synced = {r.key.name for r in result.resources if r.status == "Synced"}
    assert {"config", "web"} <= synced
    assert result.inventory is not None
    assert {e.key.name for e in result.inventory.entries} >= {"config", "web"}


async def test_terminated_before_the_first_wave_applies_nothing() -> None:
    cluster = Cluster()
    world = Stoppable(cluster)
    world.stop = True
    result = await world.run()
    assert result.terminated
    assert result.message == TERMINATED_MESSAGE
    assert [w for w in cluster.writes if w[0] == "apply"] == []
    assert cluster.runs_of("Job") == 0


async def test_a_termination_runs_no_syncfail_hook() -> None:
    cluster = Cluster()
    world = Stoppable(cluster)
    result = await world.run((*DESIRED, hook("SyncFail", name="cleanup")))
    assert result.terminated
    assert not any(name == "cleanup" for _, _, name in cluster.writes)


async def test_not_asked_to_stop_the_sync_runs_to_the_end() -> None:
    cluster = Cluster()
    world = Stoppable(cluster)
    world.gate_open = True
    world.stop_on_wait = False
    result = await world.run()
    assert result.phase == "Succeeded"
    assert not result.terminated
    assert world.asked >= 3  # asked before each wave at least


class StopOnHook(Stoppable):
    async def after(self, token: int) -> None:
        if self.saved and self.saved[-1].message.startswith("waiting for completion of hook"):
            self.stop = True  # Terminate while the PreSync Job runs
        await World.after(self, token)


async def test_a_running_hook_is_deleted_on_termination() -> None:
    cluster = Cluster()
    world = StopOnHook(cluster)
    world.jobs_finish = False  # the migration never ends
    result = await world.run()
    assert result.terminated
    (row,) = [r for r in result.resources if r.hook_type]
    assert (row.hook_type, row.hook_phase, row.message) == ("PreSync", "Failed", "terminated")
    assert row.key not in cluster.objects  # the Job this run created is deleted
    assert cluster.applies_of("config") == 0  # nothing after the hook started
