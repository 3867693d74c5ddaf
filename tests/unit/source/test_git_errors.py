"""git/ssh failures map to errors a person can act on, without secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.source import (
    AuthError,
    FetchError,
    InvalidSource,
    RevisionNotFound,
    SourceError,
    UnknownHostKey,
)
from gitsail.source._gitcli import HARDENING, GitFailure, classify, git_session
from gitsail.source._urls import parse_repo_url, redact_text
from gitsail.source.git import parse_ls_remote

URL = "https://git.example.com/org/app.git"


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("fatal: Authentication failed for 'https://git.example.com/org/app.git/'", AuthError),
        ("fatal: could not read Username for 'https://x': terminal prompts disabled", AuthError),
        ("git@host: Permission denied (publickey).\nfatal: Could not read from remote", AuthError),
        ("No ED25519 host key is known for [h]:22 and you have requested strict checking.\n"
         "Host key verification failed.", UnknownHostKey),
        ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n"
         "Host key for [h]:22 has changed and you have requested strict checking.\n"
         "Host key verification failed.", UnknownHostKey),
        ("fatal: couldn't find remote ref refs/heads/nope", RevisionNotFound),
        ("fatal: unable to access 'x': Failed to connect to 127.0.0.1 port 1: Connection refused",
         FetchError),
        ("fatal: repository 'https://git.example.com/x/' not found", FetchError),
        ("fatal: unable to access 'x': The requested URL returned error: 302", InvalidSource),
    ],
)  # fmt: skip
def test_classify(stderr: str, error: type[SourceError]) -> None:
    exc = classify(GitFailure(128, stderr), URL, "fetch")
    assert type(exc) is error
    assert URL in str(exc)


def test_redact_text_removes_userinfo_and_known_secrets() -> None:
    text = "fatal: unable to access 'https://bob:hunter22@h/r.git/': token abc123xyz leaked"
    clean = redact_text(text, ("abc123xyz",))
    assert "hunter22" not in clean
    assert "bob" not in clean
    assert "abc123xyz" not in clean


def test_git_never_follows_redirects_and_reads_file_urls_only_when_allowed() -> None:
    assert "http.followRedirects=false" in HARDENING
    with git_session(
        parse_repo_url("https://h/r.git"),
        None,
        home=Path("/h"),
        scratch=Path("/s"),
        known_hosts="",
        timeout=1,
        url="https://h/r.git",
    ) as refused:
        assert refused.config[-2:] == ["-c", "protocol.file.allow=never"]
    with git_session(
        parse_repo_url("file:///srv/r.git"),
        None,
        home=Path("/h"),
        scratch=Path("/s"),
        known_hosts="",
        timeout=1,
        url="file:///srv/r.git",
        allow_file=True,
    ) as allowed:
        assert "protocol.file.allow=never" not in allowed.config


def test_ls_remote_answers_are_parsed_with_peeled_tags_and_head() -> None:
    a, b, c = "a" * 40, "b" * 40, "c" * 64
    out = (
        f"ref: refs/heads/main\tHEAD\n{a}\tHEAD\n{a}\trefs/heads/main\n"
        f"{b}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\n"
    ).encode()
    refs = parse_ls_remote(out, URL)
    assert refs.head_target == "refs/heads/main"
    assert refs.commits == {"HEAD": a, "refs/heads/main": a, "refs/tags/v1": c}


@pytest.mark.parametrize(
    "line",
    [
        "--upload-pack=sh\trefs/heads/main",  # not a SHA: would reach git's argv
        "A" * 40 + "\trefs/heads/main",  # upper case is not what git prints
        "a" * 39 + "\trefs/heads/main",
        "a" * 40 + "\t",  # no ref name
        "a" * 40 + "\trefs/heads/x\x1b[2J",  # a control character in the name
        "garbage",
    ],
)
def test_an_ls_remote_answer_that_is_not_commits_and_refs_is_refused(line: str) -> None:
    out = f"{'a' * 40}\trefs/heads/ok\n{line}\n".encode()
    with pytest.raises(FetchError, match="not a list of commits and refs"):
        parse_ls_remote(out, URL)
