"""Argo CD's ``AppProject``: frozen records and the pure decisions a project makes.

A project (``argoproj.io/v1alpha1``, in the control namespace) bounds what its Applications
may do, as Argo CD documents it (user-guide/projects, user-guide/sync_windows):

- ``sourceRepos``: globs of repository URLs; a ``!`` pattern denies. A repo is permitted
  when an allow pattern matches and no deny pattern does (a deny always wins; a list of
  only denials permits nothing). URLs are compared normalized (lower case, no ``.git``).
- ``destinations``: ``server`` / ``name`` / ``namespace`` globs, each may be ``!``-negated
  (``!kube-system`` matches every namespace but kube-system). A destination is permitted
  when one entry matches (server or name, and namespace) and no entry with a negated
  field excludes it.
- ``clusterResourceWhitelist`` / ``Blacklist``: group/kind globs for cluster-scoped kinds;
  an empty (or absent) whitelist permits none. ``namespaceResourceWhitelist`` /
  ``Blacklist``: for namespaced kinds; an absent whitelist permits all, an empty one none.
  A blacklisted kind is refused even when whitelisted.
- ``sourceNamespaces``: globs of the namespaces, besides the control namespace, whose
  Applications may use the project.
- ``syncWindows``: see ``windows_verdict``.

The ``default`` project, when it does not exist, is Argo CD's: every repo, destination and
kind (``DEFAULT_PROJECT_SPEC``); the controller creates it as Argo CD's server does.

Messages follow Argo CD's wording so what users search for matches.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitsail.kinds.argo_application import AppSpecError, parse_duration
from gitsail.kinds.argo_appproject_cron import CronError, CronSchedule, parse_cron
from gitsail.model import Obj

__all__ = [
    "API_VERSION",
    "DEFAULT_PROJECT",
    "DEFAULT_PROJECT_SPEC",
    "KIND",
    "Destination",
    "GroupKind",
    "OrphanIgnore",
    "Project",
    "SyncWindow",
    "WindowVerdict",
    "default_project_object",
    "destination_permitted",
    "kind_permitted",
    "repo_permitted",
    "source_namespace_permitted",
    "windows_verdict",
]

API_VERSION = "argoproj.io/v1alpha1"
KIND = "AppProject"
DEFAULT_PROJECT = "default"
DEFAULT_PROJECT_SPEC: dict[str, Any] = {
    "sourceRepos": ["*"],
    "destinations": [{"server": "*", "namespace": "*"}],
    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
}
# Bounds on tenant input (a project is written by whoever may write AppProjects).
MAX_ENTRIES = 1000  # per list
MAX_PATTERN = 1024  # characters per pattern
MAX_WINDOW = dt.timedelta(days=366)  # a window's duration


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupKind:
    group: str
    kind: str

    def matches(self, group: str, kind: str) -> bool:
        return _glob(self.group, group) and _glob(self.kind, kind)


@dataclass(frozen=True)
class OrphanIgnore:
    """An ``orphanedResources.ignore`` entry: group, kind and name globs (an empty kind or
    name matches any; an empty group only the core group), as Argo CD matches them."""

    group: str
    kind: str
    name: str

    def matches(self, group: str, kind: str, name: str) -> bool:
        return (
            (not self.kind or _glob(self.kind, kind))
            and _glob(self.group, group)
            and (not self.name or _glob(self.name, name))
        )


@dataclass(frozen=True)
class Destination:
    server: str = ""
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class SyncWindow:
    kind: str  # "allow" | "deny"
    schedule: str
    duration: dt.timedelta
    cron: CronSchedule
    time_zone: str = "UTC"
    applications: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    manual_sync: bool = False
    and_operator: bool = False
    description: str = ""

    def active(self, now: dt.datetime) -> bool:
        local = now.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        return (
            self.cron.last_fire(local.replace(second=0, microsecond=0), self.duration) is not None
        )

    def matches(self, app: str, namespace: str, clusters: Sequence[str]) -> bool:
        """Whether the window applies to an app (its name, destination namespace and
        cluster server/name); the options are OR-ed unless ``andOperator``."""
        checks = []
        if self.applications:
            checks.append(any(_glob(p, app) for p in self.applications))
        if self.namespaces:
            checks.append(any(_glob(p, namespace) for p in self.namespaces))
        if self.clusters:
            checks.append(any(_glob(p, c) for p in self.clusters for c in clusters if c))
        if not checks:
            return False
        return all(checks) if self.and_operator else any(checks)

    def to_row(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "status": "Active" if self.active(now) else "Inactive",
            "kind": self.kind,
            "schedule": self.schedule,
            "duration": _show_duration(self.duration),
            "timeZone": self.time_zone,
            "applications": ",".join(self.applications) or "-",
            "namespaces": ",".join(self.namespaces) or "-",
            "clusters": ",".join(self.clusters) or "-",
            "manualSync": "Enabled" if self.manual_sync else "Disabled",
        }


@dataclass(frozen=True)
class Project:
    name: str
    namespace: str
    description: str = ""
    source_repos: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()
    cluster_whitelist: tuple[GroupKind, ...] = ()
    cluster_blacklist: tuple[GroupKind, ...] = ()
    namespace_whitelist: tuple[GroupKind, ...] | None = None  # None: all permitted
    namespace_blacklist: tuple[GroupKind, ...] = ()
    source_namespaces: tuple[str, ...] = ()
    sync_windows: tuple[SyncWindow, ...] = ()
    orphaned_warn: bool | None = None  # orphanedResources set: warn (True) or not
    orphaned_ignore: tuple[OrphanIgnore, ...] = ()  # orphanedResources.ignore

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Project:
        """Read an AppProject; AppSpecError names the first field that is unusable."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise AppSpecError("AppProject spec must be an object")
        orphaned = spec.get("orphanedResources")
        return cls(
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or ""),
            description=str(spec.get("description") or ""),
            source_repos=_strings(spec, "sourceRepos"),
            destinations=tuple(
                Destination(
                    server=_str(d, "server"), name=_str(d, "name"), namespace=_str(d, "namespace")
                )
                for d in _objects(spec, "destinations")
            ),
            cluster_whitelist=_group_kinds(spec, "clusterResourceWhitelist"),
            cluster_blacklist=_group_kinds(spec, "clusterResourceBlacklist"),
            namespace_whitelist=(
                None
                if spec.get("namespaceResourceWhitelist") is None
                else _group_kinds(spec, "namespaceResourceWhitelist")
            ),
            namespace_blacklist=_group_kinds(spec, "namespaceResourceBlacklist"),
            source_namespaces=_strings(spec, "sourceNamespaces"),
            sync_windows=tuple(
                _window(w, i) for i, w in enumerate(_objects(spec, "syncWindows"), 1)
            ),
            orphaned_warn=(
                None if not isinstance(orphaned, Mapping) else orphaned.get("warn") is not False
            ),
            orphaned_ignore=_orphan_ignores(orphaned),
        )


