"""The layered layout of the resource tree and of Flux's dependsOn (pure)."""

from __future__ import annotations

from gitsail.server.graph import NODE_H, NODE_W, InNode, app_graph, flux_graph, layout


def test_columns_are_depths_and_a_child_is_never_above_its_parent() -> None:
    g = layout(
        [
            InNode("a", "Application", "app"),
            InNode("d", "Deployment", "web", parents=("a",)),
            InNode("s", "Service", "web", parents=("a",)),
            InNode("rs", "ReplicaSet", "web-1", parents=("d",)),
            InNode("p1", "Pod", "web-1-x", parents=("rs",)),
            InNode("p2", "Pod", "web-1-y", parents=("rs",)),
        ]
    )
    assert g is not None
    by = {n.id: n for n in g.nodes}
    assert [by[i].column for i in ("a", "d", "s", "rs", "p1", "p2")] == [0, 1, 1, 2, 3, 3]
    assert (by["d"].row, by["s"].row, by["p1"].row, by["p2"].row) == (0, 1, 0, 1)
    assert by["rs"].row >= by["d"].row
    # No two boxes overlap.
    boxes = {(n.x, n.y) for n in g.nodes}
    assert len(boxes) == len(g.nodes)
    assert g.width >= max(n.x for n in g.nodes) + NODE_W
    assert g.height >= max(n.y for n in g.nodes) + NODE_H
    # Edges go from the parent's right side to the child's left side.
    edge = next(e for e in g.edges if e.target == "rs")
    assert edge.source == "d"
    assert edge.d.startswith(f"M{by['d'].x + NODE_W},{by['d'].y + NODE_H // 2} ")
    assert edge.d.endswith(f" {by['rs'].x},{by['rs'].y + NODE_H // 2}")
    assert len(g.edges) == 5


def test_depth_is_the_longest_path_and_unknown_parents_are_ignored() -> None:
    g = layout(
        [
            InNode("c", "Kustomization", "c", parents=("a", "b", "ghost")),
            InNode("b", "Kustomization", "b", parents=("a",)),
            InNode("a", "Kustomization", "a"),
        ]
    )
    assert g is not None
    assert {n.id: n.column for n in g.nodes} == {"a": 0, "b": 1, "c": 2}
    assert {(e.source, e.target) for e in g.edges} == {("a", "b"), ("a", "c"), ("b", "c")}


def test_a_cycle_is_laid_out_and_drawn() -> None:
    g = layout(
        [
            InNode("x", "Kustomization", "x", parents=("y",)),
            InNode("y", "Kustomization", "y", parents=("x",)),
            InNode("z", "Kustomization", "z", parents=("z",)),  # itself: no edge
        ]
    )
    assert g is not None
    assert {n.id: n.column for n in g.nodes} == {"x": 0, "y": 1, "z": 0}
    assert {(e.source, e.target) for e in g.edges} == {("x", "y"), ("y", "x")}


def test_too_many_nodes_means_no_graph_and_names_are_shortened_with_a_full_title() -> None:
    many = [InNode(str(i), "ConfigMap", f"cm-{i}") for i in range(11)]
    assert layout(many, max_nodes=10) is None
    assert layout(many[:10], max_nodes=10) is not None
    long = "a-very-long-name-of-a-config-map-that-does-not-fit"
    g = layout([InNode("n", "ConfigMap", long, health="Healthy", sync="Synced")])
    assert g is not None
    node = g.nodes[0]
    assert node.label.endswith("…")
    assert len(node.label) < len(long)
    assert node.title == f"ConfigMap {long}: Healthy, Synced"


def test_app_graph_roots_the_managed_resources_at_the_application() -> None:
    tree = [
        {"group": "apps", "kind": "Deployment", "namespace": "ns", "name": "web",
         "status": "Synced",
         "health": {"status": "Healthy"}, "parentRefs": []},
        {"group": "apps", "kind": "ReplicaSet", "namespace": "ns", "name": "web-1",
         "health": {"status": "Progressing"},
         "parentRefs": [{"group": "apps", "kind": "Deployment", "namespace": "ns", "name": "web"}]},
    ]  # fmt: skip
    g = app_graph("demo", "Healthy", "OutOfSync", tree)
    assert g is not None
    by = {n.kind: n for n in g.nodes}
    assert by["Application"].title == "Application demo: Healthy, OutOfSync"
    assert (by["Deployment"].column, by["ReplicaSet"].column) == (1, 2)
    assert by["Deployment"].sync == "Synced"
    assert by["ReplicaSet"].health == "Progressing"
    assert by["ReplicaSet"].extra["namespace"] == "ns"
    assert {(e.source, e.target) for e in g.edges} == {
        ("application", "apps/Deployment/ns/web"),
        ("apps/Deployment/ns/web", "apps/ReplicaSet/ns/web-1"),
    }


def test_flux_graph_edges_go_from_dependency_to_dependant_of_the_same_kind() -> None:
    rows = [
        {"kind": "Kustomization", "namespace": "f", "name": "apps", "health": "Degraded",
         "depends": ["f/infra"]},
        {"kind": "Kustomization", "namespace": "f", "name": "infra", "health": "Healthy",
         "depends": []},
        {"kind": "HelmRelease", "namespace": "f", "name": "infra", "health": "Healthy",
         "depends": []},
    ]  # fmt: skip
    g = flux_graph(rows)
    assert g is not None
    assert [(e.source, e.target) for e in g.edges] == [
        ("Kustomization/f/infra", "Kustomization/f/apps")
    ]
    by = {n.id: n for n in g.nodes}
    assert by["Kustomization/f/apps"].column == 1
    assert by["HelmRelease/f/infra"].column == 0
    assert by["Kustomization/f/apps"].title == "Kustomization f/apps: Degraded"
    assert by["Kustomization/f/apps"].label == "apps"
