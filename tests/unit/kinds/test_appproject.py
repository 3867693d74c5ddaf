"""AppProject decisions against Argo CD's documented examples (user-guide/projects,
user-guide/sync_windows): repos, destinations, kinds, source namespaces, sync windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gitsail.kinds.argo_application import AppSpecError
from gitsail.kinds.argo_appproject import (
    DEFAULT_PROJECT_SPEC,
    Project,
    default_project_object,
    destination_permitted,
    kind_permitted,
    repo_permitted,
    source_namespace_permitted,
    windows_verdict,
)

IN = "https://kubernetes.default.svc"


def project(**spec: Any) -> Project:
    return Project.from_object({"metadata": {"name": "p", "namespace": "argocd"}, "spec": spec})


# -- sourceRepos ---------------------------------------------------------------------------


def test_negated_repos_deny_and_a_star_allows_the_rest() -> None:
    # The docs' example: deny one repo and a Gitlab group, allow anything else.
    p = project(
        sourceRepos=[
            "!ssh://git@GITHUB.com/argoproj/test",
            "!https://gitlab.com/group/**",
            "*",
        ]
    )
    assert not repo_permitted(p, "ssh://git@github.com/argoproj/test")
    assert not repo_permitted(p, "ssh://git@github.com/argoproj/test.git")  # normalized
    assert not repo_permitted(p, "https://gitlab.com/group/sub/repo")
    assert repo_permitted(p, "https://gitlab.com/other/repo")
    assert repo_permitted(p, "ssh://git@github.com/argoproj/other")


def test_a_deny_wins_whatever_its_place_and_denials_alone_permit_nothing() -> None:
    assert not repo_permitted(project(sourceRepos=["*", "!https://x/a"]), "https://x/a")
    assert not repo_permitted(project(sourceRepos=["!https://x/a"]), "https://x/b")
    assert not repo_permitted(project(sourceRepos=[]), "https://x/b")
    assert repo_permitted(project(sourceRepos=["https://x/*"]), "https://x/b/c.git")
    assert not repo_permitted(project(sourceRepos=["https://x/*"]), "https://y/b")


# -- destinations --------------------------------------------------------------------------


DOC_DESTINATIONS = [
    {"namespace": "!kube-system", "server": "*"},
    {"namespace": "*", "server": "!https://team1-*"},
    {"namespace": "*", "server": "*"},
]


def test_negated_destinations_of_the_docs() -> None:
    p = project(destinations=DOC_DESTINATIONS)
    assert not destination_permitted(p, IN, "", "kube-system")
    assert not destination_permitted(p, "https://team1-prod", "", "apps")
    assert destination_permitted(p, IN, "", "apps")
    assert destination_permitted(p, "https://team2-prod", "", "apps")


def test_destination_by_server_or_name_and_namespace_globs() -> None:
    p = project(
        destinations=[{"server": IN, "namespace": "team-*"}, {"name": "edge", "namespace": "x"}]
    )
    assert destination_permitted(p, IN, "in-cluster", "team-a")
    assert not destination_permitted(p, IN, "in-cluster", "other")
    assert destination_permitted(p, "", "edge", "x")
    assert not destination_permitted(p, "", "edge", "y")
    assert not destination_permitted(project(destinations=[]), IN, "", "team-a")


# -- resource kinds ------------------------------------------------------------------------


def test_cluster_kinds_need_the_whitelist_and_the_blacklist_wins() -> None:
    nothing = project()
    assert not kind_permitted(nothing, "", "Namespace", namespaced=False)
    assert kind_permitted(nothing, "apps", "Deployment", namespaced=True)  # no ns whitelist: all
    p = project(
        clusterResourceWhitelist=[{"group": "*", "kind": "*"}],
        clusterResourceBlacklist=[{"group": "rbac.authorization.k8s.io", "kind": "Cluster*"}],
    )
    assert kind_permitted(p, "", "Namespace", namespaced=False)
    assert not kind_permitted(p, "rbac.authorization.k8s.io", "ClusterRole", namespaced=False)


def test_namespaced_whitelist_empty_means_none_and_blacklist_denies() -> None:
    empty = project(namespaceResourceWhitelist=[])
    assert not kind_permitted(empty, "apps", "Deployment", namespaced=True)
    p = project(
        namespaceResourceWhitelist=[
            {"group": "apps", "kind": "*"},
            {"group": "", "kind": "ConfigMap"},
        ],
        namespaceResourceBlacklist=[{"group": "apps", "kind": "DaemonSet"}],
    )
    assert kind_permitted(p, "apps", "Deployment", namespaced=True)
    assert kind_permitted(p, "", "ConfigMap", namespaced=True)
    assert not kind_permitted(p, "", "Secret", namespaced=True)
    assert not kind_permitted(p, "apps", "DaemonSet", namespaced=True)
    black = project(namespaceResourceBlacklist=[{"group": "", "kind": "ResourceQuota"}])
    assert not kind_permitted(black, "", "ResourceQuota", namespaced=True)
    assert kind_permitted(black, "", "ConfigMap", namespaced=True)


def test_the_default_project_permits_everything() -> None:
    p = Project.from_object(default_project_object("argocd"))
    assert p.name == "default"
    assert repo_permitted(p, "https://anything/at/all")
    assert destination_permitted(p, IN, "", "kube-system")
    assert kind_permitted(p, "", "Namespace", namespaced=False)
    assert kind_permitted(p, "rbac.authorization.k8s.io", "ClusterRole", namespaced=False)
    assert DEFAULT_PROJECT_SPEC["sourceRepos"] == ["*"]


def test_source_namespaces() -> None:
    p = project(sourceNamespaces=["team-*"])
    assert source_namespace_permitted(p, "argocd", "argocd")  # the control namespace: always
    assert source_namespace_permitted(p, "team-a", "argocd")
    assert not source_namespace_permitted(p, "other", "argocd")
    assert not source_namespace_permitted(project(), "team-a", "argocd")


@pytest.mark.parametrize(
    "spec",
    [
        {"sourceRepos": "*"},
        {"destinations": ["x"]},
        {"syncWindows": [{"kind": "maybe", "schedule": "* * * * *", "duration": "1h"}]},
        {"syncWindows": [{"kind": "deny", "schedule": "61 * * * *", "duration": "1h"}]},
        {"syncWindows": [{"kind": "deny", "schedule": "* * * *", "duration": "1h"}]},
        {"syncWindows": [{"kind": "deny", "schedule": "* * * * *"}]},
        {
            "syncWindows": [
                {"kind": "deny", "schedule": "* * * * *", "duration": "1h", "timeZone": "Mars/Base"}
            ]
        },
        {"sourceRepos": ["x"] * 1001},
    ],
)
def test_an_unusable_project_is_refused_with_the_field(spec: dict[str, Any]) -> None:
    with pytest.raises(AppSpecError, match="AppProject"):
        project(**spec)


# -- sync windows ---------------------------------------------------------------------------


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def window(
    kind: str, schedule: str = "0 22 * * *", duration: str = "1h", **more: Any
) -> dict[str, Any]:
    return {"kind": kind, "schedule": schedule, "duration": duration, "applications": ["*"], **more}


def verdict(p: Project, when: str, app: str = "guestbook", ns: str = "prod") -> Any:
    return windows_verdict(p, app, ns, [IN, "in-cluster"], lambda: at(when))


def test_no_matching_window_allows_all_syncs() -> None:
    v = verdict(
        project(syncWindows=[{**window("deny"), "applications": ["other"]}]), "2026-12-02T22:30"
    )
    assert v.automated
    assert v.manual
    assert not v.matching


def test_a_deny_window_blocks_while_open_only() -> None:
    p = project(syncWindows=[window("deny")])  # 22:00 for an hour
    inside = verdict(p, "2026-12-02T22:30")
    assert not inside.automated
    assert not inside.manual
    assert "deny 0 22 * * * for 1h" in inside.message
    assert verdict(p, "2026-12-02T23:00").automated  # closed at 23:00 (exclusive)
    assert verdict(p, "2026-12-02T21:59").automated
    assert not verdict(p, "2026-12-02T22:00").automated  # opens at 22:00


def test_deny_beats_allow_and_manual_sync_lets_manual_syncs_through() -> None:
    p = project(syncWindows=[window("allow", "0 20 * * *", "4h"), window("deny", manualSync=True)])
    v = verdict(p, "2026-12-02T22:30")
    assert not v.automated
    assert v.manual
    assert verdict(p, "2026-12-02T21:00").automated  # allow open, deny closed


def test_with_allow_windows_syncs_happen_only_inside_one() -> None:
    p = project(syncWindows=[window("allow", "0 22 * * *", "1h")])
    assert verdict(p, "2026-12-02T22:10").automated
    outside = verdict(p, "2026-12-02T12:00")
    assert not outside.automated
    assert not outside.manual
    assert "no allow window" in outside.message
    manual = project(syncWindows=[window("allow", manualSync=True)])
    assert verdict(manual, "2026-12-02T12:00").manual


def test_windows_match_by_app_namespace_or_cluster_and_with_and_operator() -> None:
    by_ns = {"kind": "deny", "schedule": "* * * * *", "duration": "1h", "namespaces": ["*-prod"]}
    p = project(syncWindows=[by_ns])
    assert not verdict(p, "2026-12-02T10:00", ns="web-prod").automated
    assert verdict(p, "2026-12-02T10:00", ns="web-dev").automated
    by_cluster = {
        "kind": "deny",
        "schedule": "* * * * *",
        "duration": "1h",
        "clusters": ["in-cluster"],
    }
    assert not verdict(project(syncWindows=[by_cluster]), "2026-12-02T10:00").automated
    both = {**by_ns, "applications": ["web-*"], "andOperator": True}
    q = project(syncWindows=[both])
    assert verdict(q, "2026-12-02T10:00", app="api", ns="x-prod").automated
    assert not verdict(q, "2026-12-02T10:00", app="web-1", ns="x-prod").automated


def test_a_window_in_its_time_zone_and_spanning_midnight() -> None:
    # 22:00 in New York (UTC-5 in December) is 03:00 UTC the next day.
    ny = project(syncWindows=[window("deny", timeZone="America/New_York")])
    assert not verdict(ny, "2026-12-03T03:30").automated
    assert verdict(ny, "2026-12-02T22:30").automated
    night = project(syncWindows=[window("deny", "30 23 * * *", "2h")])
    assert not verdict(night, "2026-12-03T01:15").automated
    assert verdict(night, "2026-12-03T01:30").automated


def test_brace_alternatives_are_expanded_within_bounds() -> None:
    p = project(sourceRepos=["https://git.example/{team,ops}/*"])
    assert repo_permitted(p, "https://git.example/ops/x")
    assert not repo_permitted(p, "https://git.example/dev/x")
    many = project(sourceRepos=["https://x/" + "{a,b}" * 200])
    assert not repo_permitted(many, "https://x/c")  # answered, not expanded 2**200 ways
