"""Conditions on an Application: written only when they change, SyncError set by a failed
sync and cleared by a successful one, every reconcile failure mapped to a condition type."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gitsail.app.engine import AppEngine, ComparisonError, _require_name, _with_sync_error
from gitsail.controller.events import EventRecorder
from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.kinds.argo_application import AppSpecError
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.render import RenderError
from gitsail.sync.engine import SyncResult


class FakeKube:
    """Only what condition writes use: merge_patch, applied to one stored Application."""

    def __init__(self, app: Obj) -> None:
        self.app = app
        self.patches: list[Obj] = []

    async def merge_patch(
        self, _api_version: str, _kind: str, _name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        self.patches.append(patch)
        status = dict(self.app.get("status") or {})
        status.update(patch.get("status") or {})
        self.app = {**self.app, "status": status}
        return self.app


def _app(conditions: list[dict[str, Any]] | None = None) -> Obj:
    return {
        "metadata": {"name": "a", "namespace": "argocd"},
        "spec": {},
        "status": {"conditions": conditions} if conditions is not None else {},
    }


async def test_a_condition_is_written_once_and_replaced_when_its_message_changes() -> None:
    kube = FakeKube(_app([{"type": "SharedResourceWarning", "message": "kept"}]))
    engine = AppEngine(cast(Kube, kube))
    assert await engine.set_condition(kube.app, "UnknownError", "boom")
    assert not await engine.set_condition(kube.app, "UnknownError", "boom")
    assert await engine.set_condition(kube.app, "UnknownError", "bang")
    assert len(kube.patches) == 2
    types = [(c["type"], c["message"]) for c in kube.app["status"]["conditions"]]
    assert types == [("SharedResourceWarning", "kept"), ("UnknownError", "bang")]


def test_sync_error_is_set_by_a_failure_kept_while_it_repeats_and_cleared_by_success() -> None:
    failed = SyncResult("Failed", "kind example.dev/Widget is not served")
    first = _with_sync_error(_app(), failed, "abc123")
    (condition,) = first["status"]["conditions"]
    assert condition["type"] == "SyncError"
    assert condition["message"] == (
        "Failed sync attempt to abc123: kind example.dev/Widget is not served"
    )
    assert _with_sync_error(first, failed, "abc123") is first  # unchanged: nothing to write
    cleared = _with_sync_error(first, SyncResult("Succeeded", "ok"), "def456")
    assert cleared["status"]["conditions"] == []


@pytest.mark.parametrize(
    ("obj", "hook", "ok"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, False, True),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, False, False),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, False, False),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 3}}, False, False),
        ({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "m-"}}, True, True),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}}, False, False),
    ],
)
def test_rendered_objects_must_be_named_hooks_may_generate_a_name(
    obj: Obj, hook: bool, ok: bool
) -> None:
    if ok:
        _require_name(obj, 1, generate_name_ok=hook)
        return
    with pytest.raises(ComparisonError, match=r"resource 4 of the rendered manifests \(v1"):
        _require_name(obj, 4, generate_name_ok=hook)


@pytest.mark.parametrize(
    ("error", "ctype", "delay"),
    [
        (
            AppSpecError("application a: spec.project: expected string, got 7"),
            "InvalidSpecError",
            None,
        ),
        (RenderError("kustomization.yaml: not UTF-8"), "ComparisonError", 30.0),
        (ComparisonError("no such revision"), "ComparisonError", 30.0),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "UnknownError", 30.0),
        (KeyError("name"), "UnknownError", 30.0),
    ],
)
async def test_every_reconcile_failure_becomes_a_condition(
    error: Exception, ctype: str, delay: float | None
) -> None:
    kube = FakeKube(_app())
    engine = AppEngine(cast(Kube, kube))

    async def get_application(_ns: str, _name: str, _fresh: bool) -> Obj:
        return kube.app

    reconciler = AppReconciler(
        engine,
        settings=ReconcileSettings(error_resync=30.0),
        metrics=Metrics(),
        events=EventRecorder(cast(Kube, kube)),
        get_application=get_application,
    )

    async def failing(_key: object, _reasons: object) -> float | None:
        raise error

    reconciler._reconcile = failing  # type: ignore[method-assign]
    assert await reconciler.reconcile(("argocd", "a"), frozenset({"requeue"})) == delay
    assert await reconciler.reconcile(("argocd", "a"), frozenset({"requeue"})) == delay
    assert len(kube.patches) == 1  # the same failure twice: one write
    (condition,) = kube.app["status"]["conditions"]
    assert condition["type"] == ctype
    assert condition["message"]
