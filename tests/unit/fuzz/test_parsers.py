"""Fuzzing the parsers that read tenant input: they fail only with their documented errors.

Each parser gets arbitrary text and text assembled from YAML's own punctuation (anchors,
aliases, tags, merges, flow and block collections, document markers, odd bytes), and must
either return or raise its stage's error type (RenderError, InvalidSource, DiffError); and
what it returns must respect the limits (depth, file set inside the repository).
``GITSAIL_FUZZ_EXAMPLES=5000`` runs a deeper search than ``make test`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitsail.diff import DiffError
from gitsail.diff.jqpath import _code_tokens, _static_check, check_expression, delete_paths
from gitsail.policy import DEFAULT_POLICY
from gitsail.render import RenderError, load_manifests
from gitsail.render._kustomize import apply_kustomize_options
from gitsail.render._manifests import compose_yaml, load_yaml_documents
from gitsail.render._options import KustomizeOptions
from gitsail.source import InvalidSource, input_files

FUZZ = settings(
    max_examples=int(os.environ.get("GITSAIL_FUZZ_EXAMPLES", "150")),  # more for a deep run
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
POLICY = dataclasses.replace(
    DEFAULT_POLICY, yaml_depth=20, yaml_aliases=50, yaml_alias_nodes=2000, yaml_documents=20
)

_TOKENS = [
    "a", "b", "resources", "bases", "components", "patches", "path", "name", "../", "..",
    "/", ":", ": ", " ", "  ", "\n", "\n  ", "- ", "[", "]", "{", "}", ", ", "&a ", "&b ",
    "*a", "*b", "!!int ", "!!str ", "!!binary ", "!!set ", "!!omap ", "!!float ", "!!bool ",
    "!!null ", "!!timestamp ", "!foo ", "!<tag:x> ", "<<: ", "'", '"', "---\n", "...\n",
    "? ", "|", ">", "#", "\t", "%YAML 1.1\n", "%TAG ! x\n", "~", "0x1F", "0o17", "1e3",
    ".inf", "yes", "no", "12:30", "2024-01-01", "\\", "\\x", "\xff", "\x00", "\ufeff",
    "\u2028", "apiVersion: v1\n", "kind: ConfigMap\n", "kind: List\nitems:\n",
]  # fmt: skip
yamlish = st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join)
texts = st.one_of(st.text(max_size=300), yamlish)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


@FUZZ
@given(texts)
def test_manifest_loader_raises_only_render_errors(text: str) -> None:
    try:
        docs = [data for _, data in load_yaml_documents(text, source="f", policy=POLICY)]
    except RenderError:
        return
    assert len(docs) <= POLICY.yaml_documents
    for data in docs:
        assert _depth(data) <= POLICY.yaml_depth + 1


@FUZZ
@given(texts, st.sampled_from(["f.yaml", "f.json"]))
def test_load_manifests_returns_objects_or_a_render_error(text: str, source: str) -> None:
    try:
        objs = load_manifests(text, source=source, policy=POLICY)
    except RenderError:
        return
    for obj in objs:
        assert isinstance(obj, dict)
        assert isinstance(obj["apiVersion"], str)
        assert isinstance(obj["kind"], str)


@FUZZ
@given(texts)
def test_compose_raises_only_render_errors(text: str) -> None:
    with contextlib.suppress(RenderError):
        compose_yaml(text, source="kustomization.yaml", policy=POLICY)


@FUZZ
@given(st.one_of(texts.map(str.encode), st.binary(max_size=200)))
def test_kustomize_options_edit_raises_only_render_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app"
        app.mkdir()
        (app / "kustomization.yaml").write_bytes(data)
        with contextlib.suppress(RenderError):
            apply_kustomize_options(app, Path(tmp), KustomizeOptions(name_prefix="p-"))


def _walk(files: dict[str, bytes], path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (Path(tmp) / "outside").mkdir()
        (Path(tmp) / "outside" / "kustomization.yaml").write_text("resources: []\n")
        try:
            found = input_files(root, path, policy=POLICY)
        except InvalidSource:
            return
        for file in found or []:
            assert root.resolve() in file.parents, f"{file} is outside the repository"


@FUZZ
@given(st.one_of(yamlish.map(str.encode), st.binary(max_size=200)))
def test_kustomization_walker_refuses_or_stays_inside(data: bytes) -> None:
    _walk({"app/kustomization.yaml": data, "app/a/kustomization.yaml": b"resources: []\n"}, "app")


@FUZZ
@given(st.one_of(yamlish.map(str.encode), st.binary(max_size=200)))
def test_chart_yaml_walker_refuses_or_stays_inside(data: bytes) -> None:
    _walk({"chart/Chart.yaml": data, "chart/values.yaml": b"a: 1\n"}, "chart")


_JQ = [
    ".", ".a", ".b[]", "[]", "|", " ", "select(", ")", "(", '"', "\\(", "\\", "#", "\n",
    "def", "range", "recurse", "env", "$ENV", ".env", '"debug"', "==", "and", "or",
    "..", "?", "//", "as $x", "$x", "[", "]", "{", "}", ":", ",", "1", "-", "*",
]  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_JQ), max_size=40).map("".join)))
def test_jq_static_check_raises_only_diff_errors(expr: str) -> None:
    _code_tokens(expr)
    with contextlib.suppress(DiffError):
        _static_check(expr)


@settings(max_examples=40, deadline=5000)
@given(st.lists(st.sampled_from(_JQ), min_size=1, max_size=20).map("".join))
def test_jq_compile_in_the_worker_raises_only_diff_errors(expr: str) -> None:
    with contextlib.suppress(DiffError):
        check_expression(expr)
        delete_paths({"a": {"b": [1, {"env": "x"}]}, "metadata": {"name": "n"}}, expr)
