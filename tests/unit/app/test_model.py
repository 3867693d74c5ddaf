from typing import Any

import pytest

from gitsail.kinds.argo_application import App, AppSpecError, Retry, parse_duration, parse_retry


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
    retry = parse_retry(
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


def test_a_destination_name_is_carried_to_the_engine() -> None:
    app = App.from_application(application(destination={"name": "prod-eu", "namespace": "x"}))
    assert app.destination_name == "prod-eu"
    assert app.destination_server == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"revisionHistoryLimit": "abc"}, 'spec.revisionHistoryLimit: expected integer, got "abc"'),
        (
            {"syncPolicy": {"retry": {"limit": "x"}}},
            'spec.syncPolicy.retry.limit: expected integer, got "x"',
        ),
        ({"syncPolicy": [1]}, "spec.syncPolicy: expected object, got array"),
        ({"destination": "in-cluster"}, 'spec.destination: expected object, got "in-cluster"'),
        (
            {"syncPolicy": {"syncOptions": [1]}},
            "spec.syncPolicy.syncOptions[0]: expected string, got 1",
        ),
        (
            {"syncPolicy": {"automated": {"prune": "yes"}}},
            'spec.syncPolicy.automated.prune: expected boolean, got "yes"',
        ),
        (
            {"ignoreDifferences": [{"group": "apps"}]},
            r"spec.ignoreDifferences[0].kind: is required",
        ),
        ({"revisionHistoryLimit": -1}, "spec.revisionHistoryLimit: must be at least 0, got -1"),
        (
            {"revisionHistoryLimit": 2**64},
            "spec.revisionHistoryLimit: 18446744073709551616 is out of range",
        ),
        (
            {"syncPolicy": {"retry": {"backoff": {"factor": 0}}}},
            "spec.syncPolicy.retry.backoff.factor: must be at least 1",
        ),
        (
            {"syncPolicy": {"retry": {"backoff": {"duration": 5}}}},
            "spec.syncPolicy.retry.backoff.duration: expected string, got 5",
        ),
        (
            {"syncPolicy": {"retry": {"backoff": {"duration": "-5s"}}}},
            "backoff: invalid duration '-5s'",
        ),
        (
            {"source": {"repoURL": "x", "helm": {"parameters": [{"name": "a", "value": {}}]}}},
            "spec.source.helm.parameters[0].value: expected string, got object",
        ),
        (
            {"source": {"repoURL": "x", "kustomize": {"commonLabels": {"a.b/c": 1}}}},
            'spec.source.kustomize.commonLabels["a.b/c"]: expected string, got 1',
        ),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_the_field(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(AppSpecError) as caught:
        App.from_application(application(**spec))
    assert message in str(caught.value)
    assert str(caught.value).startswith("application myapp: ")


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(AppSpecError) as caught:
        App.from_application(application(revisionHistoryLimit="a", project=7))
    assert "spec.project: expected string, got 7" in str(caught.value)
    assert "spec.revisionHistoryLimit: expected integer" in str(caught.value)


@pytest.mark.parametrize("meta", [{}, {"name": ""}, {"name": 5}, None, "myapp"])
def test_an_application_without_a_usable_name_is_refused(meta: object) -> None:
    obj = application()
    obj["metadata"] = meta
    with pytest.raises(AppSpecError, match="metadata"):
        App.from_application(obj)


@pytest.mark.parametrize("obj", [None, [], "app", 3])
def test_something_that_is_not_an_object_is_refused(obj: object) -> None:
    with pytest.raises(AppSpecError, match="must be an object"):
        App.from_application(obj)


def test_nulls_count_as_absent_as_the_apiserver_prunes_them() -> None:
    app = App.from_application(
        application(revisionHistoryLimit=None, syncPolicy={"retry": None, "automated": None})
    )
    assert app.revision_history_limit == 10
    assert app.automated is None


def test_revision_history_limit_zero_keeps_no_history_instead_of_the_default() -> None:
    assert App.from_application(application(revisionHistoryLimit=0)).revision_history_limit == 0


def test_retry_delay_is_capped_even_when_the_growth_overflows() -> None:
    retry = parse_retry(
        {"limit": -1, "backoff": {"duration": "1s", "factor": 2**62, "maxDuration": "10m"}},
        automated=True,
    )
    assert retry.delay(10_000) == 600


@pytest.mark.parametrize("text", ["²", "-5s", "1e400s", "9" * 40 + "h", "5 s", "NaN", "inf"])
def test_durations_outside_go_syntax_or_range_are_refused(text: str) -> None:
    with pytest.raises(AppSpecError, match="invalid duration"):
        parse_duration(text, 0)


def test_go_duration_units_and_bare_seconds() -> None:
    assert parse_duration("1m30s", 0) == 90
    assert parse_duration("+10", 0) == 10
    assert parse_duration("1.5h", 0) == 5400
    assert parse_duration("500us", 0) == pytest.approx(0.0005)


def test_a_malformed_sync_operation_is_refused_like_the_spec() -> None:
    obj = application()
    obj["operation"] = {"sync": {"resources": "all", "prune": "yes"}, "initiatedBy": []}
    with pytest.raises(AppSpecError) as caught:
        App.from_application(obj)
    message = str(caught.value)
    assert "operation.initiatedBy: expected object, got array" in message
    assert 'operation.sync.prune: expected boolean, got "yes"' in message
    assert 'operation.sync.resources: expected array, got "all"' in message
