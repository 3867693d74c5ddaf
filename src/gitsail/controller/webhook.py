"""Git push webhooks: verify the sender, then parse the push into a ``PushEvent``.

Pure: bytes and headers in, a record out, no I/O. The HTTP server (``server.py``) reads
the body with a cap and a deadline, hands it to ``parse_webhook``, refuses a replayed
delivery (``ReplayGuard`` over ``delivery_keys``), and asks for a refresh of the apps whose
repository ``repo_matches`` the event and whose ``manifest-generate-paths`` the push
touches (``push_touches_app``).

Steps of ``parse_webhook``, in this order, so that nothing about a payload is looked at
before its sender is proven:

1. size: a body over ``max_bytes`` is refused (413) before any hashing (the server has
   already refused it while reading; this is the second line);
2. provider, from the headers: ``X-GitHub-Event`` → GitHub, ``X-Gitlab-Event`` → GitLab,
   ``X-Gitsail-Signature`` → generic; anything else is refused (400);
3. authentication against that provider's secret (401 when it is missing, wrong, or the
   provider has no secret configured: unlike Argo CD, gitsail never accepts unsigned
   payloads);
4. the event type: pings and non-push events are answered with ``None`` (nothing to do);
5. the JSON payload (400 when it is malformed).

Providers:

- **GitHub**: ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw body with
  ``webhook.github.secret``; the webhook's content type must be ``application/json``.
- **GitLab**: ``X-Gitlab-Token`` equal to ``webhook.gitlab.secret``; ``Push Hook`` and
  ``Tag Push Hook`` events.
- **generic** (gitsail's own, for any CI or forge): ``X-Gitsail-Signature: sha256=<hex>``,
  the HMAC-SHA256 of the raw body with ``webhook.generic.secret``, and the JSON body::

      {"repository": "https://git.example.com/org/repo.git",
       "ref": "refs/heads/main",
       "after": "<commit sha>",                 # optional
       "changedFiles": ["apps/web/deploy.yaml"]}  # optional

Secrets and signatures are compared in constant time (``hmac.compare_digest``) and never
appear in an error message or a repr.

``changed_files`` is ``None`` when the push does not say which files changed reliably (no
commit list, a truncated one, or an empty one, as for a tag push or a force push to an
older commit); the caller then refreshes every app of the repository, as Argo CD does.

**Replays.** A captured request can be sent again. ``delivery_keys`` names a delivery by
the provider's delivery id (``X-GitHub-Delivery``, ``X-Gitlab-Event-UUID``, …) and, for
providers that sign the body (GitHub, generic) and a push that names its commit, by the
digest of the signed body: the delivery id header is not signed, so a replay with a fresh
id still carries the same signed bytes. ``ReplayGuard`` remembers the last ``window`` keys
(oldest forgotten first) and refuses a delivery that shares one with an accepted one.

**Path filtering** follows Argo CD: only an app with the annotation
``argocd.argoproj.io/manifest-generate-paths`` is skipped when no changed file falls under
one of its paths (``;``-separated; relative to the app's ``source.path``, ``.`` being that
path; absolute from the repository root with a leading ``/``; Go ``filepath.Match`` globs).
Every other app of the repository and revision is refreshed. Added, modified and removed
files all count (a rename is a removal and an addition), so a new file in the app's
directory refreshes it. A value that cannot be read refreshes (a filter that cannot parse
its input does not skip).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import posixpath
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.source import normalize_repo_url

__all__ = [
    "GENERATE_PATHS_ANNOTATION",
    "PushEvent",
    "ReplayGuard",
    "WebhookError",
    "WebhookSecrets",
    "check_hmac",
    "delivery_id_keys",
    "delivery_keys",
    "manifest_paths",
    "parse_webhook",
    "push_touches_app",
    "repo_matches",
    "webhook_provider",
]

# Keys of the Argo CD Secret ``argocd-secret`` that hold the shared webhook secrets.
ARGOCD_KEYS = {
    "github": "webhook.github.secret",
    "gitlab": "webhook.gitlab.secret",
    "generic": "webhook.generic.secret",
}

GENERATE_PATHS_ANNOTATION = "argocd.argoproj.io/manifest-generate-paths"

DEFAULT_MAX_BYTES = DEFAULT_POLICY.webhook_body_bytes

# GitHub lists at most this many commits in a push payload (the Events API documents the
# cap); with more, the list of changed files cannot be trusted to be complete.
MAX_LISTED_COMMITS = 20

_ZERO_SHA = frozenset("0")

_PROVIDER_HEADERS = (
    ("x-github-event", "github"),
    ("x-gitlab-event", "gitlab"),
    ("x-gitsail-signature", "generic"),
)

# Headers that carry a provider's id of one delivery (GitHub, GitLab, Gitea, Gogs,
# Bitbucket Cloud, gitsail's generic); a redelivery of the same event keeps its id.
_DELIVERY_HEADERS = (
    "x-github-delivery",
    "x-gitlab-event-uuid",
    "x-gitea-delivery",
    "x-gogs-delivery",
    "x-request-uuid",
    "x-gitsail-delivery",
)
# Providers whose signature covers the body: the same signed bytes are the same delivery.
_SIGNED_BODY = frozenset({"github", "generic"})


@dataclass(frozen=True, repr=False)
class WebhookSecrets:
    """The shared secrets of each provider; an empty one means that provider is refused."""

    github: str = ""
    gitlab: str = ""
    generic: str = ""

    def __repr__(self) -> str:
        state = {
            "github": bool(self.github),
            "gitlab": bool(self.gitlab),
            "generic": bool(self.generic),
        }
        shown = ", ".join(f"{k}={'set' if v else 'unset'}" for k, v in state.items())
        return f"WebhookSecrets({shown})"

    @classmethod
    def from_argocd_secret(cls, secret: Obj | None) -> WebhookSecrets:
        """Read ``webhook.{github,gitlab,generic}.secret`` from the ``argocd-secret`` Secret
        (``data`` is base64, ``stringData`` plain and wins, as the apiserver would merge it).
        A missing Secret or key, or a value that is not valid base64/UTF-8, leaves that
        provider unconfigured (refused)."""
        if not secret:
            return cls()
        data = secret.get("data") or {}
        string_data = secret.get("stringData") or {}

        def value(key: str) -> str:
            plain = string_data.get(key)
            if isinstance(plain, str):
                return plain.strip()
            encoded = data.get(key)
            if not isinstance(encoded, str):
                return ""
            try:
                return base64.b64decode(encoded, validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError):
                return ""

        return cls(**{provider: value(key) for provider, key in ARGOCD_KEYS.items()})


@dataclass(frozen=True)
class PushEvent:
    """A verified push: which repository, which ref, and (when known) which files."""

    provider: str  # "github" | "gitlab" | "generic"
    repo_urls: tuple[str, ...]  # every URL the provider gave for the repository
    ref: str  # "refs/heads/main", "refs/tags/v1"
    revision: str  # "main", "v1": the ref's short name
    after: str  # the pushed commit sha, "" when unknown or when the ref was deleted
    changed_files: tuple[str, ...] | None  # None: unknown, refresh every app of the repo


class WebhookError(Exception):
    """A refused webhook request; ``status`` is the HTTP status to answer with.

    401: signature or token missing or wrong, or the provider has no secret configured;
    400: malformed request or payload, unknown provider; 408: body not received in time;
    409: a replayed delivery; 413: body too large; 503: busy or not ready (``retry_after``
    seconds, sent as ``Retry-After``).
    """

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)

    def __repr__(self) -> str:
        return f"WebhookError({self.status}, {self.message!r})"


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: WebhookSecrets,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PushEvent | None:
    """Verify and parse one webhook request.

    Returns the ``PushEvent``, or ``None`` for a verified request that asks for nothing
    (a ping, a non-push event); raises ``WebhookError`` when the request is refused.
    """
    if len(body) > max_bytes:
        raise WebhookError(
            413,
            f"webhook payload is {len(body)} bytes, over the limit of {max_bytes}; "
            "raise the limit or send smaller payloads",
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    provider = webhook_provider(lowered)
    if provider == "github":
        return _github(lowered, body, secrets.github)
    if provider == "gitlab":
        return _gitlab(lowered, body, secrets.gitlab)
    if provider == "generic":
        return _generic(lowered, body, secrets.generic)
    raise WebhookError(
        400,
        "unrecognized webhook: expected a GitHub (X-GitHub-Event), GitLab (X-Gitlab-Event) "
        "or generic (X-Gitsail-Signature) request",
    )


def webhook_provider(headers: Mapping[str, str]) -> str:
    """``github``, ``gitlab``, ``generic`` or ``unknown``, from the request's headers alone
    (before any verification: use it to label metrics and logs, never to trust a request)."""
    names = {k.lower() for k in headers}
    for header, provider in _PROVIDER_HEADERS:
        if header in names:
            return provider
    return "unknown"


def repo_matches(app_repo_url: str, event: PushEvent) -> bool:
    """Whether an app's ``repoURL`` names one of the event's repositories.

    Compares host and path after ``normalize_repo_url``, ignoring scheme, user, port, a
    trailing ``.git`` and case, so the HTTPS, scp-like and ``ssh://`` forms of one
    repository match. Case is ignored like Argo CD does: a false match only costs a refresh.
    """
    wanted = _host_path(app_repo_url)
    if not wanted[1]:
        return False
    return any(_host_path(url) == wanted for url in event.repo_urls)


# -- replays -------------------------------------------------------------------------------


def delivery_keys(
    provider: str, headers: Mapping[str, str], body: bytes, event: PushEvent
) -> tuple[str, ...]:
    """The names of one verified delivery that a replay of it would share.

    The provider's delivery id, when it sends one, and for a provider that signs the body
    and a push that names its commit, the digest of the body: a push of one commit to one
    ref is sent once, so the same signed bytes again are a replay whatever id they carry.
    Values are hashed, so a long header costs the memory of a digest.
    """
    keys = delivery_id_keys(provider, headers)
    if provider in _SIGNED_BODY and event.after:
        keys += (f"{provider}:body:{hashlib.sha256(body).hexdigest()}",)
    return keys


def delivery_id_keys(provider: str, headers: Mapping[str, str]) -> tuple[str, ...]:
    """The names of a delivery from the forge's delivery id headers alone (hashed)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    keys: list[str] = []
    for header in _DELIVERY_HEADERS:
        value = lowered.get(header, "").strip()
        if value:
            digest = hashlib.sha256(value.encode(errors="replace")).hexdigest()
            keys.append(f"{provider}:{header}:{digest}")
    return tuple(keys)


