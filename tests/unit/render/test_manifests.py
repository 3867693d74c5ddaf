"""The YAML loader reads manifests the way Kubernetes (go-yaml v2, YAML 1.1) does."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.render import RenderError, dump_yaml, load_manifests


def _value(scalar: str) -> Any:
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n  v: {scalar}\n"
    return load_manifests(text)[0]["data"]["v"]


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        ("y", True),
        ("no", False),
        ("off", False),
        ("n", False),
        ("true", True),
        ("False", False),
        ("0644", 420),
        ("0o644", 420),
        ("0x1F", 31),
        ("0b101", 5),
        ("1_000", 1000),
        ("-12", -12),
        ("1e3", 1000.0),
        ("1.5e3", 1500.0),
        ("1E-2", 0.01),
        ("1.10", 1.1),
        ("~", None),
        ("null", None),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("12:30", "12:30"),
        ("'yes'", "yes"),
        ('"0644"', "0644"),
        ("v1.0", "v1.0"),
        ("!!binary aGVsbG8=", "hello"),
    ],
)
def test_scalars_resolve_as_go_yaml_v2(scalar: str, expected: Any) -> None:
    value = _value(scalar)
    assert value == expected
    assert type(value) is type(expected)


def test_duplicate_key_is_an_error_naming_file_and_line() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    with pytest.raises(
        RenderError, match=r"cm\.yaml:5: duplicate key 'name' \(first set on line 4\)"
    ):
        load_manifests(text, source="cm.yaml")


def test_merge_keys_may_be_overridden_without_a_duplicate_error() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
        "base: &b {a: 1, b: 2}\ndata:\n  <<: *b\n  b: 3\n"
    )
    assert load_manifests(text)[0]["data"] == {"a": 1, "b": 3}


def test_non_string_keys_become_strings_like_sigs_k8s_yaml() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  80: tcp\n  yes: 1\n"
    assert load_manifests(text)[0]["data"] == {"80": "tcp", "true": 1}


def test_multi_document_skips_empty_documents_and_keeps_order() -> None:
    text = (
        "---\n# only a comment\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b}\n---\n{}\n"
    )
    assert [o["metadata"]["name"] for o in load_manifests(text)] == ["a", "b"]


def test_list_kinds_are_expanded_in_place() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n---\n"
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"
    )
    assert [o["metadata"]["name"] for o in load_manifests(text)] == ["first", "a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: 1\n",
            r"bad\.yaml: document 1 \(line 1\) is not a Kubernetes object.*without apiVersion",
        ),
        (
            "apiVersion: v1\nkind: A\n---\n- 1\n- 2\n",
            r"bad\.yaml: document 2 \(line 4\) is not a Kubernetes object.*got a list",
        ),
        ("apiVersion: v1\n", r"document 1 \(line 1\).*without kind"),
        ("just a string\n", r"document 1 .*got a str"),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {kind: X}\n",
            r"List item 0, is not a Kubernetes object",
        ),
        ("apiVersion: v1\nkind: A\nmetadata: {name: [\n", r"bad\.yaml:\d+: "),
    ],
)
def test_bad_documents_are_errors_naming_file_and_document(text: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        load_manifests(text, source="bad.yaml")


def test_json_files_are_read_as_json() -> None:
    objs = load_manifests(
        '{"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "yes"}}', source="x.json"
    )
    assert objs[0]["data"] == {"a": "yes"}


def test_json_duplicate_key_names_the_line() -> None:
    text = '{\n "apiVersion": "v1",\n "kind": "A",\n "kind": "B"\n}'
    with pytest.raises(RenderError, match=r"x\.json:4: duplicate key 'kind'"):
        load_manifests(text, source="x.json")


def test_json_syntax_error_names_the_line() -> None:
    with pytest.raises(RenderError, match=r"x\.json:2: invalid JSON"):
        load_manifests('{"apiVersion": "v1",\n oops}', source="x.json")


def test_dump_quotes_strings_that_would_read_back_as_other_types() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {k: k for k in ("yes", "on", "y", "0644", "1e3", "2024-01-01", "12:30", "1.10")},
    }
    text = dump_yaml([obj])
    for raw in ("yes", "on", "y", "0644", "1e3", "2024-01-01", "12:30", "1.10"):
        assert f"'{raw}': '{raw}'" in text
    assert load_manifests(text) == [obj]


def test_dump_keeps_key_order_and_separates_documents() -> None:
    objs = [{"kind": "B", "apiVersion": "v1"}, {"kind": "A", "apiVersion": "v1"}]
    text = dump_yaml(objs)
    assert text == "kind: B\napiVersion: v1\n---\nkind: A\napiVersion: v1\n"
    assert dump_yaml(objs[0]) == "kind: B\napiVersion: v1\n"
