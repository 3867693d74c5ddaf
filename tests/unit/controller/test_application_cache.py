"""One watch cache of Applications per namespace, shared by webhooks and the leader.

Every replica watches the Applications for webhooks; the leader's Application kind
reconciles from that same cache instead of a second watch holding a second copy of every
Application. Stepping down leaves it to the webhooks. In-memory cluster, no waits.
"""

from __future__ import annotations

from typing import Any

from gitsail.controller.manager import Controller
from tests.unit.controller.test_registry import NS, FakeCluster, controller


class CountingCluster(FakeCluster):
    def __init__(self) -> None:
        super().__init__()
        self.lists: list[str] = []

    async def list_with_version(self, api_version: str, kind: str, *args: Any) -> Any:
        self.lists.append(kind)
        return await super().list_with_version(api_version, kind, *args)


async def lead(ctl: Controller) -> None:
    await ctl._lead()
    await ctl.queue.stop()  # nothing to reconcile here: only the caches are looked at


async def test_the_leader_reconciles_applications_from_the_webhooks_cache() -> None:
    cluster = CountingCluster()
    ctl = controller(cluster)
    await ctl._watch_for_webhooks()
    await lead(ctl)
    try:
        shared = ctl.webhook_app_caches[NS]
        assert ctl.kind_caches[("Application", NS)] is shared
        assert ctl.app_caches == {NS: shared}
        assert cluster.lists.count("Application") == 1  # one list, one watch
        # the leader's pump, and the notifications' (once their runtime has started)
        notifications = ctl.registry["Alert"]
        await notifications.started.wait()  # type: ignore[attr-defined]
        assert len(shared._subscribers) == 2
    finally:
        await ctl._step_down()
    assert shared.running  # the webhooks still read it
    assert shared._subscribers == []  # no queue left filling up for a stopped pump
    await ctl._stop_webhook_watches()
    assert not shared.running


async def test_a_leader_that_starts_first_shares_its_cache_with_the_webhooks() -> None:
    cluster = CountingCluster()
    ctl = controller(cluster)
    await lead(ctl)
    try:
        await ctl._watch_for_webhooks()
        assert ctl.webhook_app_caches[NS] is ctl.kind_caches[("Application", NS)]
        assert cluster.lists.count("Application") == 1
        await ctl._step_down()
        await lead(ctl)  # leading again subscribes to the same cache
        assert ctl.kind_caches[("Application", NS)] is ctl.webhook_app_caches[NS]
        assert cluster.lists.count("Application") == 1
    finally:
        await ctl._step_down()
        await ctl._stop_webhook_watches()
