"""RBAC in Argo CD's ``argocd-rbac-cm`` form, evaluated exactly (no Casbin engine).

The ConfigMap's keys, as Argo CD documents them:

- ``policy.csv``: lines ``p, SUBJECT, RESOURCE, ACTION, OBJECT, EFFECT`` (a permission;
  EFFECT ``allow`` or ``deny``) and ``g, SUBJECT, ROLE`` (SUBJECT is a user, a group or a
  role; roles are inherited transitively). ``policy.<anything>.csv`` keys are appended, in
  key order, as Argo CD does for policy fragments.
- ``policy.default``: the role every authenticated user has (e.g. ``role:readonly``).
- ``policy.matchMode``: ``glob`` (default: ``*`` matches any run of characters, ``/``
  included) or ``regex`` (each pattern a full-match regular expression).
- ``scopes``: the ID token claims whose values are a user's groups (``[groups]`` by
  default); for users signed in through OIDC.

AppProject roles (``Policy.with_project_roles``) add their ``p`` lines, each bounded to its
project's objects whatever its pattern, and ``g, GROUP, proj:P:R`` for their groups.

Evaluation: every ``p`` line whose subject is the user, one of the user's groups, or a role
any of them reaches through ``g`` lines (the default role too), and whose resource, action
and object match, counts; any ``deny`` wins, otherwise any ``allow`` allows, otherwise the
request is denied. The built-in policy (``role:readonly``, ``role:admin`` and
``g, admin, role:admin``) is always there, as in Argo CD.

Objects are ``PROJECT/NAME`` for Applications in the control namespace and
``PROJECT/NAMESPACE/NAME`` for Applications elsewhere (Argo CD's "apps in any namespace").
The Flux kinds, which Argo CD has no resource for, are the resources ``kustomizations``,
``helmreleases`` and ``sources`` with objects ``NAMESPACE/NAME``; their actions are ``get``,
``reconcile``, ``suspend`` and ``resume`` (see docs/rbac.md).

A policy that cannot be parsed is refused as a whole (``RbacError``): the caller keeps only
the built-in policy then, so a broken ConfigMap never grants anything.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from gitsail.kinds.argo_appproject_roles import RoleError, role_rules, roles_of
from gitsail.model import Obj

__all__ = [
    "BUILTIN_POLICY",
    "RESOURCES",
    "Policy",
    "RbacError",
    "app_object",
    "parse_policy",
]

# What the built-in roles may do; resources as Argo CD names them plus the Flux ones.
RESOURCES = (
    "applications",
    "applicationsets",
    "clusters",
    "projects",
    "repositories",
    "accounts",
    "certificates",
    "gpgkeys",
    "logs",
    "exec",
    "kustomizations",
    "helmreleases",
    "sources",
)

BUILTIN_POLICY = "\n".join(
    [
        *(f"p, role:readonly, {r}, get, *, allow" for r in RESOURCES if r != "exec"),
        *(f"p, role:admin, {r}, *, *, allow" for r in RESOURCES),
        "g, admin, role:admin",
    ]
)

MAX_POLICY_BYTES = 1024 * 1024
MAX_LINES = 20000


class RbacError(ValueError):
    """The policy cannot be parsed; the message names the line, never other data."""


@dataclass(frozen=True)
class Rule:
    subject: str
    resource: str
    action: str
    obj: str
    allow: bool
    prefix: str = ""  # a project role's: objects outside it never match


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # subject -> roles
    default: str = ""
    regex: bool = False
    scopes: tuple[str, ...] = ("groups",)

    def subjects(self, user: str, groups: Iterable[str] = ()) -> frozenset[str]:
        """``user``, its groups, the default role and every role they reach through ``g``."""
        start = [user, *groups]
        if self.default:
            start.append(self.default)
        seen: set[str] = set()
        todo = list(start)
        while todo:
            subject = todo.pop()
            if subject in seen:
                continue
            seen.add(subject)
            todo.extend(self.groups.get(subject, ()))
        return frozenset(seen)

    def enforce(
        self, user: str, resource: str, action: str, obj: str, groups: Iterable[str] = ()
    ) -> bool:
        """May ``user`` (in ``groups``) do ``action`` on ``resource`` ``obj``?"""
        subjects = self.subjects(user, groups)
        allowed = False
        for rule in self.rules:
            if rule.subject not in subjects:
                continue
            if rule.prefix and not obj.startswith(rule.prefix):
                continue
            if not (
                _match(rule.resource, resource, self.regex)
                and _match(rule.action, action, self.regex)
                and _match(rule.obj, obj, self.regex)
            ):
                continue
            if not rule.allow:
                return False
            allowed = True
        return allowed

    def with_project_roles(self, projects: Iterable[Obj]) -> tuple[Policy, list[str]]:
        """This policy plus the roles of ``projects`` (AppProjects): their ``p`` lines,
        limited to the project's own objects, and ``g, GROUP, proj:P:R`` for each of a
        role's groups. A role that cannot be read is left out whole; its error is returned."""
        rules = list(self.rules)
        groups = {k: set(v) for k, v in self.groups.items()}
        errors = []
        for project in projects:
            try:
                roles = roles_of(project)
            except RoleError as exc:  # the project's roles cannot be read: none counts
                errors.append(str(exc))
                continue
            parsed = []
            for role in roles:
                try:
                    parsed.append((role, role_rules(role)))
                except RoleError as exc:  # this role grants nothing; the others do
                    errors.append(str(exc))
            for role, role_lines in parsed:
                if self.regex:
                    # The object must still be inside the project: a pattern such as
                    # "p/.*|other/.*" is bounded by the prefix check, not trusted.
                    try:
                        for line in role_lines:
                            for pattern in (line.resource, line.action, line.obj):
                                if pattern != "*":
                                    _compile(pattern, True)
                    except re.error:
                        errors.append(f"project {role.project} role {role.name}: a bad regex")
                        continue
                for line in role_lines:
                    rules.append(
                        Rule(
                            line.subject,
                            line.resource,
                            line.action,
                            line.obj,
                            line.allow,
                            f"{line.project}/",
                        )
                    )
                for group in role.groups:
                    groups.setdefault(group, set()).add(role.subject)
        combined = Policy(
            rules=tuple(rules),
            groups={k: frozenset(v) for k, v in groups.items()},
            default=self.default,
            regex=self.regex,
            scopes=self.scopes,
        )
        return combined, errors


