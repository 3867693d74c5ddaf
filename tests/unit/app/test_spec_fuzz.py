"""Fuzzing the Argo CD adapter: whatever an Application holds, reading it either gives an App
or raises ``AppSpecError`` — never a crash (KeyError, TypeError, ValueError, ...).

Two generators: arbitrary JSON-like values, and values shaped by the CRD schema itself where
each field is sometimes of the right type and sometimes junk, so the fuzzer reaches deep
fields (``spec.syncPolicy.retry.backoff.factor``) instead of failing at ``spec``. An App that
does come out is then handed to what consumes it next (render options, retry delays).
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitsail.kinds._argo_spec import APPLICATION, AnyObject, Fields, ListOf, MapOf, Scalar, Schema
from gitsail.kinds.argo_application import App, AppSpecError, render_options
from gitsail.render import RenderError

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "5s", "-1", "abc", "3m", "in-cluster", "HEAD", "²", "1e9h", "0"])
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def shaped(schema: Schema) -> st.SearchStrategy[Any]:
    """Values that follow ``schema`` most of the way down, with junk mixed in at every level."""
    if isinstance(schema, Scalar):
        right: st.SearchStrategy[Any] = {
            "string": st.text(max_size=10) | st.sampled_from(["5s", "10", "-3s", "1h30m", ""]),
            "boolean": st.booleans(),
            "integer": st.integers(min_value=-5, max_value=20) | st.integers(),
            "int-or-string": st.integers() | st.text(max_size=5),
        }[schema.type]
        return right | JSON_SCALARS
    if isinstance(schema, ListOf):
        return st.lists(shaped(schema.items), max_size=3) | JSON_SCALARS
    if isinstance(schema, MapOf):
        return st.dictionaries(st.text(max_size=6), shaped(schema.values), max_size=3) | JSON
    if isinstance(schema, AnyObject):
        return JSON
    return (
        st.fixed_dictionaries(
            {},
            optional={
                key: st.deferred(lambda s=sub: shaped(s)) for key, sub in schema.fields.items()
            },
        )
        | JSON_SCALARS
    )


def _reads_or_refuses(obj: Any) -> None:
    try:
        app = App.from_application(obj)
    except AppSpecError as exc:
        message = str(exc)
        assert message
        return
    assert app.name
    for attempt in (0, 1, 70, 5_000):
        assert 0 <= app.retry.delay(attempt) <= max(app.retry.max_duration, app.retry.duration)
    with contextlib.suppress(RenderError):
        render_options(app.spec_source, app_name=app.name, namespace=app.destination_namespace)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_only_ever_raises_app_spec_error(obj: Any) -> None:
    _reads_or_refuses(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_specs_only_ever_raise_app_spec_error(spec: Any) -> None:
    _reads_or_refuses({"metadata": {"name": "fuzz", "namespace": "argocd"}, "spec": spec})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped(APPLICATION))
def test_schema_shaped_applications_only_ever_raise_app_spec_error(obj: Any) -> None:
    _reads_or_refuses(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped(APPLICATION.fields["spec"]))
def test_schema_shaped_specs_with_a_source_only_ever_raise_app_spec_error(spec: Any) -> None:
    if isinstance(spec, dict):
        spec.setdefault("source", {"repoURL": "https://git.example/r.git"})
    _reads_or_refuses({"metadata": {"name": "fuzz"}, "spec": spec})


def test_the_shaped_generator_reaches_valid_applications() -> None:
    """Guard for the fuzzer itself: it must produce Apps, not only refusals."""
    assert isinstance(APPLICATION, Fields)
    seen: list[App] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(shaped(APPLICATION.fields["spec"]))
    def collect(spec: Any) -> None:
        if isinstance(spec, dict):
            spec["source"] = {"repoURL": "https://git.example/r.git"}
            with contextlib.suppress(AppSpecError):
                seen.append(App.from_application({"metadata": {"name": "n"}, "spec": spec}))

    collect()
    assert seen
