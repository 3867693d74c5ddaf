"""The provider seam of External Secrets: what a store's client can do, and its errors.

A ``Provider`` is one store's authenticated client (Vault/OpenBao, AWS, Kubernetes, fake).
It answers in bytes and versions and never interprets properties, templates or keys; that is
``values`` and the reconciler. Every method may raise ``ProviderError`` (the store is down,
refuses, or is misconfigured: ``reason`` is the condition reason users read) or its subclass
``RemoteNotFound``. Messages name stores, keys and paths, never a value or a credential.

``Credentials`` is what a provider needs from the cluster: a key of a Secret, and a
ServiceAccount token through the TokenRequest API (with audiences).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

__all__ = [
    "Credentials",
    "Find",
    "Provider",
    "ProviderError",
    "Remote",
    "RemoteNotFound",
    "safe_path",
]


class ProviderError(Exception):
    """A store that could not answer; ``reason`` is a CamelCase word, the message is safe."""

    def __init__(self, message: str, *, reason: str = "ProviderError") -> None:
        super().__init__(message)
        self.reason = reason


class RemoteNotFound(ProviderError):
    """The key (or the version asked for) does not exist in the store."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="NotFound")


@dataclass(frozen=True)
class Remote:
    """One value read from a store: its bytes and the store's version of it ("" unknown)."""

    value: bytes
    version: str = ""


@dataclass(frozen=True)
class Find:
    """``dataFrom.find``: keys under ``path`` whose name matches ``name`` (a Go regexp) and
    whose tags include every ``tags`` pair."""

    path: str = ""
    name: str = ""
    tags: tuple[tuple[str, str], ...] = ()


class Provider(Protocol):
    """One store's client; see the module docstring."""

    kind: str  # "vault", "aws", "kubernetes", "fake": the metric's provider label

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        """The value of ``key`` (at ``version``; "" the current one). ``metadata``: the
        key's metadata instead (Vault KV v2 ``custom_metadata``; ``metadataPolicy: Fetch``)."""
        ...

    async def current_version(self, key: str) -> str | None:
        """The current version of ``key`` by the store's cheap call (Vault KV v2 metadata,
        AWS DescribeSecret), or ``None`` when the store has none: read the value then."""
        ...

    async def find(self, find: Find) -> dict[str, bytes]:
        """Every matching key and its value."""
        ...

    async def close(self) -> None: ...


class Credentials(Protocol):
    """Cluster-side inputs of a provider's authentication."""

    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret; ``ProviderError`` when the Secret or the key is missing."""
        ...

    async def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], seconds: int = 600
    ) -> str:
        """A bound token of the ServiceAccount (TokenRequest API)."""
        ...

    async def service_account_annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        """The ServiceAccount's annotations (``eks.amazonaws.com/role-arn``)."""
        ...


_SEGMENT = re.compile(r"[A-Za-z0-9._~@:=+,\-]+")
MAX_KEY = 512


def safe_path(key: str, *, what: str = "key") -> str:
    """A tenant's key or path as URL path segments: refused when empty, over ``MAX_KEY``,
    with ``..``/``.``/empty segments or characters outside a conservative set; each segment
    percent-encoded (defence in depth)."""
    text = key.strip("/")
    if not text or len(text) > MAX_KEY:
        raise ProviderError(f"{what} {key[:80]!r} is empty or too long", reason="InvalidKey")
    segments = text.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or not _SEGMENT.fullmatch(segment):
            raise ProviderError(
                f"{what} {key[:80]!r} is not a plain path (letters, digits, ._~@:=+,- and /)",
                reason="InvalidKey",
            )
    return "/".join(quote(s, safe="@:=+,~") for s in segments)
