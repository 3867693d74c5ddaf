"""AppProject roles (``spec.roles``) and their JWTs, as Argo CD documents them.

A role is ``{name, description, policies, groups, jwtTokens}``:

- ``policies`` are ``argocd-rbac-cm`` ``p`` lines whose subject is ``proj:PROJECT:ROLE``
  and whose object is inside the project (``PROJECT/...``); only the resources
  ``applications``, ``applicationsets``, ``logs`` and ``exec`` may be named;
- ``groups`` are the (OIDC) groups that have the role: ``g, GROUP, proj:PROJECT:ROLE``;
- a role's tokens are JWTs with subject ``proj:PROJECT:ROLE``, signed with the server's
  ``server.secretkey`` (HS256). Each one issued is recorded as ``{iat, exp, id}`` in
  ``status.jwtTokensByRole[ROLE].items`` and in ``spec.roles[].jwtTokens`` (Argo CD's older
  place); a token whose id is in neither list is revoked.

A role whose name or any of whose lines cannot be read grants nothing at all: its lines are
refused as a whole (``RoleError`` names the line), never a part of them.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gitsail.kube import Conflict, Kube, check_names
from gitsail.model import Obj

__all__ = [
    "ROLE_RESOURCES",
    "ProjectRole",
    "RoleError",
    "RoleRule",
    "create_role_token",
    "delete_role_token",
    "issue_role_token",
    "role_rules",
    "role_subject",
    "roles_of",
    "server_key",
    "token_ids",
    "tokens_patch",
]

ROLE_RESOURCES = frozenset({"applications", "applicationsets", "logs", "exec"})
TOKEN_ISSUER = "gitsail"  # noqa: S105 (the server's own tokens: gitsail.server.auth.ISSUER)
MAX_ROLES = 100
MAX_POLICIES = 1000
MAX_TOKENS = 1000
_ROLE_NAME = re.compile(r"^[a-zA-Z0-9]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$")


class RoleError(ValueError):
    """A project role that cannot be read (its name or a line); it grants nothing."""


@dataclass(frozen=True)
class RoleRule:
    """One ``p`` line of a role, checked to stay inside its project."""

    subject: str
    resource: str
    action: str
    obj: str
    allow: bool
    project: str  # objects outside ``project/`` never match, whatever the pattern says


@dataclass(frozen=True)
class ProjectRole:
    project: str
    name: str
    policies: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def subject(self) -> str:
        return role_subject(self.project, self.name)


def role_subject(project: str, role: str) -> str:
    return f"proj:{project}:{role}"


def roles_of(project: Obj) -> list[ProjectRole]:
    """The roles of an AppProject; RoleError for one that cannot be read."""
    name = str((project.get("metadata") or {}).get("name") or "")
    roles = (project.get("spec") or {}).get("roles") or []
    if not isinstance(roles, list) or len(roles) > MAX_ROLES:
        raise RoleError(f"project {name}: spec.roles is a list of at most {MAX_ROLES} roles")
    out = []
    for role in roles:
        if not isinstance(role, dict):
            raise RoleError(f"project {name}: a role is a mapping")
        role_name = role.get("name")
        if not isinstance(role_name, str) or not _ROLE_NAME.match(role_name):
            raise RoleError(f"project {name}: role name {role_name!r} is not valid")
        policies = role.get("policies") or []
        groups = role.get("groups") or []
        if (
            not isinstance(policies, list)
            or not all(isinstance(p, str) for p in policies)
            or len(policies) > MAX_POLICIES
        ):
            raise RoleError(f"project {name} role {role_name}: policies is a list of lines")
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise RoleError(f"project {name} role {role_name}: groups is a list of names")
        out.append(ProjectRole(name, role_name, tuple(policies), tuple(groups)))
    return out


def role_rules(role: ProjectRole) -> list[RoleRule]:
    """The ``p`` lines of a role; RoleError for any line that is not a permission of this
    role on this project's objects (so a half-read role never grants part of itself)."""
    rules = []
    where = f"project {role.project} role {role.name}"
    for number, line in enumerate(role.policies, 1):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) not in (5, 6) or cells[0] != "p":
            raise RoleError(
                f"{where} policy {number}: p, subject, resource, action, object[, effect]"
            )
        _, subject, resource, action, obj, *rest = cells
        effect = rest[0] if rest else "allow"
        if subject != role.subject:
            raise RoleError(f"{where} policy {number}: the subject must be {role.subject}")
        if resource not in ROLE_RESOURCES:
            raise RoleError(
                f"{where} policy {number}: resource {resource!r} is not one of "
                + ", ".join(sorted(ROLE_RESOURCES))
            )
        if not obj.startswith(f"{role.project}/") or not action:
            raise RoleError(f"{where} policy {number}: the object must be {role.project}/...")
        if effect not in ("allow", "deny"):
            raise RoleError(f"{where} policy {number}: effect must be allow or deny")
        rules.append(RoleRule(subject, resource, action, obj, effect == "allow", role.project))
    return rules


