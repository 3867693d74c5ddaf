import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import Comparison, ComparisonError
from gitsail.controller.manager import _generate_paths_match, own_status_write
from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import (
    AppReconciler,
    ReconcileSettings,
    _already_said,
    app_key_for_instance,
    classify,
    error_backoff,
    operation_retry,
    retry_wait,
)
from gitsail.kinds.argo_application import App, AppSpecError, Retry
from gitsail.kinds.status import Stalled, Transient
from gitsail.model import Obj
from gitsail.render import RenderError
from gitsail.render._process import ToolRunner


def test_tracking_names_map_back_to_applications() -> None:
    assert app_key_for_instance("myapp", "argocd") == ("argocd", "myapp")
    assert app_key_for_instance("team-a_myapp", "argocd") == ("team-a", "myapp")


def _reconciler() -> AppReconciler:
    reconciler = AppReconciler.__new__(AppReconciler)
    reconciler.settings = ReconcileSettings()
    return reconciler


def _state(finished_ago: float, attempts: int = 0) -> dict[str, object]:
    finished = dt.datetime.fromtimestamp(time.time() - finished_ago, dt.UTC)
    return {
        "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "operation": {"sync": {"selfHealAttemptsCount": attempts}},
    }


def test_first_self_heal_is_immediate_then_2s_times_3_to_the_n_capped_at_5_minutes() -> None:
    r = _reconciler()
    assert r._self_heal_wait(_state(0), 0) == 0
    assert 0 < r._self_heal_wait(_state(0), 1) <= 2
    assert 5 < r._self_heal_wait(_state(0), 2) <= 6
    assert 17 < r._self_heal_wait(_state(0), 3) <= 18
    assert 299 < r._self_heal_wait(_state(0), 10) <= 300
    assert r._self_heal_wait(_state(10), 2) == 0


def test_self_heal_count_is_kept_in_the_operation_and_starts_over_after_the_cooldown() -> None:
    r = _reconciler()
    assert r._self_heal_attempts(_state(5, attempts=3)) == 3
    assert r._self_heal_attempts(_state(400, attempts=3)) == 0
    assert r._self_heal_attempts({}) == 0


def test_manifest_generate_paths_are_relative_to_the_app_path_or_the_root() -> None:
    app = {
        "metadata": {
            "annotations": {
                "argocd.argoproj.io/manifest-generate-paths": ".;../shared;/charts/common"
            }
        },
        "spec": {"source": {"path": "apps/web"}},
    }
    assert _generate_paths_match(app, ("apps/web/deploy.yaml",))
    assert _generate_paths_match(app, ("apps/shared/cm.yaml",))
    assert _generate_paths_match(app, ("charts/common/values.yaml",))
    assert not _generate_paths_match(app, ("apps/other/x.yaml",))
    assert not _generate_paths_match({"metadata": {}}, ("apps/web/x.yaml",))


# -- sync retries (Argo CD's RetryStrategy) ---------------------------------------------


def test_retry_delays_are_duration_times_factor_to_the_n_capped_at_max_duration() -> None:
    retry = Retry(limit=5, duration=5, factor=2, max_duration=180)
    assert [retry.delay(n) for n in range(7)] == [5, 10, 20, 40, 80, 160, 180]
    assert Retry(duration=1, factor=3, max_duration=0).delay(4) == 81  # 0: no cap
    assert Retry(duration=5, factor=2, max_duration=0).delay(100_000) > 0  # no overflow