def default_project_object(namespace: str) -> Obj:
    """The ``default`` AppProject Argo CD's server creates when it is missing."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": DEFAULT_PROJECT, "namespace": namespace},
        "spec": {k: list(v) for k, v in DEFAULT_PROJECT_SPEC.items()},
    }


# -- decisions ------------------------------------------------------------------------------


def _glob(pattern: str, value: str) -> bool:
    """Argo CD's glob (``*`` also crosses ``/``; ``?``, ``[...]`` and ``{a,b}``)."""
    if pattern == "*":
        return True
    return any(fnmatch.fnmatchcase(value, p) for p in _braces(pattern))


def _braces(pattern: str) -> list[str]:
    """``{a,b}`` alternatives expanded, bounded: at most 8 groups and 64 patterns (what is
    left unexpanded is matched literally), so a pattern cannot fan out without limit."""
    out = [pattern]
    for _ in range(8):
        expanded: list[str] = []
        changed = False
        for item in out:
            match = re.search(r"\{([^{}]*)\}", item)
            if match is None:
                expanded.append(item)
                continue
            changed = True
            head, tail = item[: match.start()], item[match.end() :]
            expanded += [head + option + tail for option in match.group(1).split(",")]
        out = expanded[:64]
        if not changed:
            break
    return out