@lru_cache(maxsize=4096)
def _compile(pattern: str, regex: bool) -> re.Pattern[str]:
    if regex:
        return re.compile(pattern)
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _match(pattern: str, value: str, regex: bool) -> bool:
    if pattern == "*" or pattern == value:
        return True
    return _compile(pattern, regex).fullmatch(value) is not None


def app_object(project: str, namespace: str, name: str, control_namespace: str) -> str:
    """The RBAC object of an Application (``project/name`` or ``project/namespace/name``)."""
    if namespace == control_namespace:
        return f"{project}/{name}"
    return f"{project}/{namespace}/{name}"


def _lines(text: str, where: str) -> list[tuple[int, list[str]]]:
    out = []
    for number, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), 1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        out.append((number, cells))
        if len(out) > MAX_LINES:
            raise RbacError(f"{where}: more than {MAX_LINES} lines")
    return out


def parse_policy(data: Mapping[str, str] | None, *, builtin: bool = True) -> Policy:
    """The policy of an ``argocd-rbac-cm`` ConfigMap's ``data`` (None: the built-in only)."""
    data = data or {}
    mode = str(data.get("policy.matchMode") or "glob").strip()
    if mode not in ("glob", "regex"):
        raise RbacError(f"policy.matchMode {mode!r}: use glob or regex")
    texts = [("built-in policy", BUILTIN_POLICY)] if builtin else []
    if data.get("policy.csv"):
        texts.append(("policy.csv", str(data["policy.csv"])))
    for key in sorted(data):
        if key.startswith("policy.") and key.endswith(".csv") and key != "policy.csv":
            texts.append((key, str(data[key])))
    rules: list[Rule] = []
    groups: dict[str, set[str]] = {}
    total = 0
    for where, text in texts:
        total += len(text)
        if total > MAX_POLICY_BYTES:
            raise RbacError(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
        for number, cells in _lines(text, where):
            kind = cells[0]
            if kind == "p":
                if len(cells) not in (5, 6):
                    raise RbacError(
                        f"{where} line {number}: a p line has 5 or 6 fields "
                        "(p, subject, resource, action, object[, allow|deny])"
                    )
                effect = cells[5] if len(cells) == 6 else "allow"
                if effect not in ("allow", "deny"):
                    raise RbacError(f"{where} line {number}: effect must be allow or deny")
                if any(not c for c in cells[1:5]):
                    raise RbacError(f"{where} line {number}: an empty field")
                if mode == "regex":
                    for pattern in cells[2:5]:
                        if pattern == "*":
                            continue
                        try:
                            _compile(pattern, True)
                        except re.error:
                            raise RbacError(
                                f"{where} line {number}: not a regular expression"
                            ) from None
                rules.append(Rule(cells[1], cells[2], cells[3], cells[4], effect == "allow"))
            elif kind == "g":
                if len(cells) != 3 or not cells[1] or not cells[2]:
                    raise RbacError(f"{where} line {number}: a g line is g, subject, role")
                groups.setdefault(cells[1], set()).add(cells[2])
            else:
                raise RbacError(f"{where} line {number}: a line starts with p or g")
    scopes_text = str(data.get("scopes") or "[groups]").strip()
    scopes = tuple(s.strip().strip("'\"") for s in scopes_text.strip("[]").split(",") if s.strip())
    return Policy(
        rules=tuple(rules),
        groups={k: frozenset(v) for k, v in groups.items()},
        default=str(data.get("policy.default") or "").strip(),
        regex=mode == "regex",
        scopes=scopes or ("groups",),
    )
