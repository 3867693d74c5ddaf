"""AppProject enforcement for the engine (``gitsail.app.admission.Admission``).

``ProjectAdmission`` reads an Application's project through ``read_project`` (the
controller's watch cache of AppProjects) and answers the engine's three questions with
Argo CD's wording; the decisions themselves are the pure functions of
``gitsail.kinds.argo_appproject``. Only Argo CD Applications are checked (other kinds
have no project).

- A missing ``default`` project is created (as Argo CD's server does) and, until it is
  seen, taken as Argo CD's default (everything permitted). Any other missing project
  refuses its apps ("Application referencing project X which does not exist").
- When the AppProject CRD is not served, ``default`` is Argo CD's default and every other
  project is missing: an unknown project never permits anything.
- ``apps_of(project)`` lists the Applications that asked about a project, so a change to
  the project re-queues them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from gitsail import codec
from gitsail.app.admission import INVALID_SPEC
from gitsail.app.model import IN_CLUSTER, Delivery
from gitsail.kinds.argo_application import AppSpecError
from gitsail.kinds.argo_appproject import (
    API_VERSION,
    DEFAULT_PROJECT,
    KIND,
    Project,
    WindowVerdict,
    default_project_object,
    destination_permitted,
    kind_permitted,
    repo_permitted,
    source_namespace_permitted,
    windows_verdict,
)
from gitsail.kinds.argo_appproject_orphans import (
    ORPHAN_READ_TTL,
    NamespaceReads,
    Orphans,
    find_orphans,
)
from gitsail.kube import Conflict, Kube, KubeError, NotFoundKind
from gitsail.model import Obj, ResourceKey
from gitsail.source import redact_url

__all__ = [
    "SYNC_WINDOW_CONDITION",
    "ProjectAdmission",
    "in_process_admission",
    "retype_error",
    "window_blocked",
    "window_conditions",
]

log = logging.getLogger(__name__)

SYNC_WINDOW_CONDITION = "SyncWindowBlocked"
ReadProject = Callable[[str], Awaitable["Obj | None"]]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def project_name(app: Delivery) -> str:
    return str((app.origin.get("spec") or {}).get("project") or DEFAULT_PROJECT)


def destination_of(app: Delivery) -> tuple[str, str]:
    """(server, name) of the app's destination; ``in-cluster`` is the local server."""
    dest = (app.origin.get("spec") or {}).get("destination") or {}
    server = app.destination_server or str(dest.get("server") or "")
    name = str(dest.get("name") or "")
    if name == "in-cluster" and not server:
        server = IN_CLUSTER
    if server == IN_CLUSTER and not name:
        name = "in-cluster"
    return server, name


