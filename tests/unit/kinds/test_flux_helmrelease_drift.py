"""Drift detection's pure parts: ignore rules (JSON pointers, target selectors)."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.kinds.flux_helmrelease import DriftIgnore
from gitsail.kinds.flux_helmrelease_drift import _ignored, _remove, _selector_matches, _targets
from gitsail.kinds.records import PatchTarget

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "podinfo",
        "namespace": "apps",
        "labels": {"tier": "web", "env": "prod"},
        "annotations": {"a/b": "c"},
    },
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}},
}


@pytest.mark.parametrize(
    ("pointer", "gone"),
    [
        ("/spec/replicas", ("spec", "replicas")),
        ("/metadata/annotations/a~1b", ("metadata", "annotations", "a/b")),
        ("/spec/template/spec/containers/1", None),
    ],
)
def test_json_pointers_remove_what_they_name(pointer: str, gone: tuple[str, ...] | None) -> None:
    import copy

    obj = copy.deepcopy(DEPLOYMENT)
    _remove(obj, pointer)
    if gone is None:
        assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "a"}]
        return
    node = obj
    for part in gone[:-1]:
        node = node[part]
    assert gone[-1] not in node


def test_pointers_to_nothing_change_nothing() -> None:
    import copy

    obj = copy.deepcopy(DEPLOYMENT)
    for pointer in ("/spec/none/deeper", "/spec/template/spec/containers/9", "/x"):
        _remove(obj, pointer)
    assert obj == DEPLOYMENT


@pytest.mark.parametrize(
    ("target", "matches"),
    [
        (None, True),
        (PatchTarget(kind="Deployment"), True),
        (PatchTarget(kind="Deploy"), False),  # regular expressions match the whole value
        (PatchTarget(kind="(Deployment|StatefulSet)", group="apps", version="v1"), True),
        (PatchTarget(name="pod.*", namespace=".*s"), True),
        (PatchTarget(label_selector="tier=web,env in (prod, staging)"), True),
        (PatchTarget(label_selector="tier!=web"), False),
        (PatchTarget(label_selector="!missing,env"), True),
        (PatchTarget(annotation_selector="a/b=d"), False),
    ],
)
def test_targets_select_objects_as_flux_does(target: PatchTarget | None, matches: bool) -> None:
    assert _targets(target, DEPLOYMENT) is matches


def test_an_empty_pointer_ignores_the_whole_object() -> None:
    rules = [
        DriftIgnore(paths=("/spec/replicas",), target=PatchTarget(kind="Deployment")),
        DriftIgnore(paths=("/data",), target=PatchTarget(kind="ConfigMap")),
    ]
    assert _ignored(rules, DEPLOYMENT) == ["/spec/replicas"]
    assert _ignored([DriftIgnore(paths=("",))], DEPLOYMENT) is None


def test_selector_terms() -> None:
    labels = {"a": "1", "b": "2"}
    assert _selector_matches("a=1, b==2", labels)
    assert not _selector_matches("a notin (1,3)", labels)
    assert _selector_matches("c notin (1)", labels)
    assert not _selector_matches("c", labels)
