"""One status write per reconcile: the collector, and the Argo reconciler that uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import Comparison
from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.controller.registry import KindAPI
from gitsail.controller.status_patch import StatusPatch, apply_merge_patch, compose_merge_patches
from gitsail.diff import ResourceDiff
from gitsail.kinds.argo_application import App
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered

API = KindAPI("example.dev/v1", "Widget")


class FakeKube:
    """Records merge patches and applies them to the one object it holds."""

    def __init__(self, obj: Obj) -> None:
        self.obj = obj
        self.calls: list[tuple[str, Obj, str | None]] = []

    async def merge_patch(
        self,
        _api_version: str,
        _kind: str,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        self.calls.append((name, patch, subresource))
        self.obj = apply_merge_patch(self.obj, patch)
        return self.obj


def widget(status: dict[str, Any] | None = None) -> Obj:
    obj: Obj = {"apiVersion": "example.dev/v1", "kind": "Widget"}
    obj["metadata"] = {"name": "w", "namespace": "ns"}
    if status is not None:
        obj["status"] = status
    return obj


# -- merge patches (RFC 7386) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386, Appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patches_apply_as_rfc_7386_says(target: Any, patch: Any, result: Any) -> None:
    assert apply_merge_patch(target, patch) == result


def test_composed_patches_do_what_the_two_do_one_after_the_other() -> None:
    target = {"sync": {"status": "Synced", "revision": "a"}, "drift": [1], "keep": 1}
    first = {"sync": {"status": "OutOfSync"}, "drift": None}
    then = {"sync": {"revision": "b"}, "drift": [2], "health": {"status": "Healthy"}}
    composed = compose_merge_patches(first, then)
    assert apply_merge_patch(target, composed) == apply_merge_patch(
        apply_merge_patch(target, first), then
    )


# -- the collector -----------------------------------------------------------------------


async def test_what_the_steps_want_goes_out_as_one_patch_later_fragments_winning() -> None:
    kube = FakeKube(widget({"phase": "old", "drift": [1]}))
    patch = StatusPatch(kube.obj, API)
    patch.update({"phase": "compared", "revision": "abc"})
    patch.update({"drift": None})
    patch.put_condition("ComparisonError", "boom", at="t1")
    patch.update({"phase": "done"})
    assert patch.status == {
        "phase": "done",
        "revision": "abc",
        "conditions": [{"type": "ComparisonError", "message": "boom", "lastTransitionTime": "t1"}],
    }
    expected = patch.status
    written = await patch.send(kube)
    assert len(kube.calls) == 1
    assert written is not None
    assert written["status"] == expected
    assert kube.calls[0][2] is None  # no /status subresource: the object itself, as Argo CD
    assert await patch.send(kube) is None  # sent once: nothing is pending any more
    assert patch.sent == 1


async def test_nothing_is_sent_when_nothing_changes() -> None:
    status = {"phase": "done", "conditions": [{"type": "X", "message": "m"}]}
    kube = FakeKube(widget(status))
    patch = StatusPatch(kube.obj, API)
    assert await patch.send(kube) is None  # nothing collected
    patch.update({"phase": "done"})
    patch.put_condition("X", "m", at="later")  # same type and message: kept with its time
    patch.update({"gone": None})  # deleting what is not there
    assert patch.body() is None
    assert await patch.send(kube) is None
    assert kube.calls == []


async def test_kinds_with_a_status_subresource_patch_it() -> None:
    kube = FakeKube(widget())
    patch = StatusPatch(kube.obj, API, subresource=True)
    patch.update({"observedGeneration": 2})
    await patch.send(kube)
    assert kube.calls == [("w", {"status": {"observedGeneration": 2}}, "status")]


def test_a_condition_whose_cause_is_gone_is_cleared() -> None:
    patch = StatusPatch(
        widget({"conditions": [{"type": "ComparisonError"}, {"type": "SyncError"}]}), API
    )
    patch.drop_conditions("ComparisonError", "UnknownError")
    assert patch.status["conditions"] == [{"type": "SyncError"}]
    patch.drop_conditions("SyncError")
    assert "conditions" not in patch.status
    patch.put_condition("UnknownError", "KeyError: 'x'", at="t")
    assert patch.status["conditions"] == [
        {"type": "UnknownError", "message": "KeyError: 'x'", "lastTransitionTime": "t"}
    ]


def test_a_rebased_patch_compares_with_the_fresher_object() -> None:
    patch = StatusPatch(widget({"phase": "a"}), API)
    patch.update({"phase": "b"})
    patch.rebase(widget({"phase": "b"}))  # someone wrote it meanwhile
    assert patch.body() is None


# -- the Argo reconciler: one patch per reconcile, none when unchanged --------------------


class _Engine:
    field_manager = "gitsail"
    admission = None  # no AppProject checks (AppEngine's default)

    def __init__(self, kube: FakeKube, diffs: tuple[ResourceDiff, ...] = ()) -> None:
        self.kube = kube
        self.diffs = diffs
        self.compares = 0
        # Its first item is the revision (``AppEngine.stamp_head``): the commit compared.
        self.stamp: tuple[Any, ...] | None = ("c0ffee", "nothing changed")
        self.heads = 0

    async def stamp_head(self, _app: App) -> tuple[Any, ...] | None:
        self.heads += 1
        return None if self.stamp is None else self.stamp[:1]

    async def comparison_stamp(
        self, _app: App, _objects: Any, _head: Any = None
    ) -> tuple[Any, ...] | None:
        return self.stamp

    async def compare(self, app: App, *, revision: str | None = None) -> Comparison:
        self.compares += 1
        artifact = Artifact("https://git.example/r.git", "c0ffee", "main", Path("/"), "app", "")
        return Comparison(
            app=app,
            artifact=artifact,
            rendered=Rendered((), "directory", "k"),
            desired=(),
            hooks=(),
            diffs=self.diffs,
            live={},
            owned_live=(),
            health={},
        )


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _application(status: dict[str, Any]) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": "https://git.example/r.git", "path": "app"},
            "destination": {"namespace": "default"},
        },
        "status": status,
    }


async def test_one_reconcile_writes_one_patch_that_clears_the_fixed_error_then_none() -> None:
    kube = FakeKube(
        _application(
            {
                "sync": {"status": "Unknown"},
                "conditions": [
                    {"type": "ComparisonError", "message": "kustomize build failed"},
                    {"type": "UnknownError", "message": "KeyError: 'x'"},
                ],
            }
        )
    )
    clock = _Clock()

    async def get_application(_ns: str, _name: str, _fresh: bool) -> Obj:
        return kube.obj

    reconciler = AppReconciler(
        _Engine(kube),  # type: ignore[arg-type]
        settings=ReconcileSettings(resync=120, jitter=0),
        metrics=Metrics(),
        events=None,  # type: ignore[arg-type]
        get_application=get_application,
        clock=clock,
    )
    assert await reconciler.reconcile(kube.obj, frozenset({"app:modified"})) == 120
    assert len(kube.calls) == 1
    status = kube.obj["status"]
    assert status["sync"]["status"] == "Synced"
    assert [c["type"] for c in status["conditions"]] == ["NoResourcesWarning"]
    # Polled again a minute later: the same status, so no write at all.
    clock.now += 60
    assert await reconciler.reconcile(kube.obj, frozenset({"requeue"})) == 120
    assert len(kube.calls) == 1


class _Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def emit(self, _obj: Obj, *, reason: str, message: str, type: str = "") -> None:
        self.reasons.append(reason)


async def test_drift_and_the_new_status_of_one_reconcile_are_one_patch() -> None:
    kube = FakeKube(_application({"sync": {"status": "Synced"}}))
    deleted = ResourceDiff(
        key=ResourceKey("", "ConfigMap", "default", "settings"),
        status="OutOfSync",
        desired={"kind": "ConfigMap"},
        live=None,
        changed_paths=(),
        requires_pruning=False,
        missing=True,
    )
    events = _Events()

    async def get_application(_ns: str, _name: str, _fresh: bool) -> Obj:
        return kube.obj

    reconciler = AppReconciler(
        _Engine(kube, (deleted,)),  # type: ignore[arg-type]
        settings=ReconcileSettings(resync=120, jitter=0),
        metrics=Metrics(),
        events=events,  # type: ignore[arg-type]
        get_application=get_application,
        clock=_Clock(),
    )
    await reconciler.reconcile(kube.obj, frozenset({"deleted:ConfigMap/settings"}))
    assert events.reasons == ["DriftDetected"]
    ((_, body, _),) = kube.calls  # drift and sync status together
    assert body["status"]["drift"][0]["operation"] == "Delete"
    assert body["status"]["sync"]["status"] == "OutOfSync"
