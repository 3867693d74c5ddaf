"""A layered layout for small graphs, drawn by the templates as inline SVG.

Pure functions: an Application's resource tree and the Flux objects' ``dependsOn`` become
boxes in columns (a node's column is its depth: the longest path from a root) and edges
from parent to child as cubic paths. Rows are stacked per column; a child starts no higher
than its first parent, so a tree reads like a tree. Above ``MAX_NODES`` nodes there is no
graph (the callers show the list instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_NODES",
    "Graph",
    "GraphEdge",
    "GraphNode",
    "InNode",
    "app_graph",
    "flux_graph",
    "layout",
]

MAX_NODES = 500
NODE_W = 230
NODE_H = 46
COL_GAP = 56
ROW_GAP = 12
PAD = 8
MAX_LABEL = 26


@dataclass(frozen=True)
class InNode:
    """One node to lay out: ``parents`` are ids of other nodes (unknown ids are ignored)."""

    id: str
    kind: str
    name: str
    health: str = ""
    sync: str = ""
    parents: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # (key, value) for the template (namespace...)
    full_name: str = ""  # the name in the accessible title, when not ``name`` (ns/name)


@dataclass(frozen=True)
class GraphNode:
    id: str
    kind: str
    name: str
    label: str  # the name, shortened to fit the box
    health: str
    sync: str
    title: str  # the accessible name: kind, full name, health and sync
    column: int
    row: int
    x: int
    y: int
    extra: Mapping[str, str]


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    d: str  # the SVG path


@dataclass(frozen=True)
class Graph:
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _depths(nodes: Sequence[InNode], known: set[str]) -> dict[str, int]:
    """Longest path from a root, by Kahn's order; nodes on a cycle go after what they see."""
    parents = {
        n.id: [p for p in dict.fromkeys(n.parents) if p in known and p != n.id] for n in nodes
    }
    children: dict[str, list[str]] = {n.id: [] for n in nodes}
    waiting = {n.id: len(parents[n.id]) for n in nodes}
    for n in nodes:
        for p in parents[n.id]:
            children[p].append(n.id)
    depth: dict[str, int] = {}
    ready = [n.id for n in nodes if waiting[n.id] == 0]
    order = 0
    while True:
        while order < len(ready):
            current = ready[order]
            order += 1
            depth[current] = max((depth[p] + 1 for p in parents[current] if p in depth), default=0)
            for child in children[current]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        stuck = [n.id for n in nodes if n.id not in depth and waiting[n.id] > 0]
        if not stuck:
            return depth
        # A cycle (dependsOn can have one): break it at the first node in input order; its
        # depth counts only the parents already placed.
        waiting[stuck[0]] = 0
        ready.append(stuck[0])


