from gitsail.health import Health, HealthStatus, aggregate, is_worse

H = HealthStatus

ARGO_ORDER = [H.Healthy, H.Suspended, H.Progressing, H.Missing, H.Degraded, H.Unknown]


def test_status_values_are_the_strings_argo_cd_writes() -> None:
    assert [s.value for s in ARGO_ORDER] == [
        "Healthy",
        "Suspended",
        "Progressing",
        "Missing",
        "Degraded",
        "Unknown",
    ]
    assert HealthStatus("Degraded") is H.Degraded


def test_is_worse_follows_argo_cd_order() -> None:
    for i, better in enumerate(ARGO_ORDER):
        for worse in ARGO_ORDER[i + 1 :]:
            assert is_worse(worse, better)
            assert not is_worse(better, worse)
        assert not is_worse(better, better)


def test_aggregate_picks_the_worst_child() -> None:
    children = [Health(H.Healthy), Health(H.Progressing, "rolling"), Health(H.Suspended)]
    assert aggregate(children) is H.Progressing
    assert aggregate([*children, Health(H.Missing)]) is H.Missing
    assert aggregate([*children, Health(H.Degraded), Health(H.Missing)]) is H.Degraded
    assert aggregate([Health(H.Degraded), Health(H.Unknown)]) is H.Unknown


def test_aggregate_ignores_children_without_health() -> None:
    assert aggregate([None, Health(H.Suspended), None]) is H.Suspended
    assert aggregate([None, None]) is H.Healthy


def test_aggregate_of_nothing_is_healthy() -> None:
    assert aggregate([]) is H.Healthy
    assert aggregate(iter(())) is H.Healthy


def test_health_is_immutable_and_message_defaults_to_empty() -> None:
    health = Health(H.Healthy)
    assert health.message == ""
    assert health == Health(H.Healthy, "")
