"""The source stage: resolve a revision and materialize it as an ``Artifact``.

```python
creds = match_credentials(app_repo_url, repo_secrets)          # Argo CD repository Secrets
git = GitSource(cache_dir, known_hosts=known_hosts_from(cm))    # one per process
sha = await git.resolve(url, "main", creds)                     # ls-remote: cheap polling
artifact = await git.fetch(url, "v1.*", "apps/guestbook", creds)
chart = await HelmRepoSource(cache_dir).fetch_chart(url, "podinfo", "^6", creds)
```

Git goes through the hardened ``git`` CLI (``_gitcli``); each repository is fetched into one
cached bare repository and each commit checked out once, read-only, for every app using it.
``Artifact.digest`` covers exactly the files the app's render reads (``inputs``), so a
commit that does not touch them keeps the digest and the render cache hits.

Errors (``errors``)::

    SourceError
    ├── InvalidSource ── PathNotFound
    ├── FetchError
    ├── AuthError
    ├── RevisionNotFound
    └── UnknownHostKey
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitsail.source._urls import normalize_repo_url, redact_text, redact_url
    from gitsail.source.credentials import RepoCredentials, known_hosts_from, match_credentials
    from gitsail.source.errors import (
        AuthError,
        FetchError,
        InvalidSource,
        PathNotFound,
        RevisionNotFound,
        SourceError,
        UnknownHostKey,
    )
    from gitsail.source.git import GitSource, GitStats
    from gitsail.source.helm import HelmRepoSource, HelmStats
    from gitsail.source.inputs import input_digest, input_files
    from gitsail.source.semver import is_semver_constraint, resolve_semver

# Exports are imported on first use (PEP 562): a process that needs one small module (helm's
# post-renderer reads YAML with ``boundedyaml``) does not pay for git, Helm and httpx.
_EXPORTS = {
    "AuthError": "gitsail.source.errors",
    "FetchError": "gitsail.source.errors",
    "GitSource": "gitsail.source.git",
    "GitStats": "gitsail.source.git",
    "HelmRepoSource": "gitsail.source.helm",
    "HelmStats": "gitsail.source.helm",
    "InvalidSource": "gitsail.source.errors",
    "PathNotFound": "gitsail.source.errors",
    "RepoCredentials": "gitsail.source.credentials",
    "RevisionNotFound": "gitsail.source.errors",
    "SourceError": "gitsail.source.errors",
    "UnknownHostKey": "gitsail.source.errors",
    "input_digest": "gitsail.source.inputs",
    "input_files": "gitsail.source.inputs",
    "is_semver_constraint": "gitsail.source.semver",
    "known_hosts_from": "gitsail.source.credentials",
    "match_credentials": "gitsail.source.credentials",
    "normalize_repo_url": "gitsail.source._urls",
    "redact_text": "gitsail.source._urls",
    "redact_url": "gitsail.source._urls",
    "resolve_semver": "gitsail.source.semver",
}

__all__ = [
    "AuthError",
    "FetchError",
    "GitSource",
    "GitStats",
    "HelmRepoSource",
    "HelmStats",
    "InvalidSource",
    "PathNotFound",
    "RepoCredentials",
    "RevisionNotFound",
    "SourceError",
    "UnknownHostKey",
    "input_digest",
    "input_files",
    "is_semver_constraint",
    "known_hosts_from",
    "match_credentials",
    "normalize_repo_url",
    "redact_text",
    "redact_url",
    "resolve_semver",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
