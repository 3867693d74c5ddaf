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

from gitsail.source._urls import normalize_repo_url, redact_url
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
    "redact_url",
    "resolve_semver",
]
