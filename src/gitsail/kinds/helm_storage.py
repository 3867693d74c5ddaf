"""Helm 3 release storage, read the way Helm's ``secret`` driver writes it.

Each revision of a release is a Secret ``sh.helm.release.v1.<name>.v<revision>`` of type
``helm.sh/release.v1`` in the release's namespace, labelled ``owner=helm``, ``name``,
``status`` and ``version``. Its ``data.release`` is the release as JSON, gzipped and
base64-encoded (and base64-encoded again by the Secret's ``data``).

gitsail reads this storage itself to decide what to do and to write status, so a pass with
nothing to do costs one LIST of the release's Secrets (only the newest revision is decoded)
and starts no process. Writes always go through the ``helm`` binary (``helm_actions``).

Decoding is bounded: the compressed text by the Secret's own size limit (1 MiB), the JSON by
``Policy.render_output_bytes``; a Secret that cannot be decoded is ``StorageError``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy

__all__ = [
    "DecodedReleases",
    "Release",
    "StorageError",
    "TestHook",
    "config_digest",
    "decode_release",
    "latest_release",
    "mark_failed",
    "release_history",
]

_GZIP_MAGIC = b"\x1f\x8b"
_FRACTION = re.compile(r"\.\d+")


class StorageError(ValueError):
    """A release Secret that is not what Helm writes."""


@dataclass(frozen=True)
class TestHook:
    """A ``helm test`` hook of a release and its last run."""

    __test__ = False  # not a pytest class

    name: str
    phase: str  # "" when it never ran; Succeeded, Failed, Running, Unknown
    last_started: str = ""
    last_completed: str = ""

    def to_status(self) -> dict[str, str]:
        out = {}
        if self.last_started:
            out["lastStarted"] = self.last_started
        if self.last_completed:
            out["lastCompleted"] = self.last_completed
        if self.phase:
            out["phase"] = self.phase
        return out


@dataclass(frozen=True)
class Release:
    """One revision of a Helm release, as much of it as gitsail reads."""

    name: str
    namespace: str
    version: int
    status: str  # deployed, superseded, failed, uninstalled, pending-install, ...
    chart_name: str
    chart_version: str
    app_version: str
    config_json: str  # the user-supplied values, canonical JSON
    manifest: str
    first_deployed: str
    last_deployed: str
    description: str
    digest: str  # sha256 of the stored release
    test_hooks: tuple[TestHook, ...] = ()

    @property
    def config(self) -> dict[str, Any]:
        loaded = json.loads(self.config_json)
        return loaded if isinstance(loaded, dict) else {}

    @property
    def pending(self) -> bool:
        return self.status.startswith("pending-")

    @property
    def tests_ran(self) -> bool:
        return any(h.phase for h in self.test_hooks)

    @property
    def tests_failed(self) -> list[str]:
        return [h.name for h in self.test_hooks if h.phase == "Failed"]

    def snapshot(self, config_digest: str) -> dict[str, Any]:
        """The release as Flux's ``status.history`` records it."""
        out: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "version": self.version,
            "status": self.status,
            "chartName": self.chart_name,
            "chartVersion": self.chart_version,
            "configDigest": config_digest,
            "digest": self.digest,
            "firstDeployed": self.first_deployed,
            "lastDeployed": self.last_deployed,
        }
        if self.app_version:
            out["appVersion"] = self.app_version
        if self.test_hooks:
            out["testHooks"] = {h.name: h.to_status() for h in self.test_hooks}
        return out


def config_digest(values: Mapping[str, Any]) -> str:
    """The digest of a release's values: sha256 of their canonical JSON."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _time(value: object) -> str:
    """Go's RFC 3339 time as Kubernetes prints it (seconds, UTC); "" for the zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return ""
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub("", value, count=1).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_release(secret: Obj, policy: Policy = DEFAULT_POLICY) -> Release:
    """The release a storage Secret holds; StorageError when it is not one."""
    name = (secret.get("metadata") or {}).get("name", "?")
    data = secret.get("data") or {}
    raw = data.get("release") if isinstance(data, Mapping) else None
    if not isinstance(raw, str):
        raise StorageError(f"Secret {name}: no data.release")
    try:
        inner = base64.b64decode(base64.b64decode(raw, validate=True), validate=True)
    except (binascii.Error, ValueError):
        raise StorageError(f"Secret {name}: data.release is not base64") from None
    limit = max(policy.render_output_bytes, 1 << 20)
    if inner[:2] == _GZIP_MAGIC:
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            text = decompressor.decompress(inner, limit + 1)
        except (zlib.error, gzip.BadGzipFile):
            raise StorageError(f"Secret {name}: data.release is not gzip") from None
        if len(text) > limit:
            raise StorageError(f"Secret {name}: the release is over {limit} bytes")
    else:
        text = inner
    try:
        body = json.loads(text)
    except ValueError:
        raise StorageError(f"Secret {name}: the release is not JSON") from None
    if not isinstance(body, dict):
        raise StorageError(f"Secret {name}: the release is not an object")
    return _release(body, hashlib.sha256(text).hexdigest())


