from __future__ import annotations

import dataclasses
import resource
import time

import pytest

from gitsail.diff import DiffError
from gitsail.diff.jqpath import JqRunner, check_expression, delete_paths
from gitsail.policy import DEFAULT_POLICY

from .objects import desired_deployment


def test_selected_paths_are_deleted() -> None:
    obj = desired_deployment()
    obj["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "istio-init", "image": "istio/proxyv2"},
        {"name": "migrate", "image": "acme/migrate"},
    ]
    out = delete_paths(obj, '.spec.template.spec.initContainers[] | select(.name == "istio-init")')
    assert out["spec"]["template"]["spec"]["initContainers"] == [
        {"name": "migrate", "image": "acme/migrate"}
    ]
    assert obj["spec"]["template"]["spec"]["initContainers"][0]["name"] == "istio-init"


def test_expression_that_does_not_fit_the_object_matches_nothing() -> None:
    obj = desired_deployment()
    expr = '.spec.template.spec.initContainers[] | select(.name == "istio-init")'
    assert delete_paths(obj, expr) == obj


def test_invalid_expression_raises_naming_it() -> None:
    with pytest.raises(DiffError, match=r"'\.spec\.\[' does not compile"):
        check_expression(".spec.[")


def test_expression_cannot_escape_the_del_wrapper() -> None:
    with pytest.raises(DiffError, match="does not compile"):
        check_expression(".a) | .b | (.c")
    # A trailing comment must not swallow the wrapper's closing parenthesis.
    assert delete_paths({"a": 1, "b": 2}, ".a # the a field") == {"b": 2}


def test_non_path_expression_raises_without_quoting_object_data() -> None:
    obj = {"data": {"password": "c2VjcmV0LXZhbHVl"}}
    with pytest.raises(DiffError, match="not a path expression") as raised:
        delete_paths(obj, ".data.password | ascii_downcase")
    assert "c2VjcmV0LXZhbHVl" not in str(raised.value)


@pytest.mark.parametrize(
    ("expr", "word"),
    [
        ("[repeat(.)]", "repeat"),
        ("def f: f; f", "def"),
        (".spec | recurse(.+1)", "recurse"),
        ("[range(0; 1e9)]", "range"),
        (".data | debug", "debug"),
        (".a | select($ENV.HOME)", "$ENV"),
        ('.a | select("\\(env.HOME)" == "x")', "env"),
        ('import "m" as m; .a', "import"),
    ],
)
def test_unbounded_or_process_touching_builtins_are_refused(expr: str, word: str) -> None:
    with pytest.raises(DiffError, match=f"uses '{word.replace('$', '[$]')}'"):
        check_expression(expr)


def test_builtin_names_inside_strings_and_field_names_are_fine() -> None:
    obj = {"spec": {"containers": [{"name": "debug", "env": [1]}, {"name": "app"}]}}
    out = delete_paths(obj, '.spec.containers[] | select(.name == "debug") | .env')
    assert out == {"spec": {"containers": [{"name": "debug"}, {"name": "app"}]}}
    check_expression(".. | .range?")


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_constant_is_refused_by_the_worker_memory_limit_not_built_here() -> None:
    # Compiling this constant-folds a 2 GB string; it once held the controller for 10 s.
    expr = '"x" * 2000000000'
    before = _maxrss_mib()
    started = time.monotonic()
    with pytest.raises(DiffError, match="GITSAIL_JQ_MEMORY_BYTES") as err:
        check_expression(expr)
    assert expr in str(err.value)
    assert time.monotonic() - started < 5
    assert _maxrss_mib() - before < 100
    with pytest.raises(DiffError, match="disabled until gitsail restarts"):
        delete_paths({"a": 1}, expr)


def test_slow_expression_is_stopped_at_its_deadline_then_quarantined() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, jq_timeout=0.1, jq_memory_bytes=1 << 30)
    runner = JqRunner(policy, workers=1)
    try:
        expr = '.a | select(("x" * 300000000 | length) > 0)'
        started = time.monotonic()
        with pytest.raises(DiffError, match=r"took longer than 0.1s"):
            runner.delete({"a": 1}, expr)
        assert time.monotonic() - started < 2
        calls = runner.calls
        with pytest.raises(DiffError, match="disabled until gitsail restarts"):
            runner.delete({"a": 1}, expr)
        assert runner.calls == calls  # refused without running again
        # The killed worker was replaced: other expressions still run.
        assert runner.delete({"a": 1, "b": 2}, ".a") == {"b": 2}
    finally:
        runner.close()


def test_results_are_cached_per_expression_and_input() -> None:
    runner = JqRunner(workers=1)
    try:
        obj = {"metadata": {"name": "x", "labels": {"a": "1"}}}
        assert runner.delete(obj, ".metadata.labels") == {"metadata": {"name": "x"}}
        calls = runner.calls
        assert runner.delete(obj, ".metadata.labels") == {"metadata": {"name": "x"}}
        assert runner.calls == calls
        changed = {"metadata": {"name": "y", "labels": {"a": "1"}}}
        assert runner.delete(changed, ".metadata.labels") == {"metadata": {"name": "y"}}
        assert runner.calls == calls + 1
    finally:
        runner.close()
