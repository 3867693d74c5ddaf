import datetime as dt
import time

from gitsail.controller.manager import _generate_paths_match
from gitsail.controller.reconciler import (
    AppReconciler,
    ReconcileSettings,
    app_key_for_instance,
)


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
