"""Argo CD repository Secrets → RepoCredentials, and secrets never shown."""

from __future__ import annotations

import base64
from typing import Any

from gitsail.model import Obj
from gitsail.source import RepoCredentials, known_hosts_from, match_credentials
from gitsail.source.credentials import credential_identity


def _secret(secret_name: str, kind: str, *, encoded: bool = True, **values: str) -> Obj:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "namespace": "argocd",
            "labels": {"argocd.argoproj.io/secret-type": kind},
        },
    }
    if encoded:
        secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    else:
        secret["stringData"] = values
    return secret


def test_exact_repository_secret_beats_a_matching_prefix() -> None:
    secrets = [
        _secret("tmpl", "repo-creds", url="https://git.example.com/org", password="tmpl-pw"),
        _secret("repo", "repository", url="https://git.example.com/org/app", password="repo-pw"),
    ]
    creds = match_credentials("https://git.example.com/org/app", secrets)
    assert creds is not None
    assert creds.password == "repo-pw"
    assert creds.name == ""


def test_longest_repo_creds_prefix_wins() -> None:
    secrets = [
        _secret("short", "repo-creds", url="https://git.example.com", username="a", password="1"),
        _secret(
            "long", "repo-creds", url="https://git.example.com/team/", username="b", password="2"
        ),
        _secret("other", "repo-creds", url="https://other.example.com", username="c", password="3"),
    ]
    creds = match_credentials("https://git.example.com/team/app.git", secrets)
    assert creds is not None
    assert (creds.username, creds.password) == ("b", "2")
    assert creds.url == "https://git.example.com/team/app.git"


def test_matching_normalizes_host_case_trailing_slash_and_dot_git() -> None:
    secrets = [_secret("r", "repository", url="https://GIT.Example.com/Org/App.git/", password="p")]
    assert match_credentials("https://git.example.com/Org/App", secrets) is not None
    assert match_credentials("https://git.example.com/Org/App.git", secrets) is not None
    assert match_credentials("https://git.example.com/Org/Other", secrets) is None


def test_prefix_never_matches_another_host() -> None:
    secrets = [_secret("t", "repo-creds", url="https://git.example.com", password="p")]
    assert match_credentials("https://git.example.com.attacker.net/repo", secrets) is None
    assert match_credentials("https://git.example.com:8443/repo", secrets) is None


def test_unlabelled_secrets_are_ignored() -> None:
    secret = _secret("r", "cluster", url="https://git.example.com/app", password="p")
    assert match_credentials("https://git.example.com/app", [secret]) is None


def test_string_data_and_flags_are_read() -> None:
    secret = _secret(
        "r",
        "repository",
        encoded=False,
        url="git@github.com:org/app.git",
        sshPrivateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n",
        insecure="true",
        type="helm",
        enableOCI="true",
        name="app",
        project="team",
    )
    creds = match_credentials("git@github.com:org/app", [secret])
    assert creds is not None
    assert creds.ssh_private_key.startswith("-----BEGIN")
    assert creds.insecure
    assert creds.enable_oci
    assert (creds.type, creds.name, creds.project) == ("helm", "app", "team")


def test_repository_secret_without_credentials_takes_them_from_the_template() -> None:
    secrets = [
        _secret("repo", "repository", url="https://git.example.com/org/app", project="team"),
        _secret(
            "tmpl", "repo-creds", url="https://git.example.com/org", username="u", password="p"
        ),
    ]
    creds = match_credentials("https://git.example.com/org/app", secrets)
    assert creds is not None
    assert (creds.username, creds.password, creds.project) == ("u", "p", "team")


def test_secrets_never_appear_in_repr_or_str() -> None:
    creds = RepoCredentials(
        url="https://user:url-secret@git.example.com/app",
        username="user",
        password="hunter2-password",
        ssh_private_key="PRIVATE-KEY-MATERIAL",
        bearer_token="bearer-token-value",
    )
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2-password" not in text
        assert "PRIVATE-KEY-MATERIAL" not in text
        assert "bearer-token-value" not in text
        assert "url-secret" not in text
        assert "password=<redacted>" in text


def test_known_hosts_from_configmap() -> None:
    cm = {"data": {"ssh_known_hosts": "github.com ssh-ed25519 AAAA\n"}}
    assert known_hosts_from(cm) == "github.com ssh-ed25519 AAAA\n"
    assert known_hosts_from(None) == ""
    assert known_hosts_from({"data": {}}) == ""


def test_credential_identity_separates_whoever_presents_different_secrets() -> None:
    url = "https://git.example.com/org/private.git"
    alice = RepoCredentials(url=url, username="alice", password="pw-1")
    assert credential_identity(None) == "anonymous"
    assert credential_identity(RepoCredentials(url=url)) == "anonymous"
    assert credential_identity(alice) == credential_identity(
        RepoCredentials(url=url + "/", username="alice", password="pw-1", name="other secret")
    )
    others = [
        RepoCredentials(url=url, username="alice", password="pw-2"),
        RepoCredentials(url=url, username="alice"),
        RepoCredentials(url=url, username="alicepw-1"),
        RepoCredentials(url=url, bearer_token="pw-1"),
        RepoCredentials(url=url, ssh_private_key="pw-1"),
    ]
    identities = {credential_identity(c) for c in [alice, *others]}
    assert len(identities) == 1 + len(others)
    assert all("pw-1" not in i for i in identities)