def _release(body: dict[str, Any], digest: str) -> Release:
    info = body.get("info") or {}
    chart = body.get("chart") or {}
    meta = chart.get("metadata") or {} if isinstance(chart, dict) else {}
    hooks = []
    for hook in body.get("hooks") or []:
        if not isinstance(hook, dict):
            continue
        events = hook.get("events") or []
        if not any(str(e).startswith("test") for e in events):
            continue
        run = hook.get("last_run") or {}
        hooks.append(
            TestHook(
                name=str(hook.get("name") or ""),
                phase=str(run.get("phase") or ""),
                last_started=_time(run.get("started_at")),
                last_completed=_time(run.get("completed_at")),
            )
        )
    config = body.get("config") or {}
    version = body.get("version")
    return Release(
        name=str(body.get("name") or ""),
        namespace=str(body.get("namespace") or ""),
        version=version if isinstance(version, int) else 0,
        status=str(info.get("status") or ""),
        chart_name=str(meta.get("name") or ""),
        chart_version=str(meta.get("version") or ""),
        app_version=str(meta.get("appVersion") or ""),
        config_json=json.dumps(config if isinstance(config, dict) else {}, sort_keys=True),
        manifest=str(body.get("manifest") or ""),
        first_deployed=_time(info.get("first_deployed")),
        last_deployed=_time(info.get("last_deployed")),
        description=str(info.get("description") or ""),
        digest="sha256:" + digest,
        test_hooks=tuple(sorted(hooks, key=lambda h: h.name)),
    )


def _version(secret: Obj) -> int:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get("version", "0"))
    except ValueError:
        return 0


async def _secrets(kube: Kube, namespace: str, name: str) -> list[Obj]:
    selector = f"owner=helm,name={name}"
    secrets = await kube.list("v1", "Secret", namespace, label_selector=selector)
    return sorted(
        (s for s in secrets if s.get("type") == "helm.sh/release.v1"),
        key=_version,
        reverse=True,
    )


class DecodedReleases:
    """Releases already decoded, by Secret uid and resourceVersion (an LRU): an idle pass
    lists the storage but decodes nothing."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], Release] = OrderedDict()

    def decode(self, secret: Obj, policy: Policy) -> Release:
        meta = secret.get("metadata") or {}
        key = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        if not all(key):
            return decode_release(secret, policy)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = decode_release(secret, policy)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return found


async def latest_release(
    kube: Kube,
    namespace: str,
    name: str,
    policy: Policy = DEFAULT_POLICY,
    cache: DecodedReleases | None = None,
) -> Release | None:
    """The newest revision of release ``name`` (one LIST, at most one decode), or None."""
    secrets = await _secrets(kube, namespace, name)
    if not secrets:
        return None
    return (
        cache.decode(secrets[0], policy)
        if cache is not None
        else decode_release(secrets[0], policy)
    )


async def release_history(
    kube: Kube, namespace: str, name: str, policy: Policy = DEFAULT_POLICY
) -> list[Release]:
    """Every stored revision of release ``name``, newest first."""
    return [decode_release(s, policy) for s in await _secrets(kube, namespace, name)]


async def mark_failed(kube: Kube, namespace: str, name: str, version: int) -> None:
    """Mark revision ``version`` of ``name`` failed, as helm-controller unlocks a release a
    killed helm left ``pending-*`` (helm refuses every action on it otherwise). Written at
    the resourceVersion read, in Helm's own encoding."""
    secret = await kube.get("v1", "Secret", f"sh.helm.release.v1.{name}.v{version}", namespace)
    if secret is None:
        return
    raw = (secret.get("data") or {}).get("release")
    if not isinstance(raw, str):
        raise StorageError(f"Secret sh.helm.release.v1.{name}.v{version}: no data.release")
    inner = base64.b64decode(base64.b64decode(raw, validate=True), validate=True)
    text = gzip.decompress(inner) if inner[:2] == _GZIP_MAGIC else inner
    body = json.loads(text)
    info = body.setdefault("info", {})
    previous = info.get("status")
    info["status"] = "failed"
    info["description"] = f"Release {previous} was interrupted; marked failed by gitsail"
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
    labels = dict((secret.get("metadata") or {}).get("labels") or {})
    labels["status"] = "failed"
    secret["metadata"]["labels"] = labels
    secret["data"] = {"release": base64.b64encode(encoded.encode()).decode()}
    await kube.replace(secret)
