"""Bounded YAML: limits checked on the node graph, before anything is built."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitsail.policy import DEFAULT_POLICY
from gitsail.source.boundedyaml import YAMLLimitError, load_document


def _bomb() -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "apiVersion: v1\nentries:\n" + "\n".join("  " + line for line in lines) + "\n"


def test_alias_bomb_in_a_helm_index_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(YAMLLimitError, match=r"index.yaml:1: .*GITSAIL_YAML_ALIAS_NODES"):
        load_document(_bomb().encode(), "index.yaml")
    assert time.monotonic() - started < 1


def test_shared_subtrees_count_once_per_use() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, yaml_alias_nodes=10)
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # 8 extra nodes
    assert load_document(text, "f", policy) == {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    with pytest.raises(YAMLLimitError, match="expand to more than 10 extra nodes"):
        load_document(text + "c: [*a, *a]\n", "f", policy)


def test_not_utf8_and_bad_tags_are_documented_errors() -> None:
    with pytest.raises(YAMLLimitError, match="not UTF-8"):
        load_document(b"a: \xff\n", "f")
    with pytest.raises(yaml.YAMLError, match="does not fit its tag"):
        load_document("a: !!int abc\n", "f")


@settings(max_examples=150, deadline=2000)
@given(st.binary(max_size=200))
def test_load_document_raises_only_its_documented_errors(data: bytes) -> None:
    with contextlib.suppress(YAMLLimitError, yaml.YAMLError):
        load_document(data, "f")
