from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitsail.kinds import SubstitutionError, expand, substitute_objects, variables, variables_from

NAMESPACE_DOC = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": "apps",
        "labels": {"environment": "${cluster_env:=dev}", "region": "${cluster_region}"},
    },
}


def test_the_documented_example_substitutes_defaults_and_values() -> None:
    out = substitute_objects([NAMESPACE_DOC], {"cluster_region": "eu-central-1"})
    assert out[0]["metadata"]["labels"] == {"environment": "dev", "region": "eu-central-1"}
    out = substitute_objects([NAMESPACE_DOC], {"cluster_env": "prod", "cluster_region": "eu"})
    assert out[0]["metadata"]["labels"] == {"environment": "prod", "region": "eu"}
    assert NAMESPACE_DOC["metadata"]["labels"]["region"] == "${cluster_region}"  # input kept


def test_undefined_variable_without_default_is_an_error_naming_it() -> None:
    with pytest.raises(SubstitutionError) as err:
        substitute_objects([NAMESPACE_DOC], {"cluster_env": "prod"})
    assert "Namespace/apps" in str(err.value)
    assert "'cluster_region' is not defined" in str(err.value)


def test_non_strict_mode_substitutes_an_empty_string_as_flux_does_by_default() -> None:
    out = substitute_objects([NAMESPACE_DOC], {"x": "1"}, strict=False)
    # The YAML line becomes "region: ", read back as null, as after Flux's YAML round trip.
    assert out[0]["metadata"]["labels"]["region"] is None


def test_nothing_is_substituted_without_variables() -> None:
    assert substitute_objects([NAMESPACE_DOC], {}) == [NAMESPACE_DOC]


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_objects_opting_out_are_left_as_they_are(where: str) -> None:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "script",
            where: {"kustomize.toolkit.fluxcd.io/substitute": "disabled"},
        },
        "data": {"run.sh": "echo ${HOME}"},
    }
    assert substitute_objects([obj], {"HOME": "/x"}) == [obj]


def test_numbers_become_numbers_as_after_flux_reads_the_yaml_back() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
                  "spec": {"replicas": "${replicas}"}}  # fmt: skip
    assert substitute_objects([deployment], {"replicas": "3"})[0]["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${a}", "Hello"),
        ("$${a}", "${a}"),
        ("$$a", "$a"),
        ("$a and $ alone", "$a and $ alone"),
        ("${missing:=dev}", "dev"),
        ("${missing:-dev}", "dev"),
        ("${empty:=dev}", "dev"),
        ("${empty=dev}", ""),
        ("${empty-dev}", ""),
        ("${missing=pre-${a}-post}", "pre-Hello-post"),
        ("${#a}", "5"),
        ("${a^^} ${a,,} ${lower^} ${a,}", "HELLO hello World hello"),
        ("${a:1} ${a:1:2} ${a: -2} ${a:1:-1} ${a:x}", "ello el lo ell Hello"),
        ("${a/l/L} ${a//l/L} ${a/#He/J} ${a/%lo/p}", "HeLlo HeLLo Jllo Help"),
        ("${a#H*l} ${a##H*l} ${a%l*} ${a%%l*}", "lo o Hel He"),
        (r"${path/\//:}", "a:b/c"),
        ("http://example.com/${a}", "http://example.com/Hello"),
    ],
)
def test_expressions_follow_fluxs_envsubst(text: str, expected: str) -> None:
    values = {"a": "Hello", "empty": "", "lower": "world", "path": "a/b/c"}
    assert expand(text, values) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${", "no variable name"),
        ("${}", "no variable name"),
        ("${a", "bad substitution"),
        ("${a:?err}", ":? is not supported"),
        ("${a:+x}", r":\+ is not supported"),
        ("${a!}", "bad substitution"),
    ],
)
def test_bad_expressions_are_errors(text: str, message: str) -> None:
    with pytest.raises(SubstitutionError, match=message):
        expand(text, {"a": "x"})


def test_substitute_wins_over_sources_and_later_sources_over_earlier() -> None:
    merged = variables(
        {"a": "inline"},
        [("ConfigMap/one", {"a": "one", "b": "one", "c": "one"}), ("Secret/two", {"b": "two\n"})],
    )
    assert merged == {"a": "inline", "b": "two", "c": "one"}


def test_invalid_variable_names_from_a_source_are_refused_naming_it() -> None:
    with pytest.raises(SubstitutionError, match="ConfigMap/vars: 'my-var' is not a valid"):
        variables({}, [("ConfigMap/vars", {"my-var": "x"})])


def test_configmap_and_secret_data_become_variables() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "v"}, "data": {"a": "1"}}
    secret = {
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"t": base64.b64encode(b"tok").decode()},
    }
    assert variables_from(cm) == {"a": "1"}
    assert variables_from(secret) == {"t": "tok"}
    with pytest.raises(SubstitutionError, match=r"Secret/s: data\.t is not base64"):
        variables_from({**secret, "data": {"t": "!!"}})


def test_output_is_bounded() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
           "data": {"k": "${v}" * 1000}}  # fmt: skip
    with pytest.raises(SubstitutionError, match="exceed 10000 bytes"):
        substitute_objects([obj], {"v": "x" * 100}, max_bytes=10_000)


def test_nesting_is_bounded() -> None:
    with pytest.raises(SubstitutionError, match="nested"):
        expand("${a:=" * 100 + "}" * 100, {})


@settings(max_examples=500)
@given(st.text(alphabet="${}:=-#%/^,!\\ab_1 ", max_size=40), st.booleans())
def test_any_text_expands_or_raises_substitution_error(text: str, strict: bool) -> None:
    with contextlib.suppress(SubstitutionError):
        expand(text, {"a": "x", "b": ""}, strict=strict)


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=60))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert expand(text, {"a": "x"}) == text