def _negatable(pattern: str, value: str) -> bool:
    if pattern.startswith("!"):
        return not _glob(pattern[1:], value)
    return _glob(pattern, value)


def normalize_repo(url: str) -> str:
    url = url.strip().lower()
    return url.removesuffix("/").removesuffix(".git")


def repo_permitted(project: Project, repo_url: str) -> bool:
    """Argo CD's ``IsSourcePermitted``: a matching ``!`` pattern denies; otherwise one
    allow pattern must match."""
    repo = normalize_repo(repo_url)
    allowed = False
    for pattern in project.source_repos:
        if pattern.startswith("!"):
            if _glob(normalize_repo(pattern[1:]), repo):
                return False
        elif pattern == "*" or _glob(normalize_repo(pattern), repo):
            allowed = True
    return allowed


def destination_permitted(project: Project, server: str, name: str, namespace: str) -> bool:
    """Argo CD's destination check: one entry matches (server or name, and namespace),
    and no entry whose negated field excludes this destination."""
    any_match = False
    for item in project.destinations:
        name_ok = bool(name) and _negatable(item.name, name)
        server_ok = bool(server) and _negatable(item.server, server)
        namespace_ok = _negatable(item.namespace, namespace)
        if (server_ok or name_ok) and namespace_ok:
            any_match = True
        elif (
            (not name_ok and item.name.startswith("!"))
            or (not server_ok and item.server.startswith("!"))
            or (not namespace_ok and item.namespace.startswith("!"))
        ):
            return False
    return any_match


def kind_permitted(project: Project, group: str, kind: str, *, namespaced: bool) -> bool:
    """Argo CD's ``IsGroupKindPermitted``."""
    if namespaced:
        white = project.namespace_whitelist
        listed = white is None or any(g.matches(group, kind) for g in white)
        return listed and not any(g.matches(group, kind) for g in project.namespace_blacklist)
    listed = any(g.matches(group, kind) for g in project.cluster_whitelist)
    return listed and not any(g.matches(group, kind) for g in project.cluster_blacklist)


def source_namespace_permitted(project: Project, app_namespace: str, control: str) -> bool:
    """Applications in the control namespace may use any project; elsewhere only a
    project that lists their namespace in ``sourceNamespaces``."""
    if app_namespace == control:
        return True
    return any(_glob(p, app_namespace) for p in project.source_namespaces)


@dataclass(frozen=True)
class WindowVerdict:
    """What the project's sync windows say about one app at one moment."""

    automated: bool  # an automated sync may run
    manual: bool  # a manual sync may run
    active: tuple[SyncWindow, ...]  # the matching windows open now
    matching: tuple[SyncWindow, ...]  # every window that applies to the app

    @property
    def message(self) -> str:
        """Why syncs are blocked ("" when automated syncs may run)."""
        if self.automated:
            return ""
        deny = [w for w in self.active if w.kind == "deny"]
        if deny:
            shown = "; ".join(f"deny {w.schedule} for {_show_duration(w.duration)}" for w in deny)
            return f"Sync window blocks syncs: active deny window ({shown})"
        return "Sync window blocks syncs: no allow window is active now"


