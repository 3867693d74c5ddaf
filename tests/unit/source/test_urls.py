"""URL normalization, redaction and refusal of option-looking arguments."""

from __future__ import annotations

import pytest

from gitsail.source import GitSource, InvalidSource, normalize_repo_url, redact_url
from gitsail.source._urls import parse_repo_url


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://GitHub.com/Org/Repo.git/", "https://github.com/Org/Repo"),
        ("https://github.com:443/org/repo", "https://github.com/org/repo"),
        ("https://user:pw@github.com/org/repo.git", "https://github.com/org/repo"),
        ("git@GitHub.com:org/repo.git", "ssh://git@github.com/org/repo"),
        ("ssh://git@github.com:22/org/repo", "ssh://git@github.com/org/repo"),
        ("ssh://git@host:2222/org/repo.git", "ssh://git@host:2222/org/repo"),
        ("file:///srv/repo.git", "file:///srv/repo"),
        ("/srv/repo.git", "file:///srv/repo"),
    ],
)
def test_normalize(url: str, normalized: str) -> None:
    assert normalize_repo_url(url) == normalized


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:s3cret@git.example.com/r.git", "https://git.example.com/r.git"),
        ("http://token@git.example.com:8080/r", "http://git.example.com:8080/r"),
        ("ssh://git:s3cret@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("https://git.example.com/r", "https://git.example.com/r"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "-uhttps://evil",
        "--upload-pack=touch /tmp/pwned",
        "ext::sh -c touch% /tmp/pwned",
        "git://example.com/repo",
        "ftp://example.com/repo",
        "https://example.com/repo\nx",
        "",
    ],
)
def test_unsafe_or_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidSource):
        parse_repo_url(url)


@pytest.mark.parametrize("revision", ["--upload-pack=evil", "-b", "-"])
async def test_revisions_starting_with_dash_are_refused(revision: str, tmp_path: object) -> None:
    source = GitSource(cache_dir=None)
    with pytest.raises(InvalidSource, match="starts with '-'"):
        await source.resolve("https://git.example.invalid/repo.git", revision)
    assert source.stats.ls_remotes == 0


async def test_url_starting_with_dash_is_refused_before_running_git() -> None:
    source = GitSource(cache_dir=None)
    with pytest.raises(InvalidSource, match="starts with '-'"):
        await source.fetch("--upload-pack=touch /tmp/x", "main", ".")
    assert source.stats.ls_remotes == 0


async def test_path_escaping_the_repository_is_refused_before_running_git() -> None:
    source = GitSource(cache_dir=None)
    with pytest.raises(InvalidSource, match="inside the repository"):
        await source.fetch("https://git.example.invalid/repo.git", "main", "../../etc")
