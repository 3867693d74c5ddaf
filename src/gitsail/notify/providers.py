"""The HTTP request each Flux provider type sends for one event.

- ``generic``: POST the event JSON to the address, with ``Gotk-Component``;
- ``generic-hmac``: the same, signed: ``X-Signature: sha256=<hex HMAC-SHA256 of the body>``
  keyed with the Secret's ``token`` (required);
- ``slack``: a message with one attachment (color by severity, the object as author, the
  metadata as fields), ``channel`` and ``username`` when set, ``Authorization: Bearer
  <token>`` when the Secret has a token (``chat.postMessage``);
- ``msteams``: an Adaptive Card message (the metadata as facts);
- ``github``: a commit status, ``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` with
  ``state`` success/failure, ``context`` ``<kind>/<name>/<provider-uid[:8]>`` and the
  message as ``description`` (140 characters), where ``{api}`` is ``https://api.github.com``
  for github.com and ``<scheme>://<host>/api/v3`` for any other host (GitHub Enterprise);
- ``gitlab``: ``POST <scheme>://<host>/api/v4/projects/{url-encoded path}/statuses/{sha}``
  with ``state`` success/failed, ``name`` and ``description``, ``PRIVATE-TOKEN: <token>``.

The Secret (``secretRef``) may hold ``address`` (overrides ``spec.address``), ``token``,
``username`` and ``headers`` (a YAML map of header names to values); a ``proxy`` key is refused.
Tokens go only into headers, never into a body or a log line. Addresses must be ``http`` or
``https`` with a host, without whitespace; ``safe_address`` is what logs show (scheme, host
and port: userinfo, path and query often carry a token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from gitsail.notify.flux import COMMIT_STATUS_TYPES, FluxEvent, ProviderSpec

__all__ = [
    "DeliveryError",
    "ProviderCredentials",
    "Request",
    "build_request",
    "commit_sha",
    "credentials_from_secret",
    "safe_address",
    "validate_address",
]

MAX_HEADERS = 32
MAX_HEADER_VALUE = 4096
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class DeliveryError(ValueError):
    """A notification that cannot be built as configured (never contains a secret)."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:  # headers may carry tokens: never printed
        return f"Request({self.method} {safe_address(self.url)})"


@dataclass(frozen=True)
class ProviderCredentials:
    """What a Provider's Secret holds (repr hides the values)."""

    address: str = ""
    token: str = ""
    username: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return "ProviderCredentials(<redacted>)"


def validate_address(url: str) -> urllib.parse.SplitResult:
    """An http(s) URL with a host; refused with a message that shows no userinfo."""
    if not url:
        raise DeliveryError("no address (spec.address or the Secret's address)")
    if len(url) > 2048 or any(c.isspace() or ord(c) < 32 for c in url):
        raise DeliveryError("the address has whitespace or control characters, or is too long")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"the address {safe_address(url)!r} is not an http(s) URL with a host")
    return parts


def safe_address(url: str) -> str:
    """``scheme://host[:port]`` only: userinfo, path and query may all carry a token (Slack
    and Teams put it in the path)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable address>"
    return f"{parts.scheme}://{host}{port}"


def _headers_from(text: str) -> tuple[tuple[str, str], ...]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise DeliveryError("the Secret's headers are not a YAML map") from None
    if data is None:
        return ()
    if not isinstance(data, dict) or len(data) > MAX_HEADERS:
        raise DeliveryError(f"the Secret's headers must be a map of at most {MAX_HEADERS} headers")
    out = []
    for name, value in data.items():
        name, value = str(name), str(value)
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise DeliveryError(f"the Secret's headers: {name[:40]!r} is not a header name allowed")
        if len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\0"):
            raise DeliveryError(f"the Secret's headers: the value of {name} is not allowed")
        out.append((name, value))
    return tuple(out)


def credentials_from_secret(data: Mapping[str, str]) -> ProviderCredentials:
    """The decoded ``data`` of a Provider's Secret."""
    if data.get("proxy"):
        raise DeliveryError("the Secret's proxy is not supported by gitsail: refused")
    token = data.get("token", "").strip()
    if any(c in token for c in "\r\n\0"):
        raise DeliveryError("the Secret's token has a line break")
    return ProviderCredentials(
        address=data.get("address", "").strip(),
        token=token,
        username=data.get("username", "").strip(),
        headers=_headers_from(data["headers"]) if data.get("headers") else (),
    )


