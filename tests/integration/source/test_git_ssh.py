"""GitSource over SSH against a real OpenSSH sshd: keys, known_hosts, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.source import AuthError, GitSource, RepoCredentials, UnknownHostKey, match_credentials
from tests.integration.source.conftest import SSHServer

pytestmark = pytest.mark.integration


def _ssh_secret(url: str, key: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": "ssh-creds",
            "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
        },
        "stringData": {"url": url, "sshPrivateKey": key},
    }


async def test_ssh_fetch_with_key_and_known_hosts(
    sshd: SSHServer, ssh_repo: tuple[str, Workdir], tmp_path: Path
) -> None:
    url, work = ssh_repo
    sha = work.commit_and_push({"app/a.yaml": "kind: ConfigMap\n"}, "over ssh")
    work.tag("v1.0.0")
    work.push(tags=True)
    prefix = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}/"
    creds = match_credentials(url, [_ssh_secret(prefix, sshd.client_key)])
    assert creds is not None
    source = GitSource(tmp_path / "cache", timeout=30, known_hosts=sshd.known_hosts)

    artifact = await source.fetch(url, "^1.0", "app", creds)

    assert artifact.revision == sha
    assert artifact.url == url
    assert (artifact.directory / "a.yaml").read_text() == "kind: ConfigMap\n"
    assert list((source.cache_dir / "tmp").iterdir()) == []  # key file removed
    assert "BEGIN OPENSSH" not in repr(creds)


async def test_unknown_host_key_is_refused(
    sshd: SSHServer, ssh_repo: tuple[str, Workdir], tmp_path: Path
) -> None:
    url, work = ssh_repo
    work.commit_and_push({"a": "1"}, "x")
    creds = RepoCredentials(url=url, ssh_private_key=sshd.client_key)
    source = GitSource(tmp_path / "cache", timeout=30, known_hosts="")
    with pytest.raises(UnknownHostKey, match="known_hosts"):
        await source.resolve(url, "main", creds)
    # never "accept-new": a second attempt is refused just the same
    with pytest.raises(UnknownHostKey):
        await source.fetch(url, "main", ".", creds)


async def test_changed_host_key_is_refused(
    sshd: SSHServer, ssh_repo: tuple[str, Workdir], tmp_path: Path
) -> None:
    url, work = ssh_repo
    work.commit_and_push({"a": "1"}, "x")
    # known_hosts names this host with some other ed25519 key
    wrong = f"[127.0.0.1]:{sshd.port} {sshd.other_public_key}\n"
    creds = RepoCredentials(url=url, ssh_private_key=sshd.client_key)
    source = GitSource(tmp_path / "cache", timeout=30, known_hosts=wrong)
    with pytest.raises(UnknownHostKey, match="does not match known_hosts"):
        await source.resolve(url, "main", creds)


async def test_unauthorized_key_is_an_auth_error(
    sshd: SSHServer, ssh_repo: tuple[str, Workdir], tmp_path: Path
) -> None:
    url, work = ssh_repo
    work.commit_and_push({"a": "1"}, "x")
    source = GitSource(tmp_path / "cache", timeout=30, known_hosts=sshd.known_hosts)
    wrong = RepoCredentials(url=url, ssh_private_key=sshd.other_key)
    with pytest.raises(AuthError) as caught:
        await source.resolve(url, "main", wrong)
    assert "PRIVATE KEY" not in str(caught.value)
    with pytest.raises(AuthError):
        await source.resolve(url, "main")  # no key at all
