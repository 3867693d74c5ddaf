"""Orphaned resources of an Application, as Argo CD's ``orphanedResources`` defines them.

A project with ``spec.orphanedResources`` (``warn``, default true once the block is set;
``ignore``: group/kind/name globs) makes its Applications look at their destination
namespace: an orphaned resource is a **top-level namespaced object in that namespace that
no delivery tracks**. Left out, as Argo CD leaves them out:

- objects with ``ownerReferences`` (Kubernetes derived them: ReplicaSets, Pods, Endpoints…);
- objects carrying any owner's mark (an Argo CD tracking id, Flux's owner labels:
  ``gitsail.sync.ownership.owners_of``), and what the app itself desires or holds in its
  inventory (an object not applied yet is not an orphan);
- what Kubernetes makes in every namespace: the ``default`` ServiceAccount, the
  ``kube-root-ca.crt`` ConfigMap, the ``kubernetes`` Service of ``default``;
- kinds the project does not permit (``namespaceResourceWhitelist`` / ``Blacklist``) and
  ``ignore`` entries;
- kinds that are noise, not objects anyone writes (Events, Endpoints, EndpointSlices,
  Leases, metrics, access reviews), as Argo CD's default resource exclusions.

``find_orphans`` reads the namespace with bounded metadata-only LISTs (one request per
kind, at most ``ORPHAN_READ_LIMIT`` objects in all; a Secret's data is never read); a
kind the reader may not list is skipped. Nothing here writes, deletes or changes an
orphan. With ``warn`` the app carries ``OrphanedResourceWarning`` ("Application has N
orphaned resources"), cleared when there are none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from gitsail.kinds.argo_appproject import Project, kind_permitted
from gitsail.kube import Forbidden, Kube, NotFound, NotFoundKind
from gitsail.model import Obj, ResourceKey
from gitsail.sync.ownership import owners_of

__all__ = [
    "ORPHAN_CONDITION",
    "ORPHAN_READ_LIMIT",
    "ORPHAN_READ_TTL",
    "NamespaceReads",
    "Orphans",
    "find_orphans",
    "known_exclusion",
    "orphaned",
]

ORPHAN_CONDITION = "OrphanedResourceWarning"
ORPHAN_READ_LIMIT = 5000  # objects read per look at a namespace (an outsider makes them)
ORPHAN_READ_TTL = 60.0  # seconds a namespace's read is shared by its apps
# Kinds that are not objects anyone delivers (Argo CD's default resource.exclusions).
_SKIPPED_GROUPS = frozenset(
    {
        "events.k8s.io",
        "metrics.k8s.io",
        "coordination.k8s.io",
        "authorization.k8s.io",
        "authentication.k8s.io",
    }
)
_SKIPPED_KINDS = frozenset(
    {("", "Event"), ("", "Endpoints"), ("discovery.k8s.io", "EndpointSlice"), ("", "Binding")}
)


@dataclass(frozen=True)
class Orphans:
    """The orphaned resources of one namespace; ``truncated`` when the namespace held more
    objects than were read (the count is then a lower bound)."""

    namespace: str
    keys: tuple[ResourceKey, ...]
    truncated: bool = False

    def message(self) -> str:
        """The condition's message (Argo CD's words), or "" when there are none."""
        if not self.keys:
            return ""
        least = "at least " if self.truncated else ""
        return f"Application has {least}{len(self.keys)} orphaned resources"

    def rows(self) -> list[dict[str, str]]:
        return [
            {"group": k.group, "kind": k.kind, "namespace": k.namespace, "name": k.name}
            for k in self.keys
        ]


def known_exclusion(project: Project, key: ResourceKey) -> bool:
    """What Kubernetes makes in every namespace, and the project's ``ignore`` entries."""
    if key.group == "" and (
        (key.kind == "ServiceAccount" and key.name == "default")
        or (key.kind == "ConfigMap" and key.name == "kube-root-ca.crt")
        or (key.kind == "Service" and key.name == "kubernetes" and key.namespace == "default")
    ):
        return True
    return any(i.matches(key.group, key.kind, key.name) for i in project.orphaned_ignore)


