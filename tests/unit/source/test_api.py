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


def test_exports_are_imported_on_first_use_so_a_yaml_reader_stays_light() -> None:
    """helm's post-renderer (a process per release install) reads YAML through
    ``boundedyaml``: that must not import git, Helm or the HTTP client."""
    import subprocess
    import sys

    probe = (
        "import sys, gitsail.render, gitsail.source.boundedyaml; "
        "print(sorted(m for m in ('httpx', 'gitsail.source.git', 'gitsail.source.helm') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    import gitsail.source as source

    assert source.GitSource.__name__ == "GitSource"  # still there, on first use
    assert sorted(dir(source)) == sorted(source.__all__)
