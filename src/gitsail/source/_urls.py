"""Repository URLs: validation, normalization (for matching and cache keys) and redaction.

Three URL shapes reach us: ``scheme://[user[:password]@]host[:port]/path``, the scp-like
``user@host:path`` that git treats as SSH, and local paths. Normalization lowercases the
scheme and host, drops default ports, passwords, HTTP usernames, and a trailing ``/`` or
``.git``, so ``https://GitHub.com/org/repo.git/`` and ``https://github.com/org/repo`` are the
same repository. Redaction removes whatever could be a secret before a URL is logged, put
in an error or handed on in an Artifact.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gitsail.source.errors import InvalidSource

__all__ = [
    "RepoURL",
    "check_argument",
    "normalize_repo_url",
    "parse_repo_url",
    "redact_text",
    "redact_url",
    "repo_key",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[^\]]+\]):(?P<path>.*)$")
_SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}
_GIT_SCHEMES = {"http", "https", "file", *_SSH_SCHEMES}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git+ssh": 22, "ssh+git": 22}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RepoURL:
    """A parsed repository URL. ``scheme`` is ``ssh`` for scp-like URLs, ``file`` for paths."""

    scheme: str
    username: str
    password: str
    host: str  # lowercased; "" for file URLs
    port: int | None
    path: str
    scp_like: bool = False

    @property
    def is_ssh(self) -> bool:
        return self.scheme in _SSH_SCHEMES

    @property
    def is_http(self) -> bool:
        return self.scheme in ("http", "https")

    def origin(self) -> str:
        """``scheme://host[:port]`` (no userinfo, no path)."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{_host_for_url(self.host)}{port}"

    def without_password(self, *, keep_username: bool) -> str:
        """The URL as git should see it: never a password, the username only when asked."""
        if self.scheme == "file":
            return f"file://{self.path}"
        user = f"{self.username}@" if keep_username and self.username else ""
        if self.scp_like:
            return f"{user}{self.host}:{self.path}"
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{user}{_host_for_url(self.host)}{port}{self.path}"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_argument(value: str, what: str, *, url: str = "") -> None:
    """Refuse values git could read as an option, and control characters."""
    if value.startswith("-"):
        raise InvalidSource(
            f"{what} {value!r} starts with '-', which git would read as an option; "
            "refusing it (fix the spec)",
            url=url,
        )
    if _CONTROL.search(value):
        raise InvalidSource(f"{what} contains control characters; fix the spec", url=url)


def parse_repo_url(url: str) -> RepoURL:
    """Parse and validate a git repository URL (raises InvalidSource for unsafe ones)."""
    raw = url.strip()
    if not raw:
        raise InvalidSource("the repository URL is empty; set repoURL")
    check_argument(raw, "repository URL", url=_scrub(raw))
    match = _SCHEME.match(raw)
    if match:
        scheme = match.group(1).lower()
        if scheme not in _GIT_SCHEMES:
            raise InvalidSource(
                f"repository URL {_scrub(raw)} uses the unsupported scheme {scheme!r}; "
                "use https://, http://, ssh:// or file://",
                url=_scrub(raw),
            )
        parts = urlsplit(raw)
        if scheme == "file":
            return RepoURL("file", "", "", "", None, unquote(parts.path))
        try:
            port = parts.port
        except ValueError as exc:
            raise InvalidSource(f"repository URL {_scrub(raw)} has an invalid port") from exc
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidSource(f"repository URL {_scrub(raw)} has no host", url=_scrub(raw))
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
        return RepoURL(
            scheme=scheme,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            host=host,
            port=port,
            path=parts.path,
        )
    if "::" in raw.split("/", 1)[0]:
        # git's "<transport>::<address>" remote-helper syntax (ext::, fd::, ...).
        raise InvalidSource(
            f"repository URL {_scrub(raw)} names a git remote helper; "
            "use https://, http://, ssh:// or file://",
            url=_scrub(raw),
        )
    if raw.startswith("/"):
        return RepoURL("file", "", "", "", None, raw)
    scp = _SCP.match(raw)
    if scp:
        return RepoURL(
            scheme="ssh",
            username=scp.group("user") or "",
            password="",
            host=scp.group("host").strip("[]").lower(),
            port=None,
            path=scp.group("path"),
            scp_like=True,
        )
    raise InvalidSource(
        f"{_scrub(raw)!r} is not a repository URL; use https://, http://, ssh:// or file://"
    )


def normalize_repo_url(url: str) -> str:
    """The canonical form used to match credentials and to key the clone cache."""
    try:
        parsed = parse_repo_url(url)
    except InvalidSource:
        return url.strip().rstrip("/").removesuffix(".git").rstrip("/")
    path = parsed.path.rstrip("/").removesuffix(".git").rstrip("/")
    if parsed.scheme == "file":
        return f"file://{path}"
    scheme = "ssh" if parsed.is_ssh else parsed.scheme
    user = f"{parsed.username}@" if parsed.is_ssh and parsed.username else ""
    port = f":{parsed.port}" if parsed.port is not None else ""
    if parsed.scp_like and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{user}{_host_for_url(parsed.host)}{port}{path}"


def repo_key(url: str) -> str:
    """Cache key of a repository: sha256 of its normalized URL."""
    return hashlib.sha256(normalize_repo_url(url).encode()).hexdigest()


def redact_url(url: str) -> str:
    """The URL without secrets: no password ever, no username for HTTP(S).

    SSH usernames stay (``git@host`` is an address, not a secret).
    """
    try:
        parsed = parse_repo_url(url)
    except InvalidSource:
        return _scrub(url)
    return parsed.without_password(keep_username=parsed.is_ssh)


_USERINFO_HTTP = re.compile(r"(?i)\b(https?://)[^/\s@]+@")
_USERINFO_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")


def _scrub(text: str) -> str:
    text = _USERINFO_HTTP.sub(r"\1", text)
    return _USERINFO_PASSWORD.sub(r"\1@", text)


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove userinfo from every URL in ``text`` and any of ``secrets`` verbatim."""
    text = _scrub(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "<redacted>")
    return text