class ProjectAdmission:
    def __init__(
        self,
        kube: Kube,
        control_namespace: str,
        read_project: ReadProject,
        *,
        now: Callable[[], dt.datetime] = _utcnow,
        create_default: bool = True,
        clusters: Callable[[str, str], tuple[str, str]] | None = None,
    ) -> None:
        # (server, name) -> the same with the missing half filled from the registered
        # clusters, so a project's destinations match by name and by server as in Argo CD.
        self.clusters = clusters
        self.kube = kube
        self.control_namespace = control_namespace
        self.read_project = read_project
        self.now = now
        self.create_default = create_default
        self._apps: dict[str, set[tuple[str, str]]] = {}
        self._parsed: dict[str, tuple[tuple[str, str, str], Project | None, str]] = {}
        self._judged: dict[str, str] = {}  # project -> digest of the spec its apps were judged by
        self._spec_digests: dict[str, tuple[Any, str]] = {}  # project -> (spec object, digest)
        # orphanedResources: one read of a namespace shared by its apps for a while
        self.reads = NamespaceReads(ORPHAN_READ_TTL)

    def _destination(self, app: Delivery) -> tuple[str, str]:
        server, name = destination_of(app)
        return self.clusters(server, name) if self.clusters is not None else (server, name)

    def apps_of(self, project: str) -> list[tuple[str, str]]:
        return sorted(self._apps.get(project, ()))

    def judged_with(self, project: str, obj: Obj) -> bool:
        """Whether ``obj`` is the ``default`` project its apps were judged with before it
        existed (this admission created it; seen through the watch, it has nothing to teach
        them, so they are not re-queued). Asked once per such creation: any later version,
        even one equal to it again, re-queues them. A project read from the cache never
        marks its apps judged — an app's poll may read a changed project before the
        project's own reconcile, and the project's other apps must still learn of it."""
        return self._judged.pop(project, None) == self._spec_digest(project, obj)

    def _spec_digest(self, project: str, obj: Obj) -> str:
        """The digest of ``obj``'s spec, computed once per spec object (a watch cache hands
        out the same object until the project changes; every poll of its apps asks)."""
        spec = obj.get("spec")
        known = self._spec_digests.get(project)
        if known is not None and known[0] is spec:
            return known[1]
        digest = codec.digest(spec)
        if len(self._spec_digests) > 10_000:
            self._spec_digests.clear()
        self._spec_digests[project] = (spec, digest)
        return digest

    async def stamp(self, app: Delivery) -> object:
        """The app's project as read now (its record, or why it cannot be used)."""
        return await self.project_for(app)

    async def project_for(self, app: Delivery) -> tuple[Project | None, str]:
        """The app's project, or None and why it cannot be used."""
        name = project_name(app)
        for apps in self._apps.values():
            apps.discard((app.namespace, app.name))
        self._apps.setdefault(name, set()).add((app.namespace, app.name))
        try:
            obj = await self.read_project(name)
        except NotFoundKind:
            obj = None
            served = False
        else:
            served = True
        if obj is None and name == DEFAULT_PROJECT:
            obj = default_project_object(self.control_namespace)
            self._judged[name] = self._spec_digest(name, obj)  # before it exists
            if served and self.create_default:
                await self._create_default(obj)
        if obj is None:
            self._judged.pop(name, None)
            return None, f"Application referencing project {name} which does not exist"
        meta = obj.get("metadata") or {}
        version = (name, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == version and version[2]:
            return cached[1], cached[2]
        try:
            found: tuple[Project | None, str] = (Project.from_object(obj), "")
        except AppSpecError as exc:
            found = (None, f"project {name} is invalid: {exc}")
        self._parsed[name] = (version, *found)  # one parse per version of the project
        return found

    async def _create_default(self, obj: Obj) -> None:
        try:
            await self.kube.create(obj)
            log.info("created the default AppProject in %s", self.control_namespace)
        except Conflict:
            pass  # someone else made it meanwhile
        except KubeError as exc:
            log.warning("cannot create the default AppProject: %s", exc)

    # -- Admission -------------------------------------------------------------------------

    async def admit(self, app: Delivery) -> str:
        if app.kind != "Application":
            return ""
        project, problem = await self.project_for(app)
        if project is None:
            return problem
        name = project.name
        if not source_namespace_permitted(project, app.namespace, self.control_namespace):
            return (
                f"application '{app.name}' in namespace '{app.namespace}' is not permitted "
                f"to use project '{name}'"
            )
        if not repo_permitted(project, app.source.url):
            shown = redact_url(app.source.url)
            return f"application repo {shown} is not permitted in project '{name}'"
        server, cluster = self._destination(app)
        if not destination_permitted(project, server, cluster, app.destination_namespace):
            return (
                f"application destination server '{server}' and namespace "
                f"'{app.destination_namespace}' do not match any of the allowed destinations "
                f"in project '{name}'"
            )
        return ""

    async def admit_objects(self, app: Delivery, objects: Sequence[Obj]) -> str:
        if app.kind != "Application":
            return ""
        project, problem = await self.project_for(app)
        if project is None:
            return problem
        server, cluster = self._destination(app)
        if (
            app.policy.options.flag("CreateNamespace")
            and app.destination_namespace
            and not kind_permitted(project, "", "Namespace", namespaced=False)
            and await self.kube.get("v1", "Namespace", app.destination_namespace) is None
        ):  # the sync would create it (Argo CD refuses the same)
            return f"resource :Namespace is not permitted in project {project.name}"
        scopes = _crd_scopes(objects)
        for obj in objects:
            api_version = str(obj.get("apiVersion") or "")
            kind = str(obj.get("kind") or "")
            group = api_version.rpartition("/")[0]
            meta = obj.get("metadata") or {}
            try:
                namespaced = (await self.kube.resource_for(api_version, kind)).namespaced
            except NotFoundKind:  # a CRD of this app: its manifest says; else namespaced
                namespaced = scopes.get((group, kind), True)
            if not kind_permitted(project, group, kind, namespaced=namespaced):
                return f"resource {group}:{kind} is not permitted in project {project.name}"
            if namespaced:
                namespace = str(meta.get("namespace") or app.destination_namespace)
                if not destination_permitted(project, server, cluster, namespace):
                    return f"namespace {namespace} is not permitted in project '{project.name}'"
        return ""

    async def verdict(self, app: Delivery) -> WindowVerdict | None:
        project, _ = await self.project_for(app)
        if project is None:
            return None
        server, cluster = self._destination(app)
        return windows_verdict(
            project, app.name, app.destination_namespace, [server, cluster], self.now
        )

    async def orphans(
        self,
        app: Delivery,
        kube: Kube,
        managed: Sequence[ResourceKey],
        *,
        warn_only: bool,
        fresh: bool = False,
    ) -> Orphans | None:
        """The app's orphaned resources on ``kube`` (its destination), or None when its
        project does not look for them (no ``orphanedResources``; with ``warn_only``, also
        ``warn: false``), it has no destination namespace, or its project is unusable."""
        if app.kind != "Application" or not app.destination_namespace:
            return None
        project, _ = await self.project_for(app)
        if project is None or project.orphaned_warn is None:
            return None
        if warn_only and not project.orphaned_warn:
            return None
        return await find_orphans(
            kube, project, app.destination_namespace, managed, reads=self.reads, fresh=fresh
        )

    async def sync_refused(self, app: Delivery, *, automated: bool) -> str:
        if app.kind != "Application":
            return ""
        verdict = await self.verdict(app)
        if verdict is None or (verdict.automated if automated else verdict.manual):
            return ""
        if automated:
            return verdict.message
        return f"Cannot sync: Blocked by sync window. {verdict.message}"


def in_process_admission(kube: Kube, control_namespace: str) -> ProjectAdmission:
    """Admission for an engine run by the CLI (``--in-process``): projects read from the API
    server on each use; a missing ``default`` is Argo CD's default but not created."""

    async def read(name: str) -> Obj | None:
        return await kube.get(API_VERSION, KIND, name, control_namespace)

    return ProjectAdmission(kube, control_namespace, read, create_default=False)


def _crd_scopes(objects: Sequence[Obj]) -> dict[tuple[str, str], bool]:
    scopes: dict[tuple[str, str], bool] = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        if isinstance(spec, Mapping) and isinstance(names, Mapping):
            key = (str(spec.get("group") or ""), str(names.get("kind") or ""))
            scopes[key] = spec.get("scope") != "Cluster"
    return scopes


def retype_error(status: dict[str, Any], reason: str) -> dict[str, Any]:
    """A failed comparison's status with its ``ComparisonError`` condition typed as Argo CD
    types a project violation (``InvalidSpecError``); other reasons are left as they are."""
    if reason != INVALID_SPEC:
        return status
    conditions = [
        {**c, "type": INVALID_SPEC} if c.get("type") == "ComparisonError" else c
        for c in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions or None}


def window_blocked(status: Mapping[str, Any]) -> bool:
    """Whether a status carries the sync-window condition (dropped once syncs may run)."""
    return any(
        isinstance(c, Mapping) and c.get("type") == SYNC_WINDOW_CONDITION
        for c in status.get("conditions") or []
    )


def window_conditions(app_obj: Obj, message: str, at: str) -> dict[str, Any]:
    """A status fragment: the app's conditions with the sync-window one (kept with its
    time while the message stays the same)."""
    old = [
        c for c in ((app_obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)
    ]
    same = next(
        (c for c in old if c.get("type") == SYNC_WINDOW_CONDITION and c.get("message") == message),
        None,
    )
    gone = (SYNC_WINDOW_CONDITION, "ComparisonError", INVALID_SPEC, "UnknownError")
    kept = [c for c in old if c.get("type") not in gone]  # the comparison succeeded
    mine = same or {"type": SYNC_WINDOW_CONDITION, "message": message, "lastTransitionTime": at}
    return {"conditions": [*kept, mine]}
