"""The public surface of gitsail.source is exactly its __all__."""

from __future__ import annotations

import inspect

import gitsail.source as source


def test_all_names_exist() -> None:
    for name in source.__all__:
        assert hasattr(source, name), name


def test_agreed_names_are_public() -> None:
    agreed = {
        "RepoCredentials",
        "match_credentials",
        "known_hosts_from",
        "SourceError",
        "FetchError",
        "AuthError",
        "RevisionNotFound",
        "UnknownHostKey",
        "GitSource",
        "HelmRepoSource",
        "resolve_semver",
        "is_semver_constraint",
        "input_files",
        "input_digest",
    }
    assert agreed <= set(source.__all__)


def test_error_tree() -> None:
    for name in ("FetchError", "AuthError", "RevisionNotFound", "UnknownHostKey", "InvalidSource"):
        assert issubclass(getattr(source, name), source.SourceError)


def test_git_source_signatures() -> None:
    fetch = inspect.signature(source.GitSource.fetch)
    assert list(fetch.parameters) == [
        "self",
        "repo_url",
        "revision",
        "path",
        "creds",
        "inputs_options",
    ]
    assert fetch.parameters["inputs_options"].kind is inspect.Parameter.KEYWORD_ONLY
    init = inspect.signature(source.GitSource.__init__)
    assert init.parameters["timeout"].default is None  # Policy.git_timeout