def token_ids(project: Obj, role: str) -> set[str]:
    """The ids of the role's tokens still listed (status.jwtTokensByRole, spec.roles)."""
    ids: set[str] = set()
    by_role = ((project.get("status") or {}).get("jwtTokensByRole") or {}).get(role) or {}
    for item in by_role.get("items") or [] if isinstance(by_role, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            ids.add(item["id"])
    for entry in (project.get("spec") or {}).get("roles") or []:
        if isinstance(entry, dict) and entry.get("name") == role:
            for item in entry.get("jwtTokens") or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    ids.add(item["id"])
    return ids


def issue_role_token(
    key: bytes,
    project: str,
    role: str,
    *,
    seconds: int = 0,
    token_id: str | None = None,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """A role token (HS256 with ``server.secretkey``) and its record ``{iat, exp, id}``
    (``exp`` left out for a token that never expires, as Argo CD does)."""
    if len(key) < 16:
        raise RoleError("the server's signing key (argocd-secret server.secretkey) is not set")
    if seconds < 0:
        raise RoleError("a token's lifetime is not negative")
    issued = int(time.time() if now is None else now)
    jti = token_id or secrets.token_hex(16)
    if not re.fullmatch(r"[-_.a-zA-Z0-9]{1,128}", jti):
        raise RoleError("a token id is 1-128 letters, digits, '-', '_' or '.'")
    payload: dict[str, Any] = {
        "iss": TOKEN_ISSUER,
        "sub": role_subject(project, role),
        "iat": issued,
        "nbf": issued,
        "jti": jti,
        "typ": "project",
    }
    record: dict[str, Any] = {"iat": issued, "id": jti}
    if seconds:
        payload["exp"] = record["exp"] = issued + seconds
    return jwt.encode(payload, key, algorithm="HS256"), record


def tokens_patch(
    project: Obj, role: str, *, add: dict[str, Any] | None = None, remove_iat: int | None = None
) -> dict[str, Any]:
    """A merge patch recording a new token of ``role`` (``add``) or removing the one
    issued at ``remove_iat``, in both places Argo CD keeps them, guarded by the project's
    resourceVersion (a concurrent change is a conflict, never a lost token)."""
    meta = project.get("metadata") or {}
    roles = [
        dict(r) if isinstance(r, dict) else r
        for r in (project.get("spec") or {}).get("roles") or []
    ]
    found = False
    for entry in roles:
        if isinstance(entry, dict) and entry.get("name") == role:
            found = True
            items = [t for t in entry.get("jwtTokens") or [] if isinstance(t, dict)]
            if remove_iat is not None:
                items = [t for t in items if t.get("iat") != remove_iat]
            if add is not None:
                items.append(add)
            if len(items) > MAX_TOKENS:
                raise RoleError(f"role {role} has more than {MAX_TOKENS} tokens")
            entry["jwtTokens"] = items or None
    if not found:
        raise RoleError(f"project {meta.get('name')} has no role {role}")
    by_role = dict((project.get("status") or {}).get("jwtTokensByRole") or {})
    current = by_role.get(role) or {}
    items = [t for t in (current.get("items") or []) if isinstance(t, dict)]
    if remove_iat is not None:
        items = [t for t in items if t.get("iat") != remove_iat]
    if add is not None:
        items.append(add)
    return {
        "metadata": {"resourceVersion": meta.get("resourceVersion")},
        "spec": {"roles": roles},
        "status": {"jwtTokensByRole": {role: {"items": items} if items else None}},
    }


APPPROJECT_API = "argoproj.io/v1alpha1"


async def server_key(kube: Kube, namespace: str) -> bytes:
    """``server.secretkey`` of ``argocd-secret``: the key the server checks tokens with."""
    secret = await kube.get("v1", "Secret", "argocd-secret", namespace) or {}
    encoded = str((secret.get("data") or {}).get("server.secretkey") or "")
    try:
        key = base64.b64decode(encoded) if encoded else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise RoleError(
            f"argocd-secret in {namespace} has no server.secretkey: start `gitsail server` "
            "once (it creates the key)"
        )
    return key


async def create_role_token(
    kube: Kube,
    namespace: str,
    project: str,
    role: str,
    key: bytes,
    *,
    seconds: int = 0,
    token_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Issue a token of ``project``'s ``role`` and record it in the project (both lists);
    retried on a concurrent change of the project, never written blindly over it."""
    check_names("argoproj.io", "AppProject", project, namespace)
    for _ in range(5):
        obj = await kube.get(APPPROJECT_API, "AppProject", project, namespace)
        if obj is None:
            raise RoleError(f"project {project} not found in namespace {namespace}")
        if role not in {r.name for r in roles_of(obj)}:
            raise RoleError(f"project {project} has no role {role}")
        if token_id is not None and token_id in token_ids(obj, role):
            raise RoleError(f"role {role} already has a token with id {token_id}")
        token, record = issue_role_token(key, project, role, seconds=seconds, token_id=token_id)
        try:
            await kube.merge_patch(
                APPPROJECT_API,
                "AppProject",
                project,
                tokens_patch(obj, role, add=record),
                namespace,
            )
        except Conflict:
            continue
        return token, record
    raise RoleError(f"project {project} kept changing; retry")


async def delete_role_token(
    kube: Kube, namespace: str, project: str, role: str, issued_at: int
) -> None:
    """Revoke the token of ``role`` issued at ``issued_at`` (Argo CD names tokens by iat)."""
    check_names("argoproj.io", "AppProject", project, namespace)
    for _ in range(5):
        obj = await kube.get(APPPROJECT_API, "AppProject", project, namespace)
        if obj is None:
            raise RoleError(f"project {project} not found in namespace {namespace}")
        listed = [
            t
            for entry in (obj.get("spec") or {}).get("roles") or []
            if isinstance(entry, dict) and entry.get("name") == role
            for t in entry.get("jwtTokens") or []
            if isinstance(t, dict)
        ]
        by_role = ((obj.get("status") or {}).get("jwtTokensByRole") or {}).get(role) or {}
        listed += [t for t in by_role.get("items") or [] if isinstance(t, dict)]
        if not any(t.get("iat") == issued_at for t in listed):
            raise RoleError(f"role {role} of project {project} has no token issued at {issued_at}")
        try:
            await kube.merge_patch(
                APPPROJECT_API,
                "AppProject",
                project,
                tokens_patch(obj, role, remove_iat=issued_at),
                namespace,
            )
        except Conflict:
            continue
        return
    raise RoleError(f"project {project} kept changing; retry")
