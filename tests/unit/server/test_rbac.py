"""Argo CD's RBAC CSV, evaluated: subjects, roles, globs, deny, default, refusals."""

from __future__ import annotations

import pytest

from gitsail.server.rbac import RbacError, app_object, parse_policy

CSV = """
p, role:deployer, applications, sync, team-a/*, allow
p, role:deployer, applications, get, team-a/*, allow
p, role:deployer, applications, sync, team-a/frozen, deny
g, alice, role:deployer
g, ops-group, role:admin
g, role:nested, role:deployer
g, carol, role:nested
# a comment
"""


def test_builtin_admin_and_readonly() -> None:
    policy = parse_policy(None)
    assert policy.enforce("admin", "applications", "sync", "any/app")
    assert policy.enforce("admin", "kustomizations", "suspend", "flux-system/x")
    assert not policy.enforce("bob", "applications", "get", "default/a")


def test_default_role_applies_to_everyone() -> None:
    policy = parse_policy({"policy.default": "role:readonly"})
    assert policy.enforce("bob", "applications", "get", "default/a")
    assert not policy.enforce("bob", "applications", "sync", "default/a")
    assert not policy.enforce("bob", "exec", "create", "default/a")


def test_roles_groups_globs_and_deny() -> None:
    policy = parse_policy({"policy.csv": CSV})
    assert policy.enforce("alice", "applications", "sync", "team-a/web")
    assert not policy.enforce("alice", "applications", "sync", "team-b/web")
    assert not policy.enforce("alice", "applications", "sync", "team-a/frozen")  # deny wins
    assert policy.enforce("alice", "applications", "get", "team-a/frozen")
    assert policy.enforce("carol", "applications", "sync", "team-a/web")  # transitive
    assert policy.enforce("x", "clusters", "delete", "c", groups=["ops-group"])
    assert not policy.enforce("x", "clusters", "delete", "c")


def test_glob_matches_slashes_in_apps_in_any_namespace() -> None:
    policy = parse_policy({"policy.csv": "p, bob, applications, get, team-a/*, allow"})
    assert policy.enforce("bob", "applications", "get", "team-a/other-ns/web")
    assert app_object("team-a", "other-ns", "web", "argocd") == "team-a/other-ns/web"
    assert app_object("team-a", "argocd", "web", "argocd") == "team-a/web"


def test_regex_mode() -> None:
    policy = parse_policy(
        {
            "policy.matchMode": "regex",
            "policy.csv": "p, bob, applications, get, team-(a|b)/.*, allow",
        }
    )
    assert policy.enforce("bob", "applications", "get", "team-b/x")
    assert not policy.enforce("bob", "applications", "get", "team-c/x")


def test_policy_fragments_are_appended() -> None:
    policy = parse_policy({"policy.overlay.csv": "g, dave, role:admin"})
    assert policy.enforce("dave", "applications", "delete", "p/a")


@pytest.mark.parametrize(
    "line",
    [
        "p, bob, applications, get",  # too few fields
        "p, bob, applications, get, x, maybe",  # bad effect
        "g, bob",  # g needs a role
        "x, bob, role:admin",  # unknown line kind
        "p, bob, , get, x, allow",  # empty field
    ],
)
def test_unparsable_lines_refuse_the_whole_policy(line: str) -> None:
    with pytest.raises(RbacError, match="line 1"):
        parse_policy({"policy.csv": line})


def test_unknown_match_mode_and_bad_regex_refused() -> None:
    with pytest.raises(RbacError):
        parse_policy({"policy.matchMode": "fuzzy"})
    with pytest.raises(RbacError):
        parse_policy(
            {"policy.matchMode": "regex", "policy.csv": "p, a, applications, get, ((, allow"}
        )
