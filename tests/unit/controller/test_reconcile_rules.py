import datetime as dt
import time

from gitsail.controller.manager import _generate_paths_match
from gitsail.controller.reconciler import (
    AppReconciler,
    ReconcileSettings,
    _Memory,
    app_key_for_instance,
)


def test_tracking_names_map_back_to_applications() -> None:
    assert app_key_for_instance("myapp", "argocd") == ("argocd", "myapp")
    assert app_key_for_instance("team-a_myapp", "argocd") == ("team-a", "myapp")


def _wait(attempts: int, finished_ago: float) -> float:
    reconciler = AppReconciler.__new__(AppReconciler)
    reconciler.settings = ReconcileSettings()
    finished = dt.datetime.fromtimestamp(time.time() - finished_ago, dt.UTC)
    state = {"finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return reconciler._self_heal_wait(state, _Memory(self_heal_attempts=attempts))


def test_self_heal_backoff_grows_by_three_from_two_seconds_capped_at_five_minutes() -> None:
    assert _wait(0, finished_ago=10) == 0
    assert 0 < _wait(1, finished_ago=0) <= 6
    assert 17 < _wait(2, finished_ago=0) <= 18
    assert 290 < _wait(10, finished_ago=0) <= 300


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
