"""Errors raised by the source stage.

Every message names the repository (with any userinfo removed) and says what to do next.
None ever carries a password, token or private key: messages are built from redacted URLs,
and the git/ssh output they quote is redacted again before it is used.

```
SourceError                  anything that stops an Artifact from being produced
├── InvalidSource            bad input (URL, revision, path); retrying will not help
│   └── PathNotFound         the app's path does not exist at the resolved revision
├── FetchError               the server could not be reached or the transfer failed; retry
├── AuthError                the server refused the credentials (or needs some)
├── RevisionNotFound         no branch, tag, commit or version matches the request
└── UnknownHostKey           SSH host key not in known_hosts (or changed)
```
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "FetchError",
    "InvalidSource",
    "PathNotFound",
    "RevisionNotFound",
    "SourceError",
    "UnknownHostKey",
]


class SourceError(Exception):
    """A source could not be resolved or materialized. ``url`` is already redacted."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidSource(SourceError):
    """The request itself is wrong (unsafe URL or ref, escaping path): fix the spec."""


class PathNotFound(InvalidSource):
    """The requested path does not exist in the repository at the resolved revision."""


class FetchError(SourceError):
    """The repository could not be reached or read; the next reconcile retries."""


class AuthError(SourceError):
    """The server refused the request for lack of (valid) credentials."""


class RevisionNotFound(SourceError):
    """No ref, commit or version matches the requested revision."""


class UnknownHostKey(SourceError):
    """The SSH server's host key is not trusted (unknown or changed)."""