def commit_sha(revision: str) -> str:
    """The commit of a Flux revision (``main@sha1:<sha>``, ``main/<sha>``, ``<sha>``)."""
    tail = re.split(r"[:/@]", revision)[-1] if revision else ""
    if not _SHA.match(tail):
        raise DeliveryError(f"no commit in the event's revision {revision[:80]!r}")
    return tail


def _repo_path(parts: urllib.parse.SplitResult, *, max_segments: int) -> list[str]:
    path = parts.path.strip("/").removesuffix(".git")
    segments = path.split("/") if path else []
    if not 2 <= len(segments) <= max_segments or not all(
        _SEGMENT.match(s) and s not in (".", "..") for s in segments
    ):
        raise DeliveryError(
            f"the address {safe_address(parts.geturl())!r} does not name a repository"
        )
    return segments


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def _title(event: FluxEvent) -> str:
    return f"{event.get('kind')}/{event.get('name')}.{event.get('namespace')}"


def build_request(provider: ProviderSpec, creds: ProviderCredentials, event: FluxEvent) -> Request:
    """The request ``provider`` sends for ``event`` (``DeliveryError`` when it cannot)."""
    address = creds.address or provider.address
    parts = validate_address(address)
    headers: list[tuple[str, str]] = [("Content-Type", "application/json"), *creds.headers]
    ptype = provider.type
    if ptype in ("generic", "generic-hmac"):
        body = _json(event.payload())
        headers.append(("Gotk-Component", event.reporting_controller))
        if ptype == "generic-hmac":
            if not creds.token:
                raise DeliveryError("generic-hmac needs a token in the Provider's Secret")
            digest = hmac.new(creds.token.encode(), body, hashlib.sha256).hexdigest()
            headers.append(("X-Signature", f"sha256={digest}"))
        return Request("POST", address, tuple(headers), body)
    if ptype == "slack":
        payload: dict[str, object] = {
            "username": creds.username or provider.username or event.reporting_controller,
            "attachments": [
                {
                    "color": "danger" if event.severity == "error" else "good",
                    "author_name": _title(event),
                    "text": event.message,
                    "mrkdwn_in": ["text"],
                    "fields": [{"title": k, "value": v, "short": False} for k, v in event.metadata],
                }
            ],
        }
        if provider.channel:
            payload["channel"] = provider.channel
        if creds.token:
            headers.append(("Authorization", f"Bearer {creds.token}"))
        return Request("POST", address, tuple(headers), _json(payload))
    if ptype == "msteams":
        facts = [{"title": k, "value": v} for k, v in event.metadata]
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": _title(event), "weight": "bolder", "wrap": True},
                {
                    "type": "TextBlock",
                    "text": event.message,
                    "wrap": True,
                    "color": "attention" if event.severity == "error" else "good",
                },
                {"type": "FactSet", "facts": facts},
            ],
        }
        payload = {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
        return Request("POST", address, tuple(headers), _json(payload))
    if ptype in COMMIT_STATUS_TYPES:
        return _commit_status(provider, creds, event, parts, headers)
    raise DeliveryError(f"provider type {ptype!r} is not sent by gitsail")


def _commit_status(
    provider: ProviderSpec,
    creds: ProviderCredentials,
    event: FluxEvent,
    parts: urllib.parse.SplitResult,
    headers: list[tuple[str, str]],
) -> Request:
    if not creds.token:
        raise DeliveryError(f"{provider.type} commit status needs a token in the Provider's Secret")
    sha = commit_sha(event.revision)
    context = f"{event.get('kind').lower()}/{event.get('name')}/{provider.uid[:8]}"
    description = (event.message or event.reason)[:140]
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    if provider.type == "github":
        owner, repo = _repo_path(parts, max_segments=2)
        base = (
            "https://api.github.com"
            if host == "github.com"
            else f"{parts.scheme}://{host}{port}/api/v3"
        )
        url = f"{base}/repos/{owner}/{repo}/statuses/{sha}"
        body = {
            "state": "success" if event.severity == "info" else "failure",
            "context": context,
            "description": description,
        }
        headers += [
            ("Accept", "application/vnd.github+json"),
            ("Authorization", f"Bearer {creds.token}"),
        ]
        return Request("POST", url, tuple(headers), _json(body))
    segments = _repo_path(parts, max_segments=20)
    project = urllib.parse.quote("/".join(segments), safe="")
    url = f"{parts.scheme}://{host}{port}/api/v4/projects/{project}/statuses/{sha}"
    body = {
        "state": "success" if event.severity == "info" else "failed",
        "name": context,
        "description": description,
    }
    headers.append(("PRIVATE-TOKEN", creds.token))
    return Request("POST", url, tuple(headers), _json(body))
