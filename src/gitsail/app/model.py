"""The internal App model and the Argo CD ``Application`` adapter onto it.

An App is a source, render options, a destination and a sync policy. The Argo CD
Application (``argoproj.io/v1alpha1``) is read into it field by field with Argo CD's
defaults (``targetRevision`` → HEAD, ``revisionHistoryLimit`` → 10, retry backoff 5s × 2ⁿ
capped at 3m, automated syncs retried 5 times when no ``retry`` is set). Anything we cannot
honour yet (several ``sources``) is reported, not silently ignored.

Before a field is read, the whole object is checked against Argo CD's CRD schema
(``gitsail.app._spec``): every type, int64 ranges, required fields. Whatever is wrong is one
``AppSpecError`` naming each field path (``spec.syncPolicy.retry.limit: expected integer,
got "x"``); no other exception escapes ``App.from_application`` (a hypothesis test holds it
to that), so a bad spec is a condition on the app, never a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsail.app._spec import APPLICATION, MAX_PROBLEMS, SYNC_RETRY, check, shown
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
    "check_application",
    "parse_duration",
]

API_VERSION = "argoproj.io/v1alpha1"
DEFAULT_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"


class AppSpecError(ValueError):
    """The Application's spec cannot be used as written; the message says which field."""


# Go's time.ParseDuration: a sequence of decimal numbers, each with a unit.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration is int64 nanoseconds
_LONGEST_WAIT = 365 * 24 * 3600.0  # an uncapped backoff still fits a timer


def parse_duration(value: object, default: float) -> float:
    """Argo CD's backoff duration in seconds: bare seconds (``"10"``) or a Go duration
    (``5s``, ``3m``, ``1h30m``, ``250ms``); numbers are taken as seconds.

    Negative, non-finite and out-of-range (beyond Go's int64 nanoseconds) durations are
    refused with an ``AppSpecError``.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AppSpecError(f"invalid duration {shown(value)} (use e.g. 5s, 3m)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if re.fullmatch(r"\+?[0-9]{1,19}", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text.lstrip("+"))
            if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
                raise AppSpecError(f"invalid duration {text[:60]!r} (use e.g. 5s, 3m)")
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not 0 <= seconds <= _MAX_DURATION:  # also false for NaN
        raise AppSpecError(f"invalid duration {shown(value)}: must be between 0 and 292 years")
    return seconds


def check_application(obj: Any) -> None:
    """Refuse (``AppSpecError``) an Application that breaks Argo CD's CRD schema or has no
    name; the message names every bad field (up to ten)."""
    if not isinstance(obj, Mapping):
        raise AppSpecError(f"an Application must be an object, got {shown(obj)}")
    meta = obj.get("metadata")
    raw_name = meta.get("name") if isinstance(meta, Mapping) else None
    name = raw_name if isinstance(raw_name, str) and raw_name else "?"
    problems = check(obj, APPLICATION, "")
    if not problems and not raw_name:
        problems = ["metadata.name: must not be empty"]
    if problems:
        more = " (and more)" if len(problems) >= MAX_PROBLEMS else ""
        raise AppSpecError(f"application {name}: {'; '.join(problems)}{more}")


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
            wait = self.duration * float(self.factor) ** max(attempt, 0)
        except OverflowError:
            wait = math.inf
        if self.max_duration > 0:
            wait = min(wait, self.max_duration)
        return float(min(wait, _LONGEST_WAIT))

    @classmethod
    def parse(cls, spec: Any, *, automated: bool) -> Retry:
        """``syncPolicy.retry`` (checked against the CRD schema); AppSpecError if it is wrong."""
        problems = check(spec, SYNC_RETRY, "spec.syncPolicy.retry")
        if problems:
            raise AppSpecError("; ".join(problems))
        if not spec:
            # Argo CD gives automated operations an implicit limit of 5.
            return cls(limit=5) if automated else cls()
        backoff = spec.get("backoff") or {}
        try:
            duration = parse_duration(backoff.get("duration"), 5.0)
            max_duration = parse_duration(backoff.get("maxDuration"), 180.0)
        except AppSpecError as exc:
            raise AppSpecError(f"spec.syncPolicy.retry.backoff: {exc}") from None
        factor = backoff.get("factor")
        return cls(
            limit=int(spec.get("limit") or 0),
            duration=duration,
            factor=float(2 if factor is None else factor),
            max_duration=max_duration,
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
    def from_application(cls, obj: Any) -> App:
        """Read an Application; ``AppSpecError`` (naming every bad field) if it is not one.

        Nothing else is raised, whatever ``obj`` holds.
        """
        check_application(obj)
        meta = obj["metadata"]
        name = str(meta["name"])
        spec = obj["spec"]
        if spec.get("sources") and not spec.get("source"):
            raise AppSpecError(
                f"application {name}: spec.sources (multiple sources) is not supported yet; "
                "use spec.source"
            )
        source = spec.get("source")
        if not source or not source.get("repoURL"):
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
        if automated_spec is not None and automated_spec.get("enabled") is not False:
            automated = Automated(
                prune=bool(automated_spec.get("prune", False)),
                self_heal=bool(automated_spec.get("selfHeal", False)),
                allow_empty=bool(automated_spec.get("allowEmpty", False)),
            )
        try:
            retry = Retry.parse(policy.get("retry"), automated=automated is not None)
        except AppSpecError as exc:
            raise AppSpecError(f"application {name}: {exc}") from None
        history_limit = spec.get("revisionHistoryLimit")
        return cls(
            name=name,
            namespace=str(meta.get("namespace") or DEFAULT_NAMESPACE),
            project=str(spec.get("project") or "default"),
            source=dict(source),
            destination_server=server or IN_CLUSTER,
            destination_namespace=str(destination.get("namespace") or ""),
            automated=automated,
            sync_options=parse_sync_options(policy.get("syncOptions")),
            retry=retry,
            managed_namespace_metadata=policy.get("managedNamespaceMetadata"),
            ignore_differences=tuple(spec.get("ignoreDifferences") or ()),
            revision_history_limit=10 if history_limit is None else int(history_limit),
            finalizers=tuple(meta.get("finalizers") or ()),
            raw=obj if isinstance(obj, dict) else dict(obj),
        )