def layout(nodes: Sequence[InNode], max_nodes: int = MAX_NODES) -> Graph | None:
    """Columns by depth, rows stacked; ``None`` when there are more than ``max_nodes``.

    Duplicate ids keep their first node."""
    unique: dict[str, InNode] = {}
    for n in nodes:
        unique.setdefault(n.id, n)
    if len(unique) > max_nodes:
        return None
    items = list(unique.values())
    depth = _depths(items, set(unique))
    next_row: dict[int, int] = {}
    row_of: dict[str, int] = {}
    # Parents before children where possible (by depth, then input order).
    for n in sorted(items, key=lambda n: depth[n.id]):
        col = depth[n.id]
        parent_rows = [row_of[p] for p in n.parents if p in row_of]
        row = max(next_row.get(col, 0), parent_rows[0] if parent_rows else 0)
        row_of[n.id] = row
        next_row[col] = row + 1
    placed: list[GraphNode] = []
    pos: dict[str, tuple[int, int]] = {}
    for n in items:
        col, row = depth[n.id], row_of[n.id]
        x = PAD + col * (NODE_W + COL_GAP)
        y = PAD + row * (NODE_H + ROW_GAP)
        pos[n.id] = (x, y)
        state = ", ".join(s for s in (n.health, n.sync) if s)
        placed.append(
            GraphNode(
                id=n.id,
                kind=n.kind,
                name=n.name,
                label=_short(n.name),
                health=n.health,
                sync=n.sync,
                title=f"{n.kind} {n.full_name or n.name}" + (f": {state}" if state else ""),
                column=col,
                row=row,
                x=x,
                y=y,
                extra=dict(n.extra),
            )
        )
    edges: list[GraphEdge] = []
    for n in items:
        for p in dict.fromkeys(n.parents):
            if p not in pos or p == n.id:
                continue
            (px, py), (cx, cy) = pos[p], pos[n.id]
            x1, y1 = px + NODE_W, py + NODE_H // 2
            x2, y2 = cx, cy + NODE_H // 2
            if x2 > x1:
                mid = (x1 + x2) // 2
                d = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
            else:  # an edge that goes back (a cycle): around, below the boxes
                low = max(py, cy) + NODE_H + ROW_GAP // 2
                sx, tx = px + NODE_W // 2, cx + NODE_W // 2
                d = f"M{sx},{py + NODE_H} C{sx},{low} {tx},{low} {tx},{cy + NODE_H}"
            edges.append(GraphEdge(source=p, target=n.id, d=d))
    columns = max((g.column for g in placed), default=-1) + 1
    rows = max((g.row for g in placed), default=-1) + 1
    width = PAD * 2 + max(columns, 1) * NODE_W + max(columns - 1, 0) * COL_GAP
    height = PAD * 2 + max(rows, 1) * NODE_H + max(rows - 1, 0) * ROW_GAP
    return Graph(nodes=tuple(placed), edges=tuple(edges), width=width, height=height)


def _node_id(group: str, kind: str, namespace: str, name: str) -> str:
    return f"{group}/{kind}/{namespace}/{name}"


def app_graph(
    app_name: str, app_health: str, app_sync: str, tree: Sequence[Mapping[str, Any]]
) -> Graph | None:
    """The Application as the root, its managed resources, and what derives from them."""
    root = "application"
    items = [InNode(id=root, kind="Application", name=app_name, health=app_health, sync=app_sync)]
    for n in tree:
        refs = [r for r in n.get("parentRefs") or [] if isinstance(r, dict)]
        parents = tuple(
            _node_id(
                str(r.get("group") or ""),
                str(r.get("kind") or ""),
                str(r.get("namespace") or ""),
                str(r.get("name") or ""),
            )
            for r in refs
        ) or (root,)
        health = n.get("health") if isinstance(n.get("health"), dict) else {}
        items.append(
            InNode(
                id=_node_id(
                    str(n.get("group") or ""),
                    str(n.get("kind") or ""),
                    str(n.get("namespace") or ""),
                    str(n.get("name") or ""),
                ),
                kind=str(n.get("kind") or ""),
                name=str(n.get("name") or ""),
                health=str((health or {}).get("status") or ""),
                sync=str(n.get("status") or ""),
                parents=parents,
                extra=(
                    ("namespace", str(n.get("namespace") or "")),
                    ("group", str(n.get("group") or "")),
                    ("prune", "true" if n.get("requiresPruning") else ""),
                    ("hook", str(n.get("hookType") or ("hook" if n.get("hook") else ""))),
                ),
            )
        )
    return layout(items)


def flux_graph(rows: Sequence[Mapping[str, Any]]) -> Graph | None:
    """Kustomizations and HelmReleases by ``dependsOn``: an edge from a dependency to its
    dependant. ``rows`` carry ``kind``, ``namespace``, ``name``, ``health`` and ``depends``
    (``namespace/name``); a dependency names an object of the same kind, as in Flux."""
    items = []
    for r in rows:
        kind, ns, name = str(r["kind"]), str(r["namespace"]), str(r["name"])
        items.append(
            InNode(
                id=f"{kind}/{ns}/{name}",
                kind=kind,
                name=name,
                full_name=f"{ns}/{name}",
                health=str(r.get("health") or ""),
                parents=tuple(f"{kind}/{d}" for d in r.get("depends") or ()),
                extra=(("namespace", ns),),
            )
        )
    return layout(items)
