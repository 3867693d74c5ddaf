from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitsail.kinds import (
    GitRepository,
    Include,
    RefKind,
    RevisionRef,
    SpecError,
    UnsupportedField,
    parse_git_repository,
)

SHA = "363a6a8fe6a7f13e05d34c163b0ef02a777da20a"


def repo(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"interval": "1m", "url": "https://github.com/myorg/myapp-manifests"}
    base.update(spec)
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "myapp", "namespace": "flux-system", "generation": 3},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def test_the_articles_repository_parses_with_flux_defaults() -> None:
    parsed = parse_git_repository(repo(ref={"branch": "main"}))
    assert parsed.namespace == "flux-system"
    assert parsed.generation == 3
    source = parsed.source
    assert source.ref == RevisionRef(RefKind.BRANCH, "main")
    assert (source.interval, source.timeout) == (60.0, 60.0)
    assert (source.secret_ref, source.ignore, source.include, source.suspend) == (
        None,
        None,
        (),
        False,
    )


@pytest.mark.parametrize("ref", [None, {}, {"branch": ""}])
def test_no_reference_means_the_master_branch(ref: Any) -> None:
    assert parse_git_repository(repo(ref=ref)).source.ref == RevisionRef(RefKind.BRANCH, "master")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"branch": "main", "tag": "v1"}, RevisionRef(RefKind.TAG, "v1")),
        ({"tag": "v1", "semver": ">=1.0"}, RevisionRef(RefKind.SEMVER, ">=1.0")),
        (
            {"semver": ">=1.0", "name": "refs/pull/4/head"},
            RevisionRef(RefKind.NAME, "refs/pull/4/head"),
        ),
        (
            {"name": "refs/heads/x", "commit": SHA, "tag": "v1"},
            RevisionRef(RefKind.COMMIT, SHA),
        ),
        ({"branch": "main", "commit": SHA}, RevisionRef(RefKind.COMMIT, SHA, branch="main")),
    ],
)
def test_reference_precedence_is_commit_name_semver_tag_branch(
    ref: dict[str, str], expected: RevisionRef
) -> None:
    assert parse_git_repository(repo(ref=ref)).source.ref == expected


def test_fields_are_read_with_their_defaults() -> None:
    parsed = parse_git_repository(
        repo(
            timeout="1m30s",
            secretRef={"name": "creds"},
            ignore="/*\n!/deploy\n",
            suspend=True,
            include=[
                {"repository": {"name": "other"}},
                {"repository": {"name": "b"}, "fromPath": "x", "toPath": "y/z"},
            ],
        )
    )
    source = parsed.source
    assert source.timeout == 90.0
    assert source.secret_ref == "creds"
    assert source.ignore == "/*\n!/deploy\n"
    assert source.suspend is True
    assert source.include == (Include("other", "", "other"), Include("b", "x", "y/z"))


def test_v1beta2_is_read_the_same_and_git_implementation_has_no_effect() -> None:
    obj = repo(gitImplementation="libgit2")
    obj["apiVersion"] = "source.toolkit.fluxcd.io/v1beta2"
    assert parse_git_repository(obj).source == parse_git_repository(repo()).source


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"interval": "5x"}, 'spec.interval: not a duration: "5x"'),
        ({"interval": None}, "spec.interval: required"),
        ({"url": "git@github.com:org/repo"}, "spec.url: invalid value"),
        ({"url": 5}, "spec.url: expected a string, got 5"),
        ({"timeout": "-1s"}, "spec.timeout: not a duration"),
        ({"ref": {"branch": "--upload-pack=x"}}, "spec.ref.branch: invalid value"),
        ({"ref": {"commit": "abc"}}, "spec.ref.commit: invalid value"),
        ({"ref": {"name": "main"}}, "spec.ref.name: invalid value"),
        ({"ref": {"brnch": "main"}}, "spec.ref.brnch: unknown field"),
        ({"secretRef": {}}, "spec.secretRef.name: required"),
        ({"include": [{"repository": {"name": "a"}, "toPath": "../x"}]}, "spec.include[0].toPath"),
        ({"suspend": "yes"}, 'spec.suspend: expected true or false, got "yes"'),
    ],
)
def test_malformed_fields_are_refused_with_their_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_git_repository(repo(**spec))
    assert str(err.value).startswith("GitRepository flux-system/myapp: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"verify": {"mode": "HEAD", "secretRef": {"name": "k"}}}, "spec.verify"),
        ({"recurseSubmodules": True}, "spec.recurseSubmodules"),
        ({"provider": "github"}, "spec.provider"),
        ({"proxySecretRef": {"name": "p"}}, "spec.proxySecretRef"),
        ({"sparseCheckout": ["deploy"]}, "spec.sparseCheckout"),
        ({"serviceAccountName": "sa"}, "spec.serviceAccountName"),
        ({"accessFrom": {"namespaceSelectors": []}}, "spec.accessFrom"),
    ],
)
def test_fields_gitsail_does_not_implement_are_refused(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        parse_git_repository(repo(**spec))
    assert err.value.field == field
    assert "not implemented" in str(err.value)


def test_recurse_submodules_false_and_generic_provider_are_fine() -> None:
    parse_git_repository(repo(recurseSubmodules=False, provider="generic", sparseCheckout=[]))


def test_identity_is_checked() -> None:
    obj = repo()
    obj["apiVersion"] = "source.toolkit.fluxcd.io/v1beta1"
    with pytest.raises(SpecError, match="apiVersion"):
        parse_git_repository(obj)
    obj = repo()
    del obj["metadata"]["namespace"]
    with pytest.raises(SpecError, match=r"metadata\.namespace"):
        parse_git_repository(obj)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "5s", "-1", "1m", "main", SHA, "refs/heads/x", "https://x/y", "0"])
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SPEC_FIELDS = [
    "url", "interval", "timeout", "ref", "secretRef", "ignore", "include", "suspend",
    "verify", "recurseSubmodules", "provider", "sparseCheckout", "gitImplementation",
]  # fmt: skip
REF_FIELDS = ["branch", "tag", "semver", "name", "commit"]


def _parse_or_spec_error(obj: Any) -> GitRepository | None:
    try:
        return parse_git_repository(obj)
    except SpecError:
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_value_parses_or_raises_spec_error(value: Any) -> None:
    _parse_or_spec_error(value)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(SPEC_FIELDS), JSON, max_size=6),
    st.dictionaries(st.sampled_from(REF_FIELDS), JSON_SCALARS, max_size=3),
)
def test_shaped_specs_parse_or_raise_spec_error(
    changes: dict[str, Any], ref: dict[str, Any]
) -> None:
    obj = repo(ref=ref)
    obj["spec"].update(changes)
    before = copy.deepcopy(obj)
    parsed = _parse_or_spec_error(obj)
    assert obj == before  # parsing never changes its input
    if parsed is not None:
        hash(parsed)  # records are frozen and hashable
