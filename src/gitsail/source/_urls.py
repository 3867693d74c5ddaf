"""Repository URLs: validation, normalization (for matching and cache keys) and redaction.

Three URL shapes reach us: ``scheme://[user[:password]@]host[:port]/path``, the scp-like
``user@host:path`` that git treats as SSH, and local paths. Normalization lowercases the
scheme and host, drops default ports, passwords, HTTP usernames, and a trailing ``/`` or
``.git``, so ``https://GitHub.com/org/repo.git/`` and ``https://github.com/org/repo`` are the
same repository. Redaction removes whatever could be a secret before a URL is logged, put
in an error or handed on in an Artifact.

The operator's URL policy (``Policy``) is enforced here, before any process or socket:

- ``file://`` URLs and bare paths reach every repository on the controller's disk (the
  shared mirrors included), so they are refused unless ``Policy.allow_file_urls``;
- a host is resolved as the resolver reads it (so ``2852039166``, ``0251.0376.0251.0376``
  and ``[::ffff:169.254.169.254]`` are all 169.254.169.254) and refused when any of its
  addresses, or an IPv4 address embedded in an IPv6 one (mapped, compatible, NAT64), is in
  ``Policy.denied_networks``;
- redirects to another host are not followed: git gets ``http.followRedirects=false``,
  httpx clients get ``http_guard`` hooks that check every request and every redirect.

The check runs just before the connection; a name that resolves differently a moment later
(DNS rebinding) is not caught, which is why the defaults deny by network, not by name.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from gitsail.policy import Policy
from gitsail.source.errors import FetchError, InvalidSource, SourceError

__all__ = [
    "RepoURL",
    "check_argument",
    "check_destination",
    "check_host",
    "http_guard",
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


@functools.lru_cache(maxsize=4096)  # every poll of every app parses its URL: once is enough
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


@functools.lru_cache(maxsize=4096)
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


@functools.lru_cache(maxsize=4096)  # every status write and poll names its app's repository
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


# --- the operator's URL policy -------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@functools.lru_cache(maxsize=8)
def _networks(denied: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for text in denied:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            # An unreadable deny-list entry refuses every connection rather than none.
            raise SourceError(
                f"the operator setting GITSAIL_DENIED_NETWORKS has the invalid entry {text!r}; "
                "gitsail contacts no repository until it is fixed"
            ) from None
    return tuple(networks)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """``address`` and the IPv4 address an IPv6 one carries (mapped, compatible, NAT64)."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        elif (int(address) >> 32 == 0 and int(address) > 1) or address in _NAT64:
            # ::a.b.c.d (IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64) reach a.b.c.d
            found.append(low32)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
    return found


def denied_network(address: IPAddress, denied: tuple[str, ...]) -> IPNetwork | None:
    """The first denied network ``address`` (or an IPv4 address inside it) falls in."""
    networks = _networks(denied)
    for candidate in _embedded(address):
        for network in networks:
            if candidate.version == network.version and candidate in network:
                return network
    return None


Resolver = Callable[[str], Awaitable[list[str]]]


async def _getaddrinfo(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_host(
    host: str,
    policy: Policy,
    *,
    what: str,
    resolve_timeout: float = 10.0,
    resolve: Resolver = _getaddrinfo,
) -> None:
    """Refuse ``host`` if any address it resolves to is in ``policy.denied_networks``.

    ``what`` names the URL (redacted) in messages. A host that cannot be resolved is a
    FetchError: the connection would fail the same way, and nothing unchecked is contacted.
    """
    if not policy.denied_networks:
        return
    name = host.strip("[]").rstrip(".") or host
    try:
        addresses = await asyncio.wait_for(resolve(name), resolve_timeout)
    except (OSError, TimeoutError) as exc:
        raise FetchError(
            f"cannot resolve the host {name!r} of {what} ({type(exc).__name__}: {exc}); "
            "check the URL, the next reconcile retries",
            url=what,
        ) from None
    if not addresses:
        raise FetchError(f"the host {name!r} of {what} has no address", url=what)
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise FetchError(
                f"the host {name!r} of {what} resolved to {text!r}, which is not an IP "
                "address; refusing to connect",
                url=what,
            ) from None
        network = denied_network(address, policy.denied_networks)
        if network is not None:
            raise InvalidSource(
                f"{what}: the host {name!r} resolves to {address}, in the denied network "
                f"{network} (operator setting GITSAIL_DENIED_NETWORKS); gitsail does not "
                "contact it. Use a repository on a permitted host",
                url=what,
            )


def check_file_url(repo: RepoURL, policy: Policy, *, what: str) -> None:
    """Refuse ``file://`` URLs and bare paths unless the operator allows them."""
    if repo.scheme == "file" and not policy.allow_file_urls:
        raise InvalidSource(
            f"{what}: file:// URLs and local paths are refused: they reach every repository "
            "on the controller's disk, including other apps' cached mirrors. Use an "
            "https:// or ssh:// URL (an operator can allow local repositories with "
            "GITSAIL_ALLOW_FILE_URLS=true on a trusted, single-tenant installation)",
            url=what,
        )


async def check_destination(
    repo: RepoURL,
    policy: Policy,
    *,
    what: str,
    resolve_timeout: float = 10.0,
    resolve: Resolver = _getaddrinfo,
) -> None:
    """The whole URL policy for a repository: file URLs, then the host's addresses."""
    check_file_url(repo, policy, what=what)
    if repo.scheme != "file":
        await check_host(
            repo.host, policy, what=what, resolve_timeout=resolve_timeout, resolve=resolve
        )


def _same_host(origin: httpx.URL, target: httpx.URL) -> bool:
    if (origin.host or "").lower() != (target.host or "").lower():
        return False
    # Same host: an upgrade to https is fine, a downgrade to http is not.
    return origin.scheme == target.scheme or (origin.scheme, target.scheme) == ("http", "https")


def http_guard(
    policy: Policy, *, resolve_timeout: float = 10.0, resolve: Resolver = _getaddrinfo
) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """httpx ``event_hooks`` enforcing the URL policy on every request and redirect.

    httpx calls the request hook for the first request and for each redirect it follows,
    and the response hook before following one: the host of every request is checked
    against the deny-list, and a redirect to another host is refused.
    """

    async def on_request(request: httpx.Request) -> None:
        what = redact_url(str(request.url))
        await check_host(
            request.url.host, policy, what=what, resolve_timeout=resolve_timeout, resolve=resolve
        )

    async def on_response(response: httpx.Response) -> None:
        if not response.has_redirect_location:
            return
        origin = response.request.url
        try:
            target = origin.join(response.headers["location"])
        except (httpx.InvalidURL, KeyError):
            target = httpx.URL("invalid://")
        if not _same_host(origin, target):
            await response.aclose()
            raise InvalidSource(
                f"{redact_url(str(origin))} redirected to {redact_url(str(target))}; gitsail "
                "follows redirects only within the same host. Use the final URL",
                url=redact_url(str(origin)),
            )

    return {"request": [on_request], "response": [on_response]}
