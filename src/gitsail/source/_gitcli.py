"""The hardened ``git`` command line: how every git process of the source stage is started.

- argv lists only, never a shell; callers put ``--`` before URLs and refs and refuse values
  starting with ``-`` (``_urls.check_argument``);
- a closed environment: no system or global config, a private ``HOME`` (so no ``~/.ssh``,
  ``~/.gitconfig`` or ``~/.netrc``), no terminal prompts, no askpass program except ours,
  ``LC_ALL=C`` so errors can be classified;
- ``-c`` options that allow only the https, http, ssh and file transports (file only when
  the operator allows file URLs) and disable hooks;
- no HTTP redirects (``http.followRedirects=false``): a redirect could lead git to another
  host, past the deny-list checked before it started;
- HTTP(S) credentials reach git through a credential helper, scoped to the repository's
  origin, that reads them from the child's environment: never argv, never a URL on disk;
- SSH through ``GIT_SSH_COMMAND`` with a private key file (0600, removed afterwards),
  ``BatchMode``, ``IdentitiesOnly`` and ``StrictHostKeyChecking=yes`` against a known_hosts
  file we write: an unknown host is an error, never "accept-new";
- a timeout that kills the whole process group (git spawns ssh and remote helpers).

Failures become the ``SourceError`` subclasses by git's and ssh's (C locale) messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gitsail.process import kill_group
from gitsail.source._urls import RepoURL, redact_text
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import (
    AuthError,
    FetchError,
    InvalidSource,
    RevisionNotFound,
    SourceError,
    UnknownHostKey,
)

__all__ = ["GitCommand", "GitFailure", "git_session"]

HARDENING = (
    "-c", "protocol.allow=never",
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "protocol.ssh.allow=always",
    "-c", "protocol.file.allow=always",
    "-c", f"core.hooksPath={os.devnull}",
    "-c", "http.followRedirects=false",
    "-c", "core.askPass=",
    "-c", "credential.helper=",
    "-c", "core.fsmonitor=false",
    "-c", "submodule.recurse=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
)  # fmt: skip

# Inherited from the controller's environment: where git lives, proxies and CA bundles.
_INHERITED = (
    "PATH",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)

_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'test -n "$GITSAIL_GIT_USERNAME" && printf "username=%s\\n" "$GITSAIL_GIT_USERNAME"; '
    'test -n "$GITSAIL_GIT_PASSWORD" && printf "password=%s\\n" "$GITSAIL_GIT_PASSWORD"; '
    "exit 0; }; f"
)


@dataclass(frozen=True)
class GitFailure:
    returncode: int
    stderr: str


@dataclass
class GitCommand:
    """Everything needed to run git for one repository: env, ``-c`` options, redaction."""

    home: Path
    timeout: float
    url: str = ""  # redacted, for messages
    env: dict[str, str] = field(default_factory=dict)
    config: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "LC_ALL": "C",
                "LANG": "C",
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_ASKPASS": "",
                "SSH_ASKPASS": "",
                "SSH_ASKPASS_REQUIRE": "never",
                "GIT_LFS_SKIP_SMUDGE": "1",
                "GIT_NO_REPLACE_OBJECTS": "1",
            }
        )
        env.update(self.env)
        return env

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        action: str = "",
    ) -> tuple[bytes, GitFailure | None]:
        """Run ``git <hardening> <config> <args>``; raise a SourceError on failure if ``check``."""
        argv = ["git", *HARDENING, *self.config, *args]
        env = self.environment()
        if extra_env:
            env.update(extra_env)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            await kill_group(proc)
            raise FetchError(
                f"git {action or args[0]} of {self.url} timed out after {self.timeout:g}s; "
                "the server is slow or unreachable, the next reconcile retries",
                url=self.url,
            ) from None
        except BaseException:
            await kill_group(proc)
            raise
        if proc.returncode == 0:
            return stdout, None
        failure = GitFailure(
            proc.returncode or 1, redact_text(stderr.decode(errors="replace"), self.secrets)
        )
        if check:
            raise classify(failure, self.url, action or args[0])
        return stdout, failure


_UNKNOWN_HOST = (
    "host key verification failed",
    "no ecdsa host key is known",
    "no ed25519 host key is known",
    "no rsa host key is known",
    "host key is known",
)
_CHANGED_HOST = ("remote host identification has changed", "host key for")
_AUTH = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied (publickey",
    "permission denied, please try again",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "invalid username or password",
    "load key",
)
_NO_REVISION = (
    "couldn't find remote ref",
    "not our ref",
    "no such remote ref",
    "unadvertised object",
    "invalid refspec",
    "is not a valid",
)


def classify(failure: GitFailure, url: str, action: str) -> SourceError:
    """Map git/ssh stderr to the error a person can act on."""
    text = failure.stderr.strip()
    low = text.lower()
    detail = _last_lines(text)
    if any(s in low for s in _CHANGED_HOST) and "changed" in low:
        return UnknownHostKey(
            f"the SSH host key of {url} does not match known_hosts (it changed, or someone is "
            "in the middle); verify the new key and update argocd-ssh-known-hosts-cm: {detail}",
            url=url,
        )
    if any(s in low for s in _UNKNOWN_HOST):
        return UnknownHostKey(
            f"the SSH host key of {url} is not in known_hosts; add the host's key to "
            f"argocd-ssh-known-hosts-cm (ssh-keyscan, then verify it): {detail}",
            url=url,
        )
    if any(s in low for s in _AUTH):
        return AuthError(
            f"{url} refused the credentials (or requires some): check the repository Secret's "
            f"username/password or sshPrivateKey: {detail}",
            url=url,
        )
    if any(f"returned error: {code}" in low for code in (301, 302, 303, 307, 308)):
        return InvalidSource(
            f"{url} answered with a redirect; gitsail does not follow redirects (they could "
            "lead to another host). Set repoURL to the final URL",
            url=url,
        )
    if any(s in low for s in _NO_REVISION):
        return RevisionNotFound(f"{url}: the requested revision does not exist: {detail}", url=url)
    return FetchError(
        f"git {action} of {url} failed (exit {failure.returncode}); the next reconcile retries: "
        f"{detail}",
        url=url,
    )


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output from git"


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content if content.endswith("\n") else content + "\n")


@contextlib.contextmanager
def git_session(
    repo: RepoURL,
    creds: RepoCredentials | None,
    *,
    home: Path,
    scratch: Path,
    known_hosts: str,
    timeout: float,
    url: str,
    allow_file: bool = False,
) -> Iterator[GitCommand]:
    """A GitCommand carrying the credentials for ``repo``; key files live only inside."""
    command = GitCommand(home=home, timeout=timeout, url=url)
    if not allow_file:
        command.config += ["-c", "protocol.file.allow=never"]  # later -c wins
    tmp: Path | None = None
    try:
        if repo.is_http and creds is not None:
            origin = repo.origin()
            if creds.username or creds.password:
                command.config += ["-c", f"credential.{origin}.helper={_CREDENTIAL_HELPER}"]
                command.env["GITSAIL_GIT_USERNAME"] = creds.username
                command.env["GITSAIL_GIT_PASSWORD"] = creds.password
            if creds.bearer_token:
                # Via GIT_CONFIG_* so the token stays out of argv (visible in /proc).
                command.env.update(
                    {
                        "GIT_CONFIG_COUNT": "1",
                        "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
                        "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {creds.bearer_token}",
                    }
                )
            if creds.insecure:
                command.config += ["-c", f"http.{origin}.sslVerify=false"]
            command.secrets = (creds.password, creds.bearer_token)
        if repo.is_ssh:
            scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = Path(tempfile.mkdtemp(prefix="ssh-", dir=scratch))
            known = tmp / "known_hosts"
            _write_private(known, known_hosts)
            ssh = [
                "ssh",
                "-F", os.devnull,
                "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known}",
                "-o", f"GlobalKnownHostsFile={os.devnull}",
                "-o", "UpdateHostKeys=no",
                "-o", f"ConnectTimeout={max(1, int(timeout))}",
            ]  # fmt: skip
            if creds is not None and creds.ssh_private_key:
                key = tmp / "identity"
                _write_private(key, creds.ssh_private_key)
                ssh += ["-i", str(key)]
                command.secrets = (creds.ssh_private_key,)
            command.env["GIT_SSH_COMMAND"] = shlex.join(ssh)
            command.env["GIT_SSH_VARIANT"] = "ssh"
        yield command
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