class ReplayGuard:
    """The deliveries accepted recently: at most ``window`` keys, the oldest forgotten first.

    ``claim`` takes a delivery's keys before it is acted on (so two copies sent at once
    cannot both pass) and says whether none was seen; ``release`` forgets them again when
    acting failed, so the sender's retry is not taken for a replay. A window of 0 remembers
    nothing. Single-threaded: call it from the event loop only.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, keys: Iterable[str]) -> bool:
        keys = tuple(keys)
        if self.window <= 0:
            return True
        if any(key in self._seen for key in keys):
            return False
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > self.window:
            self._seen.popitem(last=False)
        return True

    def release(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._seen.pop(key, None)


# -- path filtering -----------------------------------------------------------------------


def manifest_paths(annotation: str, source_path: str) -> tuple[str, ...] | None:
    """The repository paths (or globs) an app's ``manifest-generate-paths`` value names.

    Items are ``;``-separated; a relative item is joined to ``source_path`` (``.`` is the
    app's own path), one with a leading ``/`` is from the repository root. Paths come back
    normalized without a leading ``/`` (``.`` is the whole repository). ``None`` when the
    value names nothing usable (empty, or every item leaves the repository): then the app
    is not filtered.
    """
    base = posixpath.normpath(source_path.strip().strip("/") or ".")
    paths: list[str] = []
    for raw in annotation.split(";"):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("/"):
            joined = posixpath.normpath(item.lstrip("/") or ".")
        else:
            joined = posixpath.normpath(posixpath.join(base, item))
        if joined == ".." or joined.startswith("../"):
            continue  # outside the repository: matches no file
        if joined not in paths:
            paths.append(joined)
    return tuple(paths) or None


def push_touches_app(app: Obj, changed_files: tuple[str, ...] | None) -> bool:
    """Whether a push with these changed files asks for a refresh of ``app``.

    Always, unless the push lists its files and the app has a usable
    ``manifest-generate-paths`` annotation; then when a changed file (added, modified or
    removed) is one of its paths, lies under one, or matches one that is a glob.
    """
    if changed_files is None:
        return True
    annotations = (app.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(GENERATE_PATHS_ANNOTATION)
    if not isinstance(raw, str):
        return True
    source = (app.get("spec") or {}).get("source") or {}
    source_path = source.get("path") if isinstance(source, dict) else None
    paths = manifest_paths(raw, source_path if isinstance(source_path, str) else "")
    if paths is None:
        return True
    files = [posixpath.normpath(f.lstrip("/")) for f in changed_files]
    for path in paths:
        if path == ".":
            return True
        if _is_glob(path):
            pattern = _glob(path)
            if pattern is None:
                return True  # a pattern that cannot be read does not filter
            if any(pattern.fullmatch(f) for f in files):
                return True
        elif any(f == path or f.startswith(path + "/") for f in files):
            return True
    return False


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[\\")


def _glob(pattern: str) -> re.Pattern[str] | None:
    """Go's ``path.Match`` syntax as a regex: ``*`` and ``?`` never cross ``/``; ``[...]``
    classes and ranges (``^`` negates), ``\\`` escapes. ``None`` for a pattern it cannot
    read (malformed, or an escape inside a class)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i == len(pattern):
                return None
            out.append(re.escape(pattern[i]))
        elif c == "[":
            start = i + 1
            negate = pattern[start : start + 1] == "^"
            start += negate
            end = pattern.find("]", start)
            body = pattern[start:end]
            if end < 0 or not body or "\\" in body:
                return None  # escapes inside a class are not read: refresh instead
            body = body.replace("[", "\\[").replace("^", "\\^")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return None


# -- providers ----------------------------------------------------------------------------


def _github(headers: dict[str, str], body: bytes, secret: str) -> PushEvent | None:
    _require_secret("GitHub", secret, ARGOCD_KEYS["github"])
    check_hmac("GitHub", "X-Hub-Signature-256", headers.get("x-hub-signature-256"), body, secret)
    event = headers.get("x-github-event", "").strip().lower()
    if event != "push":
        return None  # "ping" when the hook is created; other events trigger nothing
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise WebhookError(
            400,
            f"GitHub webhook has content type {content_type or 'none'!r}; "
            "set the webhook's content type to application/json",
        )
    payload = _json_object("GitHub", body)
    repository = _object(payload, "repository", "GitHub")
    urls = _urls(repository, ("html_url", "clone_url", "ssh_url", "git_url"))
    if not urls:
        raise WebhookError(400, "GitHub push payload names no repository URL")
    commits = payload.get("commits")
    changed: tuple[str, ...] | None = None
    if isinstance(commits, list):
        size = payload.get("size")
        truncated = len(commits) > MAX_LISTED_COMMITS or (
            isinstance(size, int) and size > len(commits)
        )
        if not truncated:
            changed = _changed_files("GitHub", commits)
    ref = _ref(payload.get("ref"), "GitHub")
    return PushEvent(
        provider="github",
        repo_urls=urls,
        ref=ref,
        revision=_short_ref(ref),
        after=_sha(payload.get("after")),
        changed_files=changed,
    )


def _gitlab(headers: dict[str, str], body: bytes, secret: str) -> PushEvent | None:
    _require_secret("GitLab", secret, ARGOCD_KEYS["gitlab"])
    token = headers.get("x-gitlab-token")
    if not token or not hmac.compare_digest(token.encode(), secret.encode()):
        raise WebhookError(401, "GitLab webhook token is missing or wrong")
    event = headers.get("x-gitlab-event", "").strip()
    if event not in ("Push Hook", "Tag Push Hook"):
        return None
    payload = _json_object("GitLab", body)
    urls = _urls(
        payload.get("project") or {}, ("web_url", "git_http_url", "git_ssh_url", "http_url")
    )
    urls += tuple(
        u
        for u in _urls(payload.get("repository") or {}, ("homepage", "git_http_url", "git_ssh_url"))
        if u not in urls
    )
    if not urls:
        raise WebhookError(400, "GitLab push payload names no repository URL")
    commits = payload.get("commits")
    changed: tuple[str, ...] | None = None
    if isinstance(commits, list):
        total = payload.get("total_commits_count")
        truncated = isinstance(total, int) and total > len(commits)
        if not truncated:
            changed = _changed_files("GitLab", commits)
    ref = _ref(payload.get("ref"), "GitLab")
    # For a tag push ``after`` is the tag object; ``checkout_sha`` is the commit.
    after = _sha(payload.get("checkout_sha")) or _sha(payload.get("after"))
    return PushEvent(
        provider="gitlab",
        repo_urls=urls,
        ref=ref,
        revision=_short_ref(ref),
        after=after,
        changed_files=changed,
    )


def _generic(headers: dict[str, str], body: bytes, secret: str) -> PushEvent:
    _require_secret("generic", secret, ARGOCD_KEYS["generic"])
    check_hmac("generic", "X-Gitsail-Signature", headers.get("x-gitsail-signature"), body, secret)
    payload = _json_object("generic", body)
    repository = payload.get("repository")
    if not isinstance(repository, str) or not repository.strip():
        raise WebhookError(400, "generic webhook payload needs 'repository': the clone URL")
    ref = _ref(payload.get("ref"), "generic")
    after = payload.get("after", "")
    if not isinstance(after, str):
        raise WebhookError(400, "generic webhook payload: 'after' must be a commit sha string")
    files = payload.get("changedFiles")
    changed: tuple[str, ...] | None = None
    if files is not None:
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise WebhookError(
                400, "generic webhook payload: 'changedFiles' must be a list of paths"
            )
        changed = tuple(sorted({f.lstrip("/") for f in files if f})) or None
    return PushEvent(
        provider="generic",
        repo_urls=(repository.strip(),),
        ref=ref,
        revision=_short_ref(ref),
        after=_sha(after),
        changed_files=changed,
    )


# -- helpers ------------------------------------------------------------------------------


def _require_secret(provider: str, secret: str, key: str) -> None:
    if not secret:
        raise WebhookError(
            401,
            f"{provider} webhooks are refused: no secret is configured; "
            f"set {key} in the argocd-secret Secret",
        )


def check_hmac(
    provider: str,
    header: str,
    value: str | None,
    body: bytes,
    secret: str,
    algorithms: tuple[str, ...] = ("sha256",),
) -> None:
    """Constant-time check of ``<algorithm>=<hex>`` (401 when it does not match); the
    message never quotes the value. ``algorithms`` are the hashlib names accepted."""
    if not value:
        raise WebhookError(401, f"{provider} webhook has no {header} header")
    algorithm, _, given = value.strip().partition("=")
    algorithm = algorithm.lower()
    if algorithm not in algorithms or not given:
        forms = " or ".join(f"{a}=<hex>" for a in algorithms)
        raise WebhookError(401, f"{provider} webhook {header} is not of the form {forms}")
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise WebhookError(401, f"{provider} webhook signature ({header}) does not match")


def _json_object(provider: str, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookError(400, f"{provider} webhook body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, f"{provider} webhook body is not a JSON object")
    return payload


def _object(payload: dict[str, Any], key: str, provider: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise WebhookError(400, f"{provider} push payload has no {key!r} object")
    return value


def _urls(obj: Any, keys: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(obj, dict):
        return ()
    found: list[str] = []
    for key in keys:
        url = obj.get(key)
        if isinstance(url, str) and url.strip() and url.strip() not in found:
            found.append(url.strip())
    return tuple(found)


def _ref(value: Any, provider: str) -> str:
    if not isinstance(value, str) or not value.startswith("refs/"):
        raise WebhookError(
            400, f"{provider} push payload needs 'ref' as a full ref such as refs/heads/main"
        )
    return value


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def _sha(value: Any) -> str:
    """The commit sha, or "" when absent or all zeros (a deleted ref)."""
    if not isinstance(value, str) or set(value) <= _ZERO_SHA:
        return ""
    return value


def _changed_files(provider: str, commits: list[Any]) -> tuple[str, ...] | None:
    files: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict):
            raise WebhookError(400, f"{provider} push payload has a malformed commit entry")
        for key in ("added", "modified", "removed"):
            paths = commit.get(key) or []
            if not isinstance(paths, list):
                raise WebhookError(400, f"{provider} push payload: commits[].{key} is not a list")
            files.update(p for p in paths if isinstance(p, str) and p)
    # An empty list says nothing (tag push, force push to an older commit): unknown.
    return tuple(sorted(files)) or None


def _host_path(url: str) -> tuple[str, str]:
    normalized = normalize_repo_url(url)
    parts = urlsplit(normalized if "://" in normalized else f"ssh://{normalized}")
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/").lower()
    return host, path
