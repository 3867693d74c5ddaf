"""Pure functions from cached objects to what the API and the pages show.

Filters, pagination, one-line summaries of every kind, counts by sync and health, and an
Application's resource tree (its managed resources from ``status.resources`` and what
Kubernetes derived from them, found by owner references).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitsail.model import Obj
from gitsail.source import redact_url

__all__ = [
    "MAX_PAGE",
    "Filters",
    "Page",
    "counts",
    "filter_objects",
    "paginate",
    "resource_tree",
    "summary",
]

MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_TEXT = 200
MAX_LABEL_SELECTOR = 1000
_LABEL_TERM = re.compile(r"^([A-Za-z0-9./_-]{1,317})(?:(!=|==|=)([A-Za-z0-9._-]{0,63}))?$")


class FilterError(ValueError):
    """A filter or page parameter that cannot be read."""


@dataclass(frozen=True)
class Filters:
    project: tuple[str, ...] = ()
    namespace: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()
    sync: tuple[str, ...] = ()
    health: tuple[str, ...] = ()
    selector: tuple[tuple[str, str, str], ...] = ()  # (key, op, value); op "" = exists
    text: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, Sequence[str]]) -> Filters:
        """From query parameters (each may repeat or be comma-separated)."""

        def many(key: str) -> tuple[str, ...]:
            out: list[str] = []
            for value in query.get(key, ()):
                out.extend(v.strip() for v in value.split(",") if v.strip())
            if len(out) > 100:
                raise FilterError(f"too many {key} values (100 at most)")
            return tuple(out)

        text = " ".join(query.get("search", ())).strip()
        if len(text) > MAX_TEXT:
            raise FilterError(f"search text is longer than {MAX_TEXT} characters")
        selector_text = ",".join(query.get("selector", ()))
        if len(selector_text) > MAX_LABEL_SELECTOR:
            raise FilterError("label selector is too long")
        terms: list[tuple[str, str, str]] = []
        for term in (t.strip() for t in selector_text.split(",") if t.strip()):
            match = _LABEL_TERM.match(term.replace(" ", ""))
            if not match:
                raise FilterError(f"label selector term {term!r}: use key, key=value, key!=value")
            key, op, value = match.groups()
            terms.append((key, "=" if op == "==" else (op or ""), value or ""))
        return cls(
            project=many("projects") + many("project"),
            namespace=many("appNamespace") + many("namespace"),
            cluster=many("cluster"),
            sync=many("sync"),
            health=many("health"),
            selector=tuple(terms),
            text=text.lower(),
        )

    def query(self) -> str:
        """The filters as a query string (for links that keep them)."""
        parts = [f"project={p}" for p in self.project]
        parts += [f"namespace={n}" for n in self.namespace]
        parts += [f"cluster={c}" for c in self.cluster]
        parts += [f"sync={s}" for s in self.sync]
        parts += [f"health={h}" for h in self.health]
        if self.text:
            parts.append(f"search={self.text}")
        return "&".join(parts)


@dataclass(frozen=True)
class Page:
    items: list[Obj]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _ready(obj: Obj) -> tuple[str, str]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return str(c.get("status") or "Unknown"), str(c.get("message") or "")
    return "Unknown", ""


# Summaries of cached objects, by identity: the caches replace an object on every change
# and never mutate it, so a row stays right as long as the very object is the one cached.
_SUMMARIES: dict[int, tuple[Obj, dict[str, str]]] = {}
_MAX_SUMMARIES = 50000


def summary(kind: str, obj: Obj) -> dict[str, str]:
    """One row: namespace, name, project, sync, health, revision, source, destination.

    Memoized per object (callers must not change the row)."""
    hit = _SUMMARIES.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    row = _summary(kind, obj)
    if len(_SUMMARIES) >= _MAX_SUMMARIES:
        _SUMMARIES.clear()
    _SUMMARIES[id(obj)] = (obj, row)
    return row


def _summary(kind: str, obj: Obj) -> dict[str, str]:
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    row = {
        "kind": kind,
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "project": "",
        "sync": "",
        "health": "",
        "revision": "",
        "source": "",
        "destination": "",
        "cluster": "",
        "message": "",
        "operation": "",
        "suspended": "",
    }
    if kind == "Application":
        source = spec.get("source") or ((spec.get("sources") or [{}])[0]) or {}
        dest = spec.get("destination") or {}
        row.update(
            project=str(spec.get("project") or "default"),
            sync=str((status.get("sync") or {}).get("status") or "Unknown"),
            health=str((status.get("health") or {}).get("status") or "Unknown"),
            revision=str((status.get("sync") or {}).get("revision") or "")[:12],
            source=redact_url(str(source.get("repoURL") or ""))
            + (f" {source.get('path') or source.get('chart') or ''}".rstrip()),
            destination=str(dest.get("namespace") or ""),
            cluster=str(dest.get("name") or dest.get("server") or ""),
            operation=str((status.get("operationState") or {}).get("phase") or ""),
        )
        return row
    ready, message = _ready(obj)
    row["health"] = {"True": "Healthy", "False": "Degraded"}.get(ready, "Progressing")
    row["message"] = message
    row["suspended"] = "true" if spec.get("suspend") is True else ""
    if kind in ("Kustomization", "HelmRelease"):
        ref = (
            spec.get("sourceRef")
            or (spec.get("chart") or {}).get("spec", {}).get("sourceRef")
            or {}
        )
        row["source"] = f"{ref.get('kind', '')}/{ref.get('name', '')}".strip("/")
        row["revision"] = str(
            status.get("lastAppliedRevision") or status.get("lastAttemptedRevision") or ""
        )
        row["destination"] = str(spec.get("targetNamespace") or row["namespace"])
        row["sync"] = (
            "Synced" if ready == "True" else ("OutOfSync" if ready == "False" else "Unknown")
        )
    else:
        artifact = status.get("artifact") or {}
        row["revision"] = str(artifact.get("revision") or "") if isinstance(artifact, dict) else ""
        row["source"] = redact_url(str(spec.get("url") or spec.get("chart") or ""))
    return row


def _matches(kind: str, obj: Obj, f: Filters, row: dict[str, str]) -> bool:
    if f.project and row["project"] not in f.project:
        return False
    if f.namespace and row["namespace"] not in f.namespace:
        return False
    if f.cluster and row["cluster"] not in f.cluster:
        return False
    if f.sync and row["sync"] not in f.sync:
        return False
    if f.health and row["health"] not in f.health:
        return False
    if f.selector:
        labels = _meta(obj).get("labels") or {}
        for key, op, value in f.selector:
            if op == "" and key not in labels:
                return False
            if op == "=" and labels.get(key) != value:
                return False
            if op == "!=" and labels.get(key) == value:
                return False
    if f.text:
        hay = " ".join((row["name"], row["namespace"], row["source"], row["destination"]))
        if f.text not in hay.lower():
            return False
    return True


def filter_objects(kind: str, objs: Iterable[Obj], f: Filters) -> list[tuple[Obj, dict[str, str]]]:
    """Matching objects with their summaries, sorted by namespace and name."""
    out = []
    for obj in objs:
        row = summary(kind, obj)
        if _matches(kind, obj, f, row):
            out.append((obj, row))
    out.sort(key=lambda pair: (pair[1]["namespace"], pair[1]["name"]))
    return out


def paginate(total: int, offset_text: str | None, limit_text: str | None) -> tuple[int, int]:
    try:
        offset = int(offset_text or 0)
        limit = int(limit_text or DEFAULT_PAGE)
    except ValueError:
        raise FilterError("offset and limit are integers") from None
    if offset < 0 or limit < 1 or limit > MAX_PAGE:
        raise FilterError(f"offset >= 0 and 1 <= limit <= {MAX_PAGE}")
    return offset, limit


def counts(rows: Iterable[dict[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {"sync": {}, "health": {}}
    for row in rows:
        out["sync"][row["sync"]] = out["sync"].get(row["sync"], 0) + 1
        out["health"][row["health"]] = out["health"].get(row["health"], 0) + 1
    return out


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def resource_tree(app: Obj, derived: Mapping[str, Sequence[Obj]]) -> dict[str, Any]:
    """Argo CD's ``ApplicationTree`` shape: ``{"nodes": [...]}``, parents before children.

    Managed resources come from ``status.resources``; derived objects are linked by their
    owner references (kind and name in the same namespace), down to Pods.
    """
    nodes: list[dict[str, Any]] = []
    by_owner: dict[tuple[str, str, str], list[Obj]] = {}
    for objs in derived.values():
        for obj in objs:
            meta = _meta(obj)
            for ref in meta.get("ownerReferences") or []:
                if isinstance(ref, dict):
                    key = (
                        str(meta.get("namespace") or ""),
                        str(ref.get("kind")),
                        str(ref.get("name")),
                    )
                    by_owner.setdefault(key, []).append(obj)
    seen: set[tuple[str, str, str]] = set()

    def children(parent: dict[str, Any], depth: int) -> None:
        if depth > 4:
            return
        for child in by_owner.get((parent["namespace"], parent["kind"], parent["name"]), []):
            meta = _meta(child)
            key = (str(meta.get("namespace") or ""), str(child.get("kind")), str(meta.get("name")))
            if key in seen:
                continue
            seen.add(key)
            node = {
                "group": _group(str(child.get("apiVersion") or "")),
                "version": str(child.get("apiVersion") or "").rpartition("/")[2],
                "kind": str(child.get("kind") or ""),
                "namespace": key[0],
                "name": key[2],
                "uid": str(meta.get("uid") or ""),
                "resourceVersion": str(meta.get("resourceVersion") or ""),
                "createdAt": str(meta.get("creationTimestamp") or ""),
                "parentRefs": [{k: parent[k] for k in ("group", "kind", "namespace", "name")}],
                "health": _derived_health(child),
                "info": _info(child),
            }
            nodes.append(node)
            children(node, depth + 1)

    for res in (app.get("status") or {}).get("resources") or []:
        if not isinstance(res, dict):
            continue
        node: dict[str, Any] = {
            "group": str(res.get("group") or ""),
            "version": str(res.get("version") or ""),
            "kind": str(res.get("kind") or ""),
            "namespace": str(res.get("namespace") or ""),
            "name": str(res.get("name") or ""),
            "status": str(res.get("status") or ""),
            "health": res.get("health") if isinstance(res.get("health"), dict) else {},
            "parentRefs": [],
            "requiresPruning": bool(res.get("requiresPruning")),
        }
        if res.get("hook"):
            node["hook"] = True
        nodes.append(node)
        seen.add((str(node["namespace"]), str(node["kind"]), str(node["name"])))
        children(node, 1)
    # The last operation's hooks (a PreSync Job...): not managed resources, but their Pods
    # and logs are what one looks at when a hook fails.
    result = ((app.get("status") or {}).get("operationState") or {}).get("syncResult") or {}
    for res in result.get("resources") or []:
        if not isinstance(res, dict) or not res.get("hookType"):
            continue
        key = (
            str(res.get("namespace") or ""),
            str(res.get("kind") or ""),
            str(res.get("name") or ""),
        )
        if key in seen or not key[1] or not key[2]:
            continue
        seen.add(key)
        phase = str(res.get("hookPhase") or "")
        node = {
            "group": str(res.get("group") or ""),
            "version": str(res.get("version") or ""),
            "kind": key[1],
            "namespace": key[0],
            "name": key[2],
            "status": "",
            "health": {
                "status": _HOOK_HEALTH.get(phase, "Unknown"),
                "message": str(res.get("message") or ""),
            },
            "parentRefs": [],
            "hook": True,
            "hookType": str(res.get("hookType")),
        }
        nodes.append(node)
        children(node, 1)
    return {"nodes": nodes}


_HOOK_HEALTH = {
    "Succeeded": "Healthy",
    "Running": "Progressing",
    "Failed": "Degraded",
    "Error": "Degraded",
    "Terminating": "Progressing",
}


def _derived_health(obj: Obj) -> dict[str, str]:
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "Pod":
        phase = str(status.get("phase") or "")
        if phase in ("Running", "Succeeded"):
            ready = all(
                bool(c.get("ready"))
                for c in status.get("containerStatuses") or []
                if isinstance(c, dict)
            )
            return {"status": "Healthy" if ready or phase == "Succeeded" else "Progressing"}
        if phase == "Failed":
            return {"status": "Degraded", "message": str(status.get("message") or "")}
        return {"status": "Progressing"}
    if kind == "ReplicaSet":
        want = int((obj.get("spec") or {}).get("replicas") or 0)
        have = int(status.get("availableReplicas") or 0)
        return {"status": "Healthy" if have >= want else "Progressing"}
    if kind == "Job":
        if status.get("failed") and not status.get("active"):
            return {"status": "Degraded"}
        return {"status": "Healthy" if status.get("succeeded") else "Progressing"}
    return {}


def _info(obj: Obj) -> list[dict[str, str]]:
    status = obj.get("status") or {}
    if obj.get("kind") == "Pod":
        restarts = sum(
            int(c.get("restartCount") or 0)
            for c in status.get("containerStatuses") or []
            if isinstance(c, dict)
        )
        return [
            {"name": "Status Reason", "value": str(status.get("phase") or "")},
            {"name": "Restart Count", "value": str(restarts)},
        ]
    return []