def windows_verdict(
    project: Project,
    app: str,
    namespace: str,
    clusters: Sequence[str],
    now: Callable[[], dt.datetime],
) -> WindowVerdict:
    """Argo CD's rules: no matching window, all syncs allowed; a matching active deny
    blocks (deny beats allow); with matching allow windows, syncs only inside an active
    one. ``manualSync`` on the deciding windows lets manual syncs through."""
    at = now()
    matching = tuple(w for w in project.sync_windows if w.matches(app, namespace, clusters))
    active = tuple(w for w in matching if w.active(at))
    allows = [w for w in matching if w.kind == "allow"]
    active_deny = [w for w in active if w.kind == "deny"]
    active_allow = [w for w in active if w.kind == "allow"]
    if active_deny:
        automated = False
        manual = all(w.manual_sync for w in active_deny)
    elif allows and not active_allow:
        automated = False
        manual = any(w.manual_sync for w in allows)
    else:
        automated = manual = True
    return WindowVerdict(automated, manual, active, matching)


# -- parsing helpers ------------------------------------------------------------------------


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_PATTERN:
        raise AppSpecError(f"AppProject field {key!r} must be a string of <= {MAX_PATTERN}")
    return value


def _list(spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise AppSpecError(f"AppProject spec.{key} must be a list")
    if len(value) > MAX_ENTRIES:
        raise AppSpecError(f"AppProject spec.{key} has more than {MAX_ENTRIES} entries")
    return value


def _strings(spec: Mapping[str, Any], key: str) -> tuple[str, ...]:
    out = []
    for item in _list(spec, key):
        if not isinstance(item, str) or len(item) > MAX_PATTERN:
            raise AppSpecError(f"AppProject spec.{key} entries must be strings")
        out.append(item)
    return tuple(out)


def _objects(spec: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    for item in _list(spec, key):
        if not isinstance(item, Mapping):
            raise AppSpecError(f"AppProject spec.{key} entries must be objects")
        yield item


def _group_kinds(spec: Mapping[str, Any], key: str) -> tuple[GroupKind, ...]:
    return tuple(GroupKind(_str(g, "group"), _str(g, "kind")) for g in _objects(spec, key))


def _orphan_ignores(orphaned: Any) -> tuple[OrphanIgnore, ...]:
    if orphaned is None:
        return ()
    if not isinstance(orphaned, Mapping):
        raise AppSpecError("AppProject spec.orphanedResources must be an object")
    warn = orphaned.get("warn")
    if warn is not None and not isinstance(warn, bool):
        raise AppSpecError("AppProject spec.orphanedResources.warn must be true or false")
    return tuple(
        OrphanIgnore(_str(i, "group"), _str(i, "kind"), _str(i, "name"))
        for i in _objects(orphaned, "ignore")
    )


def _window(obj: Mapping[str, Any], number: int) -> SyncWindow:
    where = f"AppProject spec.syncWindows[{number - 1}]"
    kind = _str(obj, "kind")
    if kind not in ("allow", "deny"):
        raise AppSpecError(f"{where}.kind must be allow or deny, not {kind!r}")
    schedule = _str(obj, "schedule")
    try:
        cron = parse_cron(schedule)
    except CronError as exc:
        raise AppSpecError(f"{where}.schedule: {exc}") from exc
    seconds = parse_duration(_str(obj, "duration") or None, -1.0)
    if seconds <= 0:
        raise AppSpecError(f"{where}.duration must be set (e.g. 1h)")
    duration = min(dt.timedelta(seconds=seconds), MAX_WINDOW)
    zone = _str(obj, "timeZone") or "UTC"
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise AppSpecError(f"{where}.timeZone {zone!r} is not a known time zone") from exc
    return SyncWindow(
        kind=kind,
        schedule=schedule,
        duration=duration,
        cron=cron,
        time_zone=zone,
        applications=_strings(obj, "applications"),
        namespaces=_strings(obj, "namespaces"),
        clusters=_strings(obj, "clusters"),
        manual_sync=bool(obj.get("manualSync")),
        and_operator=bool(obj.get("andOperator")),
        description=_str(obj, "description"),
    )


def _show_duration(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")
