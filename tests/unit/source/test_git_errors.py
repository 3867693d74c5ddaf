"""git/ssh failures map to errors a person can act on, without secrets."""

from __future__ import annotations

import pytest

from gitsail.source import AuthError, FetchError, RevisionNotFound, SourceError, UnknownHostKey
from gitsail.source._gitcli import GitFailure, classify
from gitsail.source._urls import redact_text

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