def _failed_attempt(finished: float, retry_count: int) -> dict[str, object]:
    return {
        "phase": "Running",
        "finishedAt": dt.datetime.fromtimestamp(finished, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "retryCount": retry_count,
    }


def test_retry_n_waits_duration_times_factor_to_the_n_minus_one_after_the_failure() -> None:
    retry = Retry(limit=5, duration=5, factor=2)
    failed = 1_700_000_000.0  # a fake clock: whole seconds, as finishedAt records them
    assert retry_wait(_failed_attempt(failed, 1), retry, now=failed) == 5
    assert retry_wait(_failed_attempt(failed, 1), retry, now=failed + 4.5) == 0.5
    assert retry_wait(_failed_attempt(failed, 1), retry, now=failed + 5) == 0
    assert retry_wait(_failed_attempt(failed, 2), retry, now=failed + 5) == 5
    assert retry_wait(_failed_attempt(failed, 4), retry, now=failed) == 40
    assert retry_wait(_failed_attempt(failed, 9), retry, now=failed) == 180
    assert retry_wait({"phase": "Running"}, retry, now=failed) == 0  # interrupted: resume


def _app(**policy: object) -> App:
    return App.from_application(
        {
            "metadata": {"name": "a", "namespace": "argocd"},
            "spec": {
                "source": {"repoURL": "https://git.example/r.git"},
                "destination": {"namespace": "x"},
                "syncPolicy": policy,
            },
        }
    )


def test_the_operation_carries_its_retry_strategy_and_automated_syncs_get_limit_5() -> None:
    app = _app(retry={"limit": 2, "backoff": {"duration": "1s"}})
    assert operation_retry(app, {"sync": {}}).limit == 2  # copied from the spec
    assert operation_retry(app, {"sync": {}, "retry": {"limit": 7}}).limit == 7
    assert operation_retry(app, {"sync": {}, "retry": None}).limit == 0
    automated = {"sync": {}, "initiatedBy": {"automated": True}, "retry": {}}
    assert operation_retry(_app(), automated).limit == 5
    with pytest.raises(AppSpecError):
        operation_retry(app, {"retry": {"backoff": {"duration": "soon"}}})


# -- comparison errors: stable status, backoff -------------------------------------------


def test_comparison_errors_back_off_from_5s_doubling_up_to_the_resync_interval() -> None:
    settings = ReconcileSettings(resync=120)
    assert [settings.error_delay(n) for n in range(1, 8)] == [5, 10, 20, 40, 80, 120, 120]
    assert error_backoff(10_000, 5, 120) == 120


class _PatchRecorder:
    """A kube that records merge patches (and returns the patched object)."""

    def __init__(self) -> None:
        self.patches: list[Obj] = []

    async def merge_patch(self, *args: Any, **kwargs: Any) -> Obj:
        self.patches.append(args[3])
        return {"metadata": {"name": args[2]}, **args[3]}


class _FakeEngine:
    field_manager = "gitsail"

    def __init__(self, message: str) -> None:
        self.message = message
        self.compares = 0
        self.kube = _PatchRecorder()

    async def stamp_head(self, _app: App) -> None:
        return None  # cannot tell: a poll compares

    async def compare(self, app: App, *, revision: str | None = None) -> Comparison:
        self.compares += 1
        raise ComparisonError(self.message, revision="c0ffee")

    @property
    def status_writes(self) -> list[str]:
        """The ComparisonError messages written (one per status patch)."""
        return [
            c["message"]
            for p in self.kube.patches
            for c in p["status"].get("conditions") or []
            if c["type"] == "ComparisonError"
        ]


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _failing_reconciler(engine: _FakeEngine, app: dict[str, object], clock: _FakeClock) -> Any:
    async def get_application(namespace: str, name: str, fresh: bool) -> Obj:
        return app

    return AppReconciler(
        engine,  # type: ignore[arg-type]
        settings=ReconcileSettings(resync=120),
        metrics=Metrics(),
        events=None,  # type: ignore[arg-type]
        get_application=get_application,
        clock=clock,
    )


def _failing_app() -> tuple[_FakeEngine, _FakeClock, dict[str, Any], Any]:
    """An Application whose every comparison fails, with its engine, clock and reconciler."""
    engine = _FakeEngine("kustomize build failed: app/missing.yaml: no such file")
    clock = _FakeClock()
    app: dict[str, Any] = {
        "metadata": {"name": "a", "namespace": "argocd", "generation": 1},
        "spec": {"source": {"repoURL": "https://git.example/r.git"}, "destination": {}},
    }
    return engine, clock, app, _failing_reconciler(engine, app, clock)


async def test_a_failing_app_backs_off_and_writes_an_unchanged_error_once() -> None:
    engine, clock, app, reconciler = _failing_app()
    key = ("argocd", "a")
    assert await reconciler.reconcile(key, frozenset({"startup"})) == 5
    app["status"] = {
        "sync": {"status": "Unknown"},
        "conditions": [{"type": "ComparisonError", "message": engine.message}],
    }
    # Woken again and again (events, its own status write): nothing runs before 5 s.
    for woken_at in (1000.5, 1002.0, 1004.9):
        clock.now = woken_at
        wait = await reconciler.reconcile(key, frozenset({"changed:ConfigMap/x"}))
        assert wait == pytest.approx(1005.0 - woken_at)
    assert engine.compares == 1
    clock.now = 1005.0
    assert await reconciler.reconcile(key, frozenset({"requeue"})) == 10
    clock.now = 1015.0
    assert await reconciler.reconcile(key, frozenset({"requeue"})) == 20
    assert engine.compares == 3
    assert engine.status_writes == [engine.message]  # the same error is not rewritten
    # A new spec (a fix) is looked at at once, and the ladder starts over.
    app["spec"] = {**app["spec"], "source": {"repoURL": "https://git.example/r.git", "path": "b"}}
    clock.now = 1016.0
    assert await reconciler.reconcile(key, frozenset({"app:modified"})) == 5
    assert engine.compares == 4


async def test_the_same_cached_object_is_parsed_once_and_a_new_one_again() -> None:
    """Every poll of an idle app reads the same cached object: its App is made once."""
    _, clock, app, reconciler = _failing_app()
    key = ("argocd", "a")
    await reconciler.reconcile(key, frozenset({"startup"}))
    parsed = reconciler.memory[key].parsed
    clock.now += 60
    await reconciler.reconcile(key, frozenset({"requeue"}))
    assert reconciler.memory[key].parsed is parsed
    app["spec"] = {**app["spec"], "source": {"repoURL": "https://git.example/r.git", "path": "b"}}
    await reconciler.reconcile(key, frozenset({"app:modified"}))
    again = reconciler.memory[key].parsed
    assert again is not parsed
    assert again is not None
    assert parsed is not None
    assert again[1].source.path == "b"
    assert again[2] != parsed[2]  # the spec's digest


# -- the Application watch: our own status writes do not wake the app ---------------------


def _application(rv: str, status: dict[str, Any], managers: list[dict[str, Any]]) -> Obj:
    return {
        "metadata": {
            "name": "a",
            "resourceVersion": rv,
            "generation": int(rv),
            "managedFields": managers,
        },
        "spec": {"source": {"repoURL": "r"}},
        "status": status,
    }


def _entry(manager: str, time: str) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "argoproj.io/v1alpha1",
        "time": time,
        "fieldsV1": {"f:status": {}},
    }


