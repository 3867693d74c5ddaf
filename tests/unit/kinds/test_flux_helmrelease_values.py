"""valuesFrom and inline values composed as Flux does; Helm's --set paths."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from gitsail.kinds.flux_helmrelease import ValuesReference
from gitsail.kinds.flux_helmrelease_values import (
    ValuesError,
    compose_values,
    merge_maps,
    set_path,
)
from gitsail.policy import Policy


def secret(**data: str) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def reader(objects: dict[tuple[str, str], Mapping[str, Any]]) -> Any:
    async def read(kind: str, name: str) -> Mapping[str, Any] | None:
        return objects.get((kind, name))

    return read


async def test_values_from_in_order_then_inline_on_top() -> None:
    objects = {
        ("ConfigMap", "base"): {"data": {"values.yaml": "a: 1\nnested: {x: 1, y: 1}\nlist: [1]\n"}},
        ("Secret", "prod"): secret(**{"values.yaml": "a: 2\nnested: {y: 2}\n"}),
        ("Secret", "tls"): secret(crt="CERT,DATA"),
    }
    refs = (
        ValuesReference("ConfigMap", "base"),
        ValuesReference("Secret", "prod"),
        ValuesReference("Secret", "tls", values_key="crt", target_path="tls.crt", literal=True),
        ValuesReference("ConfigMap", "absent", optional=True),
    )
    secrets: set[str] = set()
    values = await compose_values(refs, {"a": 3, "list": [2]}, reader(objects), secrets=secrets)
    assert values == {
        "a": 3,
        "nested": {"x": 1, "y": 2},
        "list": [2],
        "tls": {"crt": "CERT,DATA"},
    }
    assert "CERT,DATA" in secrets


async def test_missing_required_reference_names_it_and_not_its_content() -> None:
    with pytest.raises(ValuesError, match="could not find Secret 'creds'"):
        await compose_values((ValuesReference("Secret", "creds"),), {}, reader({}))
    objects = {("Secret", "creds"): secret(other="hunter2")}
    with pytest.raises(
        ValuesError, match=r"missing key 'values\.yaml' in Secret 'creds'"
    ) as caught:
        await compose_values((ValuesReference("Secret", "creds"),), {}, reader(objects))
    assert "hunter2" not in str(caught.value)


async def test_values_that_are_not_a_map_or_not_yaml_are_refused() -> None:
    bad = {("ConfigMap", "x"): {"data": {"values.yaml": "- a\n"}}}
    with pytest.raises(ValuesError, match="not a map"):
        await compose_values((ValuesReference("ConfigMap", "x"),), {}, reader(bad))
    aliases = "a: &a [x]\nb: [*a, *a, *a]\n"
    many = {("ConfigMap", "x"): {"data": {"values.yaml": aliases}}}
    with pytest.raises(ValuesError, match="ConfigMap 'x'"):
        await compose_values(
            (ValuesReference("ConfigMap", "x"),), {}, reader(many), policy=Policy(yaml_aliases=2)
        )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("a.b", "1", {"a": {"b": 1}}),
        ("a.b", "true", {"a": {"b": True}}),
        ("a.b", "007", {"a": {"b": "007"}}),
        ("a.b", "null", {"a": {"b": None}}),
        ("a.b", "1.5", {"a": {"b": "1.5"}}),
        ("list[1].name", "x", {"list": [None, {"name": "x"}]}),
        ("a", "{x,y,2}", {"a": ["x", "y", 2]}),
        (r"annotations.a\.b/c", "v", {"annotations": {"a.b/c": "v"}}),
        ("a", "1,b=2", {"a": 1, "b": 2}),
        ("a", r"x\,y", {"a": "x,y"}),
    ],
)
def test_target_path_has_helm_set_semantics(path: str, value: str, expected: Any) -> None:
    data: dict[str, Any] = {}
    set_path(data, path, value)
    assert data == expected


def test_literal_value_is_kept_as_is() -> None:
    data: dict[str, Any] = {"a": {"keep": 1}}
    set_path(data, "a.conf", "x=1,y={2}", literal=True)
    assert data == {"a": {"keep": 1, "conf": "x=1,y={2}"}}


@pytest.mark.parametrize("path", ["a,b", "a[x]", "a[99999999]", ".a", "a["])
def test_bad_target_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are tested through compose
        set_path({}, path, "1")


def test_merge_maps_replaces_everything_but_maps() -> None:
    assert merge_maps({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": {"e": 1}}) == {
        "a": {"b": 1, "c": [2]},
        "d": {"e": 1},
    }
