from __future__ import annotations

import json

import pytest

from gitsail.kube.errors import Gone, KubeError
from gitsail.kube.watch import WatchEvent, parse_event


def line(etype: str, obj: dict[str, object]) -> str:
    return json.dumps({"type": etype, "object": obj})


def test_object_events_get_api_version_and_kind() -> None:
    event = parse_event(
        line("ADDED", {"metadata": {"name": "a", "resourceVersion": "7"}}),
        api_version="v1",
        kind="ConfigMap",
    )
    assert event == WatchEvent(
        "ADDED",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "7"},
        },
    )
    assert event.resource_version == "7"


def test_bookmark_carries_only_a_resource_version() -> None:
    event = parse_event(
        line("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "42"}})
    )
    assert (event.type, event.resource_version) == ("BOOKMARK", "42")


def test_error_410_raises_gone() -> None:
    status = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 1 (500)",
    }
    with pytest.raises(Gone, match=r"watch v1 Pod: too old resource version"):
        parse_event(line("ERROR", status), context="watch v1 Pod")


def test_other_errors_raise_their_kube_error() -> None:
    with pytest.raises(KubeError) as info:
        parse_event(line("ERROR", {"kind": "Status", "code": 500, "message": "boom"}))
    assert info.value.code == 500


@pytest.mark.parametrize("bad", ["not json", '{"type": "WHAT", "object": {}}', "[]"])
def test_garbage_is_a_kube_error(bad: str) -> None:
    with pytest.raises(KubeError):
        parse_event(bad)
