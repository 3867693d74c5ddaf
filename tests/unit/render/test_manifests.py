"""The YAML loader reads manifests the way Kubernetes (go-yaml v2, YAML 1.1) does."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from gitsail.policy import DEFAULT_POLICY
from gitsail.render import RenderError, dump_yaml, load_manifests
from gitsail.render._manifests import load_yaml_documents, read_yaml_file


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


# --- limits on tenant YAML --------------------------------------------------------------


def _bomb(levels: int = 9) -> str:
    """``levels`` nested anchors of nine aliases each: 9**levels nodes once expanded."""
    lines = ["  l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n" + "\n".join(lines)


def test_alias_bomb_is_refused_before_it_is_expanded() -> None:
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"bomb.yaml:1: .*GITSAIL_YAML_ALIAS_NODES"):
        load_manifests(_bomb(), source="bomb.yaml")
    assert time.monotonic() - started < 1


def test_a_few_aliases_are_fine() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: &l {a: b}}\n"
        "data: {}\nextra: {labels: *l}\n"
    )
    assert load_manifests(text)[0]["extra"] == {"labels": {"a": "b"}}


@pytest.mark.parametrize(
    ("policy_change", "text", "message"),
    [
        ({"yaml_aliases": 3}, "a: &a x\nb: [*a, *a, *a, *a]\n", "more than 3 YAML alias uses"),
        ({"yaml_depth": 5}, "a: [[[[[[x]]]]]]\n", "nested more than 5 levels"),
        ({"yaml_documents": 2}, "a: 1\n---\nb: 2\n---\nc: 3\n", "more than 2 YAML documents"),
        ({"yaml_document_bytes": 10}, "a: 1\n---\nbb: " + "x" * 20 + "\n", r"f:3: a YAML doc"),
        ({"render_output_bytes": 10}, "a: " + "x" * 20, "GITSAIL_RENDER_OUTPUT_BYTES"),
        ({}, "&a [*a]\n", "alias refers to a node that contains it"),
    ],
)
def test_yaml_limits_come_from_the_policy(
    policy_change: dict[str, int], text: str, message: str
) -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, **policy_change)
    with pytest.raises(RenderError, match=message):
        list(load_yaml_documents(text, source="f", policy=policy))


def test_json_limits_hold_too() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, yaml_depth=5)
    with pytest.raises(RenderError, match="nested more than 5 levels"):
        load_manifests('{"a": [[[[[[1]]]]]]}', source="x.json", policy=policy)
    with pytest.raises(RenderError, match="nested more than"):
        load_manifests("[" * 100_000 + "]" * 100_000, source="x.json")


@pytest.mark.parametrize(
    "text", ["a: !!int abc\n", "a: !!float x\n", "a: !!bool maybe\n", "a: !!binary '#'\n"]
)
def test_values_that_do_not_fit_their_tag_are_render_errors(text: str) -> None:
    with pytest.raises(RenderError, match="f"):
        load_manifests(text, source="f")


def test_a_set_reads_as_a_mapping_like_go_yaml() -> None:
    text = "apiVersion: v1\nkind: X\nmetadata: {name: x}\ns: !!set {a, b}\n"
    assert load_manifests(text)[0]["s"] == {"a": None, "b": None}


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "Chart.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(RenderError, match=r"Chart.yaml: not UTF-8 text"):
        read_yaml_file(path, source="Chart.yaml")