def test_only_our_own_status_writes_are_ignored() -> None:
    before = _application("1", {"a": 1}, [_entry("gitsail", "t1"), _entry("kubectl", "t0")])
    ours = _application("2", {"a": 2}, [_entry("gitsail", "t2"), _entry("kubectl", "t0")])
    assert own_status_write(before, ours, "gitsail")
    theirs = _application("2", {"a": 2}, [_entry("gitsail", "t1"), _entry("kubectl", "t2")])
    assert not own_status_write(before, theirs, "gitsail")
    spec_change = {**ours, "spec": {"source": {"repoURL": "other"}}}
    assert not own_status_write(before, spec_change, "gitsail")
    refresh = {
        **ours,
        "metadata": {**ours["metadata"], "annotations": {"argocd.argoproj.io/refresh": "hard"}},
    }
    assert not own_status_write(before, refresh, "gitsail")
    operation = {**ours, "operation": {"sync": {}}}
    assert not own_status_write(before, operation, "gitsail")


# -- render errors are stable ------------------------------------------------------------


async def test_tool_errors_name_repository_paths_not_the_private_work_dir(tmp_path: Path) -> None:
    runner = ToolRunner(home=tmp_path / "home")
    messages = set()
    for attempt in ("render-k2j4x", "render-q81zz"):
        app_dir = tmp_path / attempt / "src" / "apps" / "web"
        app_dir.mkdir(parents=True)
        with pytest.raises(RenderError) as failed:
            await runner.run(
                ["sh", "-c", 'echo "lstat $PWD/missing.yaml: no such file" >&2; exit 1'],
                cwd=app_dir,
                what="kustomize build",
            )
        messages.add(str(failed.value))
    assert messages == {
        "kustomize build failed (exit 1): lstat apps/web/missing.yaml: no such file"
    }


async def test_an_invalid_spec_condition_is_written_once() -> None:
    engine = _FakeEngine("")
    patches = engine.kube.patches
    app: dict[str, Any] = {"metadata": {"name": "a", "namespace": "argocd"}, "spec": {}}
    reconciler = _failing_reconciler(engine, app, _FakeClock())
    assert await reconciler.reconcile(("argocd", "a"), frozenset({"startup"})) is None
    app["status"] = patches[-1]["status"]
    assert await reconciler.reconcile(("argocd", "a"), frozenset({"app:modified"})) is None
    assert len(patches) == 1
    assert patches[0]["status"]["conditions"][0]["type"] == "InvalidSpecError"


def test_a_condition_already_in_status_is_not_news() -> None:
    status = {"conditions": [{"type": "SyncError", "message": "wipe", "lastTransitionTime": "t"}]}
    again = {"conditions": [{"type": "SyncError", "message": "wipe", "lastTransitionTime": "u"}]}
    assert _already_said(None, status)
    assert _already_said(again, status)
    assert not _already_said({"conditions": [{"type": "SyncError", "message": "x"}]}, status)
    assert not _already_said({**again, "history": []}, status)


def test_failures_are_typed_by_what_happens_next() -> None:
    spec = classify(AppSpecError("spec.project: expected string"), retry_after=30)
    assert isinstance(spec, Stalled)
    assert spec.reason == "InvalidSpecError"
    render = classify(RenderError("kustomize build failed"), retry_after=30)
    assert isinstance(render, Transient)
    assert (render.reason, render.retry_after) == ("ComparisonError", 30)
    crash = classify(KeyError("name"), retry_after=30)
    assert isinstance(crash, Transient)
    assert (crash.reason, crash.message) == ("UnknownError", "KeyError: 'name'")
    waiting = Transient("DependencyNotReady", "waiting for a", retry_after=7)
    assert classify(waiting, retry_after=30) is waiting
