"""URL normalization, redaction, refusal of option-looking arguments, and the URL policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source import (
    FetchError,
    GitSource,
    HelmRepoSource,
    InvalidSource,
    SourceError,
    normalize_repo_url,
    redact_url,
)
from gitsail.source._urls import check_host, http_guard, parse_repo_url


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


# --- the operator's URL policy -------------------------------------------------------------

ALLOW_FILES = Policy(allow_file_urls=True)


@pytest.mark.parametrize("url", ["file:///srv/repo.git", "/srv/repo.git"])
async def test_file_urls_and_bare_paths_are_refused_by_default(url: str, tmp_path: Path) -> None:
    source = GitSource(tmp_path / "cache")
    with pytest.raises(InvalidSource, match="file:// URLs and local paths are refused"):
        await source.fetch(url, "main", ".")
    assert source.stats.ls_remotes == 0


async def test_the_source_cache_is_never_a_repository_even_when_file_urls_are_allowed(
    tmp_path: Path,
) -> None:
    source = GitSource(tmp_path / "cache", policy=ALLOW_FILES)
    mirror = tmp_path / "cache" / "repos" / ("0" * 64 + ".git")
    for url in (f"file://{mirror}", str(mirror), f"file://{tmp_path}/cache/../cache/repos"):
        with pytest.raises(InvalidSource, match="source cache"):
            await source.fetch(url, "0" * 40, ".")
    assert source.stats.ls_remotes == 0


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",  # decimal
        "0251.0376.0251.0376",  # octal
        "0xa9fea9fe",  # hex
        "169.254.43518",  # a.b.c with a 16-bit last part
        "::ffff:169.254.169.254",  # IPv4-mapped IPv6
        "::ffff:a9fe:a9fe",
        "::169.254.169.254",  # IPv4-compatible IPv6
        "64:ff9b::a9fe:a9fe",  # NAT64
        "fe80::1",
        "100.100.100.200",
        "fd00:ec2::254",
    ],
)
async def test_denied_networks_refuse_every_spelling_of_an_address(host: str) -> None:
    with pytest.raises(InvalidSource, match="denied network"):
        await check_host(host, DEFAULT_POLICY, what="http://x/r.git")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.1.2.3", "2001:db8::1"])
async def test_addresses_outside_the_denied_networks_pass(host: str) -> None:
    await check_host(host, DEFAULT_POLICY, what="http://x/r.git")


async def test_a_name_is_refused_when_any_of_its_addresses_is_denied() -> None:
    async def resolve(name: str) -> list[str]:
        assert name == "metadata.example"
        return ["10.0.0.7", "169.254.169.254"]

    with pytest.raises(InvalidSource, match=r"resolves to 169\.254\.169\.254"):
        await check_host("metadata.example.", DEFAULT_POLICY, what="u", resolve=resolve)


async def test_unresolvable_hosts_and_unreadable_deny_lists_refuse() -> None:
    async def fails(name: str) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(FetchError, match="cannot resolve"):
        await check_host("nowhere.example", DEFAULT_POLICY, what="u", resolve=fails)
    with pytest.raises(SourceError, match="GITSAIL_DENIED_NETWORKS"):
        await check_host("127.0.0.1", Policy(denied_networks=("not-a-net",)), what="u")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/repo.git",
        "https://user:pw@[::ffff:169.254.169.254]/repo.git",
        "http://2852039166/repo.git",
        "ssh://git@169.254.169.254/repo.git",
        "git@169.254.169.254:repo.git",
    ],
)
async def test_git_never_contacts_a_denied_host(url: str, tmp_path: Path) -> None:
    source = GitSource(tmp_path / "cache")
    with pytest.raises(InvalidSource, match="denied network") as caught:
        await source.fetch(url, "main", ".")
    assert source.stats.ls_remotes == 0
    assert "pw" not in str(caught.value)
    with pytest.raises(InvalidSource, match="denied network"):
        await source.fetch(url, "a" * 40, ".")  # a commit SHA is checked as well
    assert source.stats.fetches == 0


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(handler),
        follow_redirects=True,
        event_hooks=http_guard(DEFAULT_POLICY),
    )


async def test_http_guard_follows_redirects_within_the_same_host_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/same":
            return httpx.Response(302, headers={"location": "/index.yaml"})
        if request.url.path == "/other":
            return httpx.Response(302, headers={"location": "http://127.0.0.2/index.yaml"})
        if request.url.path == "/metadata":
            return httpx.Response(301, headers={"location": "http://169.254.169.254/latest"})
        return httpx.Response(200, text="ok")

    async with _client(handler) as client:
        assert (await client.get("http://127.0.0.1/same")).text == "ok"
        with pytest.raises(InvalidSource, match="same host"):
            await client.get("http://127.0.0.1/other")
        with pytest.raises(InvalidSource, match="same host"):
            await client.get("http://127.0.0.1/metadata")


async def test_http_guard_refuses_a_denied_host_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with _client(handler) as client:
        with pytest.raises(InvalidSource, match="denied network"):
            await client.get("http://[::ffff:a9fe:a9fe]/index.yaml")
    assert sent == []


async def test_helm_repositories_on_denied_hosts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSource, match="denied network"):
        await HelmRepoSource(tmp_path).fetch_chart("http://169.254.169.254/charts", "x", "1.0")
