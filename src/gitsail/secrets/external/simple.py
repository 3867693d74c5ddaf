"""The ``kubernetes`` and ``fake`` providers.

``kubernetes`` reads Secrets of ``remoteNamespace`` on the controller's cluster as the
store's ``auth.serviceAccount`` (impersonated, so that ServiceAccount's RBAC decides what a
tenant may read). ``key`` is a Secret's name; without a property the whole Secret comes
back as a JSON object of its decoded values, with one the value of that data key. Another
cluster (``server.url``) is refused with a clear condition rather than half-supported.

``fake`` answers from the store's own ``data`` list (``{key, value, version}``), for users'
tests and examples, as ESO's fake provider does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from gitsail.secrets.external.provider import Find, ProviderError, Remote, RemoteNotFound
from gitsail.secrets.external.values import go_regexp

__all__ = ["FakeProvider", "KubernetesProvider", "SecretReader"]

# (namespace, name) -> the Secret's data (base64 values) or None when absent
SecretReader = Callable[[str, str], Awaitable["Mapping[str, str] | None"]]
SecretLister = Callable[[str], Awaitable["list[tuple[str, Mapping[str, str], Mapping[str, str]]]"]]


def _decoded(data: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in data.items():
        raw = base64.b64decode(v)
        out[k] = raw.decode(errors="replace")
    return out


@dataclass
class KubernetesProvider:
    remote_namespace: str
    read_secret: SecretReader
    list_secrets: SecretLister
    kind: str = "kubernetes"

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        data = await self.read_secret(self.remote_namespace, key)
        if data is None:
            raise RemoteNotFound(f"Secret {self.remote_namespace}/{key} not found")
        return Remote(json.dumps(_decoded(data), sort_keys=True).encode(), "")

    async def current_version(self, key: str) -> str | None:
        return None

    async def find(self, find: Find) -> dict[str, bytes]:
        pattern = go_regexp(find.name, where="find.name.regexp") if find.name else None
        out: dict[str, bytes] = {}
        for name, labels, data in await self.list_secrets(self.remote_namespace):
            if pattern is not None and not pattern.search(name):
                continue
            if any(labels.get(k) != v for k, v in find.tags):
                continue
            out[name] = json.dumps(_decoded(data), sort_keys=True).encode()
        return out

    async def close(self) -> None:
        return None


@dataclass
class FakeProvider:
    entries: Sequence[tuple[str, str, str]]  # (key, value, version)
    kind: str = "fake"

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        for k, value, v in self.entries:
            if k == key and (not version or v == version):
                return Remote(value.encode(), v)
        raise RemoteNotFound(f"key {key!r} not found")

    async def current_version(self, key: str) -> str | None:
        return None

    async def find(self, find: Find) -> dict[str, bytes]:
        if find.tags:
            raise ProviderError("the fake provider has no tags", reason="InvalidKey")
        pattern = go_regexp(find.name, where="find.name.regexp") if find.name else None
        return {
            k: value.encode()
            for k, value, v in self.entries
            if not v and (pattern is None or pattern.search(k))
        }

    async def close(self) -> None:
        return None
