"""A poll of a synced, healthy app reuses its last comparison while nothing the
comparison read has changed (``AppEngine.comparison_stamp``), and compares again as soon
as something did, or after any other reconcile."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gitsail.app.engine import Comparison
from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.diff import diff_resource
from gitsail.model import Obj, ResourceKey
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
    # The first comparison (like the one after a sync) is stamped around: Git and the
    # settings before it, the objects' versions after it.
    await reconciler.reconcile(kube.obj, frozenset({"startup"}))
    assert (engine.compares, engine.heads) == (1, 1)
    for _ in range(3):
        assert await reconciler.reconcile(kube.obj, POLL) == 120
    assert engine.compares == 1
    assert len(kube.calls) == 1  # and writes nothing
    engine.stamp = ("a new commit",)
    await reconciler.reconcile(kube.obj, POLL)  # compared, with the stamp taken before
    assert engine.compares == 2
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 2


async def test_a_comparison_of_another_commit_than_its_stamp_head_is_not_stamped() -> None:
    kube = FakeKube(_application({}))
    engine = _Engine(kube)
    engine.stamp = ("b4dc0de",)  # Git moved between the stamp's head and the comparison
    reconciler = _reconciler(kube, engine)
    await reconciler.reconcile(kube.obj, frozenset({"startup"}))
    assert reconciler.memory[("argocd", "a")].poll_stamp is None
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 2


async def test_any_other_reconcile_clears_the_stamp_and_a_stampless_app_is_compared() -> None:
    kube = FakeKube(_application({}))
    engine = _Engine(kube)
    reconciler = _reconciler(kube, engine)
    for _ in range(3):  # compared (and stamped around), reused, reused
        await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 1
    # A managed object changed: compared against the pinned commit, no stamp taken.
    await reconciler.reconcile(kube.obj, frozenset({"changed:apps/Deployment"}))
    assert (engine.compares, engine.heads) == (2, 1)
    assert reconciler.memory[("argocd", "a")].poll_stamp is None
    await reconciler.reconcile(kube.obj, POLL)  # taken again, with a comparison
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 3
    engine.stamp = None  # cannot tell: always compared
    await reconciler.reconcile(kube.obj, POLL)
    await reconciler.reconcile(kube.obj, POLL)
    assert engine.compares == 5


async def test_a_health_only_change_moves_the_stamp_to_the_versions_read_again() -> None:
    kube = FakeKube(_application({}))
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    key = ResourceKey("apps", "Deployment", "default", "d")

    class _Reassessing(_Engine):
        async def reassess_health(self, last: Comparison, app: Any) -> Comparison:
            read = {**live, "metadata": {**live["metadata"], "resourceVersion": "8"}}
            return replace(last, app=app, live={key: read})

    engine = _Reassessing(kube)
    head = ("c0ffee", "digest", "settings", "project", "mapper", "inventory")  # STAMP_HEAD
    engine.stamp = (*head, ("Deployment", "default", "d", "7"), ("Service", "default", "s", "3"))
    reconciler = _reconciler(kube, engine)
    await reconciler.reconcile(kube.obj, frozenset({"startup"}))
    memory = reconciler.memory[("argocd", "a")]
    assert memory.poll_stamp == engine.stamp
    # Its status moved (the rollout progressed): health assessed again, stamp moved along.
    await reconciler.reconcile(kube.obj, frozenset({"health:apps/Deployment/d"}))
    assert engine.compares == 1
    # (the Service was not read again: it keeps its version)
    assert memory.poll_stamp == (
        *head,
        ("Deployment", "default", "d", "8"),
        ("Service", "default", "s", "3"),
    )


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
