"""The internal App model and the Argo CD ``Application`` adapter onto it.

An App is a source, render options, a destination and a sync policy. The Argo CD
Application (``argoproj.io/v1alpha1``) is read into it field by field with Argo CD's
defaults (``targetRevision`` → HEAD, ``revisionHistoryLimit`` → 10, retry backoff 5s × 2ⁿ
capped at 3m, automated syncs retried 5 times when no ``retry`` is set). Anything we cannot
honour yet (several ``sources``) is reported, not silently ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from gitsail.model import Obj
from gitsail.sync.plan import SyncOptions, parse_sync_options

__all__ = [
    "API_VERSION",
    "DEFAULT_NAMESPACE",
    "IN_CLUSTER",
    "App",
    "AppSpecError",
    "Automated",
    "Retry",
    "parse_duration",
]

API_VERSION = "argoproj.io/v1alpha1"
DEFAULT_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"


class AppSpecError(ValueError):
    """The Application's spec cannot be used as written; the message says which field."""


_LONGEST_WAIT = 365 * 24 * 3600.0  # an uncapped backoff still fits a timer

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: object, default: float) -> float:
    """A Go duration (``5s``, ``3m``, ``1h30m``) or a bare number of seconds, in seconds."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise AppSpecError(f"invalid duration {text!r} (use e.g. 5s, 3m)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(frozen=True)
class Retry:
    limit: int = 0  # 0 none, <0 unlimited
    duration: float = 5.0
    factor: float = 2.0
    max_duration: float = 180.0
    refresh: bool = False

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``: ``duration × factor^attempt``,
        capped at ``max_duration`` (no cap when it is 0, as in Argo CD)."""
        try:
            wait = self.duration * float(self.factor) ** attempt
        except OverflowError:
            wait = math.inf
        if self.max_duration > 0:
            wait = min(wait, self.max_duration)
        return float(min(wait, _LONGEST_WAIT))

    @classmethod
    def parse(cls, spec: dict[str, Any] | None, *, automated: bool) -> Retry:
        if not spec:
            # Argo CD gives automated operations an implicit limit of 5.
            return cls(limit=5) if automated else cls()
        backoff = spec.get("backoff") or {}
        return cls(
            limit=int(spec.get("limit", 0) or 0),
            duration=parse_duration(backoff.get("duration"), 5.0),
            factor=float(backoff.get("factor", 2) or 2),
            max_duration=parse_duration(backoff.get("maxDuration"), 180.0),
            refresh=bool(spec.get("refresh", False)),
        )


@dataclass(frozen=True)
class Automated:
    prune: bool = False
    self_heal: bool = False
    allow_empty: bool = False


@dataclass(frozen=True)
class App:
    """One Application, read into the engine's terms."""

    name: str
    namespace: str
    project: str
    source: dict[str, Any]
    destination_server: str
    destination_namespace: str
    automated: Automated | None
    sync_options: SyncOptions
    retry: Retry
    managed_namespace_metadata: dict[str, Any] | None
    ignore_differences: tuple[dict[str, Any], ...]
    revision_history_limit: int
    finalizers: tuple[str, ...]
    raw: Obj = field(repr=False, compare=False)

    @property
    def instance(self) -> str:
        """The name used in tracking ids: ``<ns>_<name>`` outside the control-plane namespace."""
        if self.namespace == DEFAULT_NAMESPACE:
            return self.name
        return f"{self.namespace}_{self.name}"

    @property
    def repo_url(self) -> str:
        return str(self.source.get("repoURL", ""))

    @property
    def target_revision(self) -> str:
        return str(self.source.get("targetRevision") or "HEAD")

    @property
    def is_helm_repo(self) -> bool:
        return bool(self.source.get("chart"))

    @classmethod
    def from_application(cls, obj: Obj) -> App:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        name = str(meta.get("name", ""))
        if spec.get("sources") and not spec.get("source"):
            raise AppSpecError(
                f"application {name}: spec.sources (multiple sources) is not supported yet; "
                "use spec.source"
            )
        source = spec.get("source")
        if not isinstance(source, dict) or not source.get("repoURL"):
            raise AppSpecError(f"application {name}: spec.source.repoURL is required")
        destination = spec.get("destination") or {}
        server = destination.get("server") or ""
        if destination.get("name") and not server:
            server = IN_CLUSTER if destination["name"] == "in-cluster" else ""
            if not server:
                raise AppSpecError(
                    f"application {name}: destination cluster {destination['name']!r} is not "
                    "registered (only the in-cluster destination is supported yet)"
                )
        policy = spec.get("syncPolicy") or {}
        automated_spec = policy.get("automated")
        automated = None
        if isinstance(automated_spec, dict) and automated_spec.get("enabled", True) is not False:
            automated = Automated(
                prune=bool(automated_spec.get("prune", False)),
                self_heal=bool(automated_spec.get("selfHeal", False)),
                allow_empty=bool(automated_spec.get("allowEmpty", False)),
            )
        return cls(
            name=name,
            namespace=str(meta.get("namespace") or DEFAULT_NAMESPACE),
            project=str(spec.get("project") or "default"),
            source=dict(source),
            destination_server=server or IN_CLUSTER,
            destination_namespace=str(destination.get("namespace") or ""),
            automated=automated,
            sync_options=parse_sync_options(policy.get("syncOptions")),
            retry=Retry.parse(policy.get("retry"), automated=automated is not None),
            managed_namespace_metadata=policy.get("managedNamespaceMetadata"),
            ignore_differences=tuple(spec.get("ignoreDifferences") or ()),
            revision_history_limit=int(spec.get("revisionHistoryLimit", 10) or 10),
            finalizers=tuple(meta.get("finalizers") or ()),
            raw=obj,
        )
