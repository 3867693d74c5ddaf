"""AppProject roles: their lines become RBAC bounded to the project, their groups ``g``
lines, their tokens are signed, recorded, and revoked by leaving the lists."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from gitsail.kinds.argo_appproject_roles import (
    RoleError,
    issue_role_token,
    role_rules,
    roles_of,
    token_ids,
    tokens_patch,
)
from gitsail.model import Obj
from gitsail.server.auth import verify_token
from gitsail.server.rbac import parse_policy

KEY = b"k" * 32


def project(name: str, *roles: dict[str, Any], status: Obj | None = None) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "7"},
        "spec": {"roles": list(roles)},
        "status": status or {},
    }


CI = {
    "name": "ci",
    "policies": [
        "p, proj:team-a:ci, applications, sync, team-a/*, allow",
        "p, proj:team-a:ci, applications, get, team-a/*, allow",
        "p, proj:team-a:ci, applications, sync, team-a/frozen, deny",
    ],
    "groups": ["team-a-devs"],
}


def test_role_lines_grant_inside_the_project_only() -> None:
    policy, errors = parse_policy(None).with_project_roles([project("team-a", CI)])
    assert errors == []
    assert policy.enforce("proj:team-a:ci", "applications", "sync", "team-a/web")
    assert policy.enforce("proj:team-a:ci", "applications", "sync", "team-a/other-ns/web")
    assert not policy.enforce("proj:team-a:ci", "applications", "sync", "team-a/frozen")
    assert not policy.enforce("proj:team-a:ci", "applications", "sync", "team-b/web")
    assert not policy.enforce("proj:team-a:ci", "applications", "delete", "team-a/web")
    # The role's groups (OIDC) have the role.
    assert policy.enforce("carol", "applications", "sync", "team-a/web", ["team-a-devs"])
    assert not policy.enforce("carol", "applications", "sync", "team-a/web", ["others"])


def test_a_regex_pattern_cannot_escape_the_project() -> None:
    escape = {
        "name": "ci",
        "policies": ["p, proj:team-a:ci, applications, get, team-a/.*|team-b/.*, allow"],
    }
    policy, errors = parse_policy({"policy.matchMode": "regex"}).with_project_roles(
        [project("team-a", escape)]
    )
    assert errors == []
    assert not policy.enforce("proj:team-a:ci", "applications", "get", "team-b/web")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p, proj:team-b:ci, applications, get, team-a/*, allow", "subject must be"),
        ("p, proj:team-a:ci, applications, get, team-b/*, allow", "object must be team-a/"),
        ("p, proj:team-a:ci, applications, get, *, allow", "object must be team-a/"),
        ("p, proj:team-a:ci, accounts, update, team-a/*, allow", "resource 'accounts'"),
        ("p, proj:team-a:ci, applications, get, team-a/*, maybe", "allow or deny"),
        ("g, someone, proj:team-a:ci", "p, subject"),
    ],
)
def test_a_role_with_a_bad_line_grants_nothing(line: str, message: str) -> None:
    role = {"name": "ci", "policies": ["p, proj:team-a:ci, applications, get, team-a/*", line]}
    policy, errors = parse_policy(None).with_project_roles([project("team-a", role)])
    assert len(errors) == 1
    assert message in errors[0]
    # Not even its good line counts.
    assert not policy.enforce("proj:team-a:ci", "applications", "get", "team-a/web")


def test_a_bad_role_name_is_refused() -> None:
    with pytest.raises(RoleError, match="not valid"):
        roles_of(project("p", {"name": "a:b"}))


def test_role_tokens_are_server_tokens_of_kind_project() -> None:
    token, record = issue_role_token(KEY, "team-a", "ci", seconds=3600, now=1000.0, token_id="t1")
    assert record == {"iat": 1000, "exp": 4600, "id": "t1"}
    claims = verify_token(KEY, token, now=1001.0)
    assert (claims.subject, claims.kind, claims.token_id) == ("proj:team-a:ci", "project", "t1")
    never, record = issue_role_token(KEY, "team-a", "ci", now=1000.0)
    assert "exp" not in record
    assert "exp" not in jwt.decode(never, KEY, algorithms=["HS256"])


def test_tokens_are_recorded_in_both_places_and_removed_by_iat() -> None:
    obj = project("team-a", CI)
    patch = tokens_patch(obj, "ci", add={"iat": 5, "id": "a"})
    assert patch["metadata"] == {"resourceVersion": "7"}
    assert patch["spec"]["roles"][0]["jwtTokens"] == [{"iat": 5, "id": "a"}]
    assert patch["status"]["jwtTokensByRole"] == {"ci": {"items": [{"iat": 5, "id": "a"}]}}
    recorded = {**obj, "spec": patch["spec"], "status": patch["status"]}
    assert token_ids(recorded, "ci") == {"a"}
    assert token_ids(recorded, "other") == set()
    removed = tokens_patch(recorded, "ci", remove_iat=5)
    assert removed["spec"]["roles"][0]["jwtTokens"] is None
    assert removed["status"]["jwtTokensByRole"] == {"ci": None}
    with pytest.raises(RoleError, match="no role"):
        tokens_patch(obj, "absent", add={"iat": 1, "id": "x"})


def test_role_rules_of_a_role() -> None:
    (role,) = roles_of(project("team-a", CI))
    rules = role_rules(role)
    assert [r.allow for r in rules] == [True, True, False]
    assert role.subject == "proj:team-a:ci"
    assert role.groups == ("team-a-devs",)


def test_a_bad_role_does_not_take_the_projects_other_roles_with_it() -> None:
    bad = {"name": "bad", "policies": ["p, proj:team-a:bad, applications, get, other/*"]}
    policy, errors = parse_policy(None).with_project_roles([project("team-a", CI, bad)])
    assert len(errors) == 1
    assert "role bad" in errors[0]
    assert policy.enforce("proj:team-a:ci", "applications", "get", "team-a/web")
    assert not policy.enforce("proj:team-a:bad", "applications", "get", "other/web")
