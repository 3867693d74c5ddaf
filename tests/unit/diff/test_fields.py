from __future__ import annotations

import copy
from typing import Any

from gitsail.diff.fields import managed_fields, owns, remove_owned
from gitsail.diff.pointer import parse_pointer

from .objects import GITSAIL_FIELDS, live_deployment

POD_SPEC: dict[str, Any] = {
    "metadata": {"finalizers": ["example.com/a", "example.com/b"]},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "web:1",
                "args": ["--port", "8080"],
                "ports": [
                    {"containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 9090, "protocol": "TCP"},
                ],
            },
            {"name": "sidecar", "image": "envoy:1"},
        ]
    },
}

SIDECAR_INJECTOR: dict[str, Any] = {
    "f:metadata": {"f:finalizers": {'v:"example.com/b"': {}}},
    "f:spec": {
        "f:containers": {
            'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}},
            'k:{"name":"web"}': {
                "f:args": {},
                "f:ports": {'k:{"containerPort":9090,"protocol":"TCP"}': {".": {}}},
            },
        }
    },
}


def test_remove_owned_deletes_whole_items_and_atomic_leaves() -> None:
    obj = copy.deepcopy(POD_SPEC)
    remove_owned(obj, SIDECAR_INJECTOR)
    assert obj == {
        "metadata": {"finalizers": ["example.com/a"]},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "web:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                },
            ]
        },
    }


def test_node_with_only_children_keeps_its_unowned_fields() -> None:
    obj = copy.deepcopy(POD_SPEC)
    remove_owned(obj, {"f:spec": {"f:containers": {'k:{"name":"sidecar"}': {"f:image": {}}}}})
    assert obj["spec"]["containers"][1] == {"name": "sidecar"}


def test_owns_follows_list_items_by_merge_key_not_position() -> None:
    obj = copy.deepcopy(POD_SPEC)
    assert owns(SIDECAR_INJECTOR, obj, parse_pointer("/spec/containers/1/image"))
    obj["spec"]["containers"].reverse()
    assert owns(SIDECAR_INJECTOR, obj, parse_pointer("/spec/containers/0/image"))
    assert not owns(SIDECAR_INJECTOR, obj, parse_pointer("/spec/containers/1/image"))


def test_owns_covers_descendants_of_atomic_fields() -> None:
    assert owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer("/spec/containers/0/args/1"))
    assert owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer("/metadata/finalizers/1"))
    assert not owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer("/metadata/finalizers/0"))


def test_owns_a_node_when_it_owns_something_inside() -> None:
    assert owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer("/spec/containers/0/ports/1"))
    assert not owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer("/spec/containers/0/ports/0"))
    assert not owns(SIDECAR_INJECTOR, POD_SPEC, parse_pointer(""))


def test_paths_absent_from_the_object_are_not_owned() -> None:
    assert not owns(GITSAIL_FIELDS, POD_SPEC, parse_pointer("/spec/replicas/extra"))


def test_managed_fields_reads_entries_with_their_metadata() -> None:
    entries = managed_fields(live_deployment())
    assert [(e.manager, e.operation, e.subresource) for e in entries] == [
        ("gitsail", "Apply", ""),
        ("kube-controller-manager", "Update", ""),
        ("kube-controller-manager", "Update", "status"),
    ]
    assert entries[2].time == "2026-05-04T10:03:07Z"
    assert managed_fields(None) == []
    assert managed_fields({"metadata": {}}) == []
