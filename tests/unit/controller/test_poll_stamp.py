"""A poll of a synced, healthy app reuses its last comparison while nothing the
comparison read has changed (``AppEngine.comparison_stamp``), and compares again as soon
as something did, or after any other reconcile."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.diff import diff_resource
from gitsail.model import Obj
from tests.unit.controller.test_status_patch import FakeKube, _application, _Clock, _Engine

POLL = frozenset({"requeue"})


def _reconciler(kube: FakeKube, engine: _Engine) -> AppReconciler:
    async def get_application(_ns: str, _name: str, _fresh: bool) -> Obj:
        return kube.obj

    return AppReconciler(
        engine,  # type: ignore[arg-type]
        settings=ReconcileSettings(resync=120, jitter=0),
        metrics=Metrics(),
        events=None,  # type: ignore[arg-type]
        get_application=get_application,
        clock=_Clock(),
    )


async def test_a_poll_reuses_the_comparison_while_its_stamp_is_the_same() -> None:
    kube = FakeKube(_application({}))
    engine = _Engine(kube)
    reconciler = _reconciler(kube, engine)
    await reconciler.reconcile(kube.obj, frozenset({"startup"}))
    assert engine.compares == 1
    await reconciler.reconcile(kube.obj, POLL)  # the first poll takes the stamp
    assert engine.compares == 2
    for _ in range(3):
        assert await reconciler.reconcile(kube.obj, POLL) == 120
    assert engine.compares == 2
    assert len(kube.calls) == 1  # and writes nothing
    engine.stamp = ("a new commit",)
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 3
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 3


async def test_any_other_reconcile_clears_the_stamp_and_a_stampless_app_is_compared() -> None:
    kube = FakeKube(_application({}))
    engine = _Engine(kube)
    reconciler = _reconciler(kube, engine)
    for _ in range(3):  # compared, compared with the stamp taken, reused
        await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 2
    await reconciler.reconcile(kube.obj, frozenset({"changed:apps/Deployment"}))
    assert engine.compares == 3
    await reconciler.reconcile(kube.obj, POLL)  # taken again, with a comparison
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 4
    engine.stamp = None  # cannot tell: always compared
    await reconciler.reconcile(kube.obj, POLL)
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 6


async def test_an_app_out_of_sync_is_compared_on_every_poll() -> None:
    kube = FakeKube(_application({}))
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    engine = _Engine(kube, diffs=(diff_resource(desired, None),))
    reconciler = _reconciler(kube, engine)
    for _ in range(3):
        await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 3


async def test_an_idle_poll_does_not_rebuild_a_status_it_found_unchanged_for_the_same_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gitsail.controller import reconciler as module

    built: list[int] = []
    real = module.resources_status

    def counted(comparison: Any) -> Any:
        built.append(1)
        return real(comparison)

    monkeypatch.setattr(module, "resources_status", counted)
    kube = FakeKube(_application({}))
    engine = _Engine(kube)
    reconciler = _reconciler(kube, engine)
    await reconciler.reconcile(kube.obj, frozenset({"startup"}))  # compared, status written
    await reconciler.reconcile(kube.obj, POLL)  # the stamp taken; the status found unchanged
    await reconciler.reconcile(kube.obj, POLL)  # the kept comparison found unchanged too
    settled = len(built)
    for _ in range(3):
        assert await reconciler.reconcile(kube.obj, POLL) == 120
    assert len(built) == settled  # same Application object, same comparison: not rebuilt
    memory = reconciler.memory[("argocd", "a")]
    assert memory.quiet is not None
    assert memory.quiet[1] is memory.comparison  # the lean kept one, not a full comparison
    assert len(kube.calls) == 1
    # Someone changes the status by hand: a new object, looked at again, and put right.
    kube.obj = {**kube.obj, "status": {**kube.obj["status"], "health": {"status": "Degraded"}}}
    await reconciler.reconcile(kube.obj, POLL)
    assert len(kube.calls) == 2
    assert kube.obj["status"]["health"]["status"] == "Healthy"
