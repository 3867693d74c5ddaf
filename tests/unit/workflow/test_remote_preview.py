"""preview --pr: where the credentials for the remote come from (never from argv)."""

from __future__ import annotations

from gitsail.workflow.remote_preview import remote_credentials


def test_userinfo_in_the_url_wins_and_is_split_off() -> None:
    creds = remote_credentials("https://bot:tok@git.example.com/r.git", {})
    assert creds is not None
    assert (creds.username, creds.password) == ("bot", "tok")
    assert "tok" not in creds.url
    assert "tok" not in repr(creds)


def test_a_token_from_the_environment() -> None:
    env = {"GITSAIL_GIT_PASSWORD": "ghs_x", "GITSAIL_GIT_USERNAME": "x-access-token"}
    creds = remote_credentials("https://github.com/o/r", env)
    assert creds is not None
    assert (creds.username, creds.password) == ("x-access-token", "ghs_x")
    default_user = remote_credentials("https://github.com/o/r", {"GITSAIL_GIT_PASSWORD": "t"})
    assert default_user is not None
    assert default_user.username == "git"


def test_none_without_either() -> None:
    assert remote_credentials("https://github.com/o/r", {}) is None