def orphaned(
    project: Project,
    namespace: str,
    objects: Iterable[Obj],
    managed: Collection[ResourceKey] = (),
) -> list[ResourceKey]:
    """The orphaned resources among ``objects`` (read from ``namespace``), sorted."""
    found: set[ResourceKey] = set()
    for obj in objects:
        key = ResourceKey.of(obj)
        meta = obj.get("metadata") or {}
        if not key.namespace or key.namespace != namespace or not key.name:
            continue
        if (key.group, key.kind) in _SKIPPED_KINDS or key.group in _SKIPPED_GROUPS:
            continue
        if meta.get("ownerReferences") or owners_of(obj) or key in managed:
            continue
        if meta.get("deletionTimestamp"):  # on its way out (a foreground deletion waits
            continue  # for its dependents): not left behind
        if not kind_permitted(project, key.group, key.kind, namespaced=True):
            continue
        if known_exclusion(project, key):
            continue
        found.add(key)
    return sorted(found, key=lambda k: (k.group, k.kind, k.name))


async def read_namespace(
    kube: Kube, namespace: str, *, limit: int = ORPHAN_READ_LIMIT
) -> tuple[list[Obj], bool]:
    """Metadata of the objects of ``namespace``: every served, listable, namespaced kind in
    its preferred version (one LIST each), at most ``limit`` in all; and whether some were
    left out. Kinds the client may not list are skipped."""
    mapper = await kube.discover()
    seen: set[tuple[str, str]] = set()
    objects: list[Obj] = []
    for info in mapper.resources():
        what = (info.group, info.kind)
        if not info.namespaced or "list" not in info.verbs or what in seen:
            continue
        seen.add(what)  # discovery lists the preferred version first
        if what in _SKIPPED_KINDS or info.group in _SKIPPED_GROUPS:
            continue
        room = limit - len(objects)
        if room <= 0:
            return objects, True
        try:
            items, more = await kube.list_metadata(info, namespace, limit=room)
        except (Forbidden, NotFound, NotFoundKind):
            continue  # not ours to see (RBAC), or gone since discovery
        objects.extend(items)
        if more:
            return objects, True
    return objects, False


class NamespaceReads:
    """``read_namespace`` results shared for ``ttl`` seconds per (client, namespace): the
    apps of one namespace cost one read of it per ``ttl``, not one each."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._reads: dict[tuple[int, str], tuple[float, list[Obj], bool]] = {}

    async def read(
        self, kube: Kube, namespace: str, *, fresh: bool = False, limit: int = ORPHAN_READ_LIMIT
    ) -> tuple[list[Obj], bool]:
        key = (id(kube), namespace)
        now = self.clock()
        kept = self._reads.get(key)
        if kept is not None and not fresh and now - kept[0] < self.ttl:
            return kept[1], kept[2]
        objects, truncated = await read_namespace(kube, namespace, limit=limit)
        self._reads = {k: v for k, v in self._reads.items() if now - v[0] < self.ttl}
        self._reads[key] = (now, objects, truncated)
        return objects, truncated


async def find_orphans(
    kube: Kube,
    project: Project,
    namespace: str,
    managed: Sequence[ResourceKey] = (),
    *,
    limit: int = ORPHAN_READ_LIMIT,
    reads: NamespaceReads | None = None,
    fresh: bool = False,
) -> Orphans:
    """The orphaned resources of ``namespace`` on ``kube`` for an app of ``project``
    (through ``reads`` when given: a read shared with the namespace's other apps)."""
    if reads is not None:
        objects, truncated = await reads.read(kube, namespace, fresh=fresh, limit=limit)
    else:
        objects, truncated = await read_namespace(kube, namespace, limit=limit)
    keys = orphaned(project, namespace, objects, frozenset(managed))
    return Orphans(namespace, tuple(keys), truncated)
