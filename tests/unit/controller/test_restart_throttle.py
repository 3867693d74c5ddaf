"""A restarted controller does not rewrite unchanged statuses: the write throttle of an app
seen for the first time starts from the ``reconciledAt`` it already carries."""

from __future__ import annotations

import time

from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.model import Obj
from tests.unit.controller.test_status_patch import FakeKube, _application, _Clock, _Engine


def _controller(
    kube: FakeKube, clock: _Clock, wall: float, heartbeat: float = 0.0
) -> AppReconciler:
    async def get_application(_ns: str, _name: str, _fresh: bool) -> Obj:
        return kube.obj

    return AppReconciler(
        _Engine(kube),  # type: ignore[arg-type]
        settings=ReconcileSettings(resync=120, jitter=0, status_heartbeat=heartbeat),
        metrics=Metrics(),
        events=None,  # type: ignore[arg-type]
        get_application=get_application,
        clock=clock,
        wall_clock=lambda: wall,
    )


async def _synced(kube: FakeKube, age: float = 0.0) -> None:
    """The app as a first controller left it ``age`` seconds ago: compared, status
    written."""
    first = _controller(kube, _Clock(), time.time())
    await first.reconcile(kube.obj, frozenset({"startup"}))
    assert len(kube.calls) == 1
    assert kube.obj["status"]["sync"]["status"] == "Synced"
    written = time.gmtime(time.time() - age)
    kube.obj["status"]["reconciledAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", written)


async def test_a_restart_writes_nothing_when_nothing_changed() -> None:
    kube = FakeKube(_application({}))
    await _synced(kube, age=60)
    # A new process (its monotonic clock starts anywhere), a minute later.
    restarted = _controller(kube, _Clock(), time.time())
    assert await restarted.reconcile(kube.obj, frozenset({"startup"})) == 120
    assert len(kube.calls) == 1


async def test_an_unchanged_status_is_never_written_again_without_a_heartbeat() -> None:
    kube = FakeKube(_application({}))
    await _synced(kube, age=240)
    clock = _Clock()
    restarted = _controller(kube, clock, time.time())
    for _ in range(5):
        clock.now += 3600
        await restarted.reconcile(kube.obj, frozenset({"requeue"}))
    assert len(kube.calls) == 1


async def test_a_restart_still_refreshes_a_stale_reconciled_at_with_a_heartbeat() -> None:
    kube = FakeKube(_application({}))
    await _synced(kube, age=240)
    before = kube.obj["status"]["reconciledAt"]
    clock = _Clock()
    # Four minutes after the last write: not yet due; a minute and a half later it is.
    restarted = _controller(kube, clock, time.time(), heartbeat=300)
    await restarted.reconcile(kube.obj, frozenset({"startup"}))
    assert len(kube.calls) == 1
    clock.now += 90
    await restarted.reconcile(kube.obj, frozenset({"requeue"}))
    assert len(kube.calls) == 2
    assert kube.obj["status"]["reconciledAt"] > before


async def test_an_unreadable_or_future_reconciled_at_is_harmless() -> None:
    kube = FakeKube(_application({}))
    await _synced(kube)
    kube.obj["status"]["reconciledAt"] = "not a time"
    restarted = _controller(kube, _Clock(), time.time())
    await restarted.reconcile(kube.obj, frozenset({"startup"}))
    assert len(kube.calls) == 2  # no trusted last write: written, as before this change
    kube.obj["status"]["reconciledAt"] = "2999-01-01T00:00:00Z"  # a clock far ahead of ours
    again = _controller(kube, _Clock(), time.time())
    await again.reconcile(kube.obj, frozenset({"startup"}))
    assert len(kube.calls) == 2  # taken as "just written"
