from __future__ import annotations

import pytest

from gitsail.diff import DiffError, jqpath
from gitsail.diff.jqpath import check_expression, delete_paths

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


def test_expression_over_budget_raises_and_is_quarantined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expr = ".metadata.annotations.slow"
    monkeypatch.setattr(jqpath, "_quarantined", set())
    clock = iter([100.0, 102.5])
    monkeypatch.setattr(jqpath, "_clock", lambda: next(clock))
    with pytest.raises(DiffError, match="over its 1s budget"):
        delete_paths({"metadata": {}}, expr)
    with pytest.raises(DiffError, match="disabled until gitsail restarts"):
        delete_paths({"metadata": {}}, expr)
    monkeypatch.setattr(jqpath, "_clock", iter([5.0, 5.1]).__next__)
    assert delete_paths({"a": 1}, ".a") == {}
