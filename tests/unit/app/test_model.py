from typing import Any

import pytest

from gitsail.app.model import App, AppSpecError, Retry, parse_duration


def application(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": "https://git.example/r.git", "path": "overlays/production"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "myapp"},
    }
    base.update(spec)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "myapp", "namespace": "argocd"},
        "spec": base,
    }


def test_the_articles_application_reads_with_argo_defaults() -> None:
    app = App.from_application(
        application(
            syncPolicy={
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            }
        )
    )
    assert app.target_revision == "HEAD"
    assert app.revision_history_limit == 10
    assert app.automated is not None
    assert app.automated.prune
    assert app.automated.self_heal
    assert not app.automated.allow_empty
    assert app.sync_options.flag("CreateNamespace")
    # automated sync without a retry block still retries 5 times (Argo CD's implicit limit)
    assert app.retry == Retry(limit=5)
    assert app.instance == "myapp"


def test_automated_enabled_false_keeps_settings_but_disables_auto_sync() -> None:
    app = App.from_application(application(syncPolicy={"automated": {"enabled": False}}))
    assert app.automated is None
    assert app.retry.limit == 0


def test_retry_backoff_follows_duration_factor_and_cap() -> None:
    retry = Retry.parse(
        {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}},
        automated=False,
    )
    assert [retry.delay(n) for n in range(7)] == [5, 10, 20, 40, 80, 160, 180]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("3m", 180), ("1h30m", 5400), ("10", 10), (7, 7), ("250ms", 0.25)],
)
def test_durations_accept_go_syntax_and_bare_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text, 0) == seconds


def test_bad_duration_is_an_error_naming_it() -> None:
    with pytest.raises(AppSpecError, match="invalid duration '5 seconds'"):
        parse_duration("5 seconds", 0)


def test_apps_outside_the_control_namespace_track_with_a_qualified_name() -> None:
    obj = application()
    obj["metadata"]["namespace"] = "team-a"
    assert App.from_application(obj).instance == "team-a_myapp"


def test_multiple_sources_are_refused_clearly() -> None:
    obj = application(sources=[{"repoURL": "x"}])
    del obj["spec"]["source"]
    with pytest.raises(AppSpecError, match=r"spec\.sources .* not supported"):
        App.from_application(obj)


def test_unregistered_destination_name_is_refused() -> None:
    with pytest.raises(AppSpecError, match="not registered"):
        App.from_application(application(destination={"name": "prod-eu", "namespace": "x"}))
