"""Flux's ``Provider`` and ``Alert`` (``notification.toolkit.fluxcd.io/v1beta3``) and events.

A ``Provider`` says where and how to send (``type``, ``address``, ``channel``, ``username``,
``timeout``, ``secretRef``, ``suspend``); an ``Alert`` says which events go to it
(``providerRef``, ``eventSources`` by kind, name or ``*``, namespace and ``matchLabels``,
``eventSeverity``, ``inclusionList`` / ``exclusionList`` regular expressions on the message,
``eventMetadata``, ``summary``, ``suspend``). Both are static objects in v1beta3 (no status).

Flux controllers post an event to notification-controller on each reconcile; gitsail has one
process, so it derives the events from what the reconcilers write: the ``Ready`` condition of
a Flux object. ``ReadyState`` is what one notification is about (status, reason, message and
revision); a new state (``Ready=True`` → ``info``, ``Ready=False`` → ``error``;
``Unknown``, "in progress", is no event) is one event, and the same state seen again (a
retry failing the same way, a status write of another field) is none.

Refused at parse time, with the field named: provider types gitsail does not send, a
``proxy`` or ``certSecretRef`` (not implemented: refused, never ignored), more than
``MAX_PATTERNS`` patterns or patterns longer than ``MAX_PATTERN`` characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.model import Obj
from gitsail.source import redact_text

__all__ = [
    "ALERT",
    "API_VERSION",
    "COMMIT_STATUS_TYPES",
    "EVENT_METADATA_PREFIX",
    "PROVIDER",
    "PROVIDER_TYPES",
    "AlertSpec",
    "EventSource",
    "FluxEvent",
    "ProviderSpec",
    "ReadyState",
    "alert_matches",
    "flux_event",
    "parse_alert",
    "parse_provider",
    "ready_state",
]

GROUP = "notification.toolkit.fluxcd.io"
API_VERSION = f"{GROUP}/v1beta3"
PROVIDER = "Provider"
ALERT = "Alert"
PROVIDER_TYPES = frozenset({"generic", "generic-hmac", "slack", "msteams", "github", "gitlab"})
COMMIT_STATUS_TYPES = frozenset({"github", "gitlab"})
SEVERITIES = ("info", "error")
DEFAULT_TIMEOUT = 15.0
MAX_TIMEOUT = 300.0
MAX_PATTERNS = 32
MAX_PATTERN = 512
MAX_SOURCES = 64
MAX_METADATA = 32
MAX_MESSAGE = 4096
EVENT_METADATA_PREFIX = "event.toolkit.fluxcd.io/"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# The controller that reports events about each Flux API group (``reportingController``).
REPORTERS = {
    "kustomize.toolkit.fluxcd.io": "kustomize-controller",
    "helm.toolkit.fluxcd.io": "helm-controller",
    "source.toolkit.fluxcd.io": "source-controller",
    "image.toolkit.fluxcd.io": "image-reflector-controller",
    "notification.toolkit.fluxcd.io": "notification-controller",
}


def _duration(value: object, where: str) -> float:
    text = str(value)
    if not _DURATION.match(text):
        raise SpecError(where, f"{text!r} is not a duration (e.g. 30s, 1m)")
    seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))
    if not 0 < seconds <= MAX_TIMEOUT:
        raise SpecError(where, f"must be more than 0 and at most {MAX_TIMEOUT:g}s")
    return seconds


def _meta(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or "")


def _spec(obj: Obj, kind: str) -> dict[str, Any]:
    if obj.get("kind") != kind or not str(obj.get("apiVersion", "")).startswith(f"{GROUP}/"):
        raise SpecError("kind", f"not a {GROUP} {kind}")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    return spec


def _name_ref(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise SpecError(where, "must be an object with a name")
    return str(value["name"])


@dataclass(frozen=True)
class ProviderSpec:
    namespace: str
    name: str
    uid: str
    type: str
    address: str = ""
    channel: str = ""
    username: str = ""
    secret_name: str = ""
    timeout: float = DEFAULT_TIMEOUT
    suspend: bool = False


def parse_provider(obj: Obj) -> ProviderSpec:
    namespace, name, uid = _meta(obj)
    subject = f"Provider {namespace}/{name}"
    try:
        spec = _spec(obj, PROVIDER)
        ptype = spec.get("type")
        if ptype not in PROVIDER_TYPES:
            raise UnsupportedField(
                "spec.type",
                f"{ptype!r} is not sent by gitsail (use {', '.join(sorted(PROVIDER_TYPES))})",
            )
        for unsupported in ("proxy", "proxySecretRef", "certSecretRef", "serviceAccountName"):
            if spec.get(unsupported):
                raise UnsupportedField(f"spec.{unsupported}", "not supported by gitsail: refused")
        for key in ("address", "channel", "username"):
            if not isinstance(spec.get(key, ""), str):
                raise SpecError(f"spec.{key}", "must be a string")
        suspend = spec.get("suspend", False)
        if not isinstance(suspend, bool):
            raise SpecError("spec.suspend", "must be true or false")
        timeout = spec.get("timeout")
        return ProviderSpec(
            namespace=namespace,
            name=name,
            uid=uid,
            type=str(ptype),
            address=str(spec.get("address") or ""),
            channel=str(spec.get("channel") or ""),
            username=str(spec.get("username") or ""),
            secret_name=_name_ref(spec.get("secretRef"), "spec.secretRef"),
            timeout=DEFAULT_TIMEOUT if timeout is None else _duration(timeout, "spec.timeout"),
            suspend=suspend,
        )
    except SpecError as exc:
        raise exc.about(subject) from None


@dataclass(frozen=True)
class EventSource:
    kind: str
    name: str  # "*": every object of the kind (narrowed by match_labels)
    namespace: str
    match_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AlertSpec:
    namespace: str
    name: str
    provider: str
    sources: tuple[EventSource, ...]
    severity: str = "info"
    inclusion: tuple[re.Pattern[str], ...] = ()
    exclusion: tuple[re.Pattern[str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    summary: str = ""
    suspend: bool = False


def _patterns(value: object, where: str) -> tuple[re.Pattern[str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise SpecError(where, f"must be a list of at most {MAX_PATTERNS} regular expressions")
    out = []
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            raise SpecError(
                f"{where}[{i}]", f"must be a string of at most {MAX_PATTERN} characters"
            )
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise SpecError(f"{where}[{i}]", f"not a regular expression: {exc}") from None
    return tuple(out)


def parse_alert(obj: Obj) -> AlertSpec:
    namespace, name, _ = _meta(obj)
    subject = f"Alert {namespace}/{name}"
    try:
        spec = _spec(obj, ALERT)
        provider = _name_ref(spec.get("providerRef"), "spec.providerRef")
        if not provider:
            raise SpecError("spec.providerRef", "is required")
        raw_sources = spec.get("eventSources")
        if not isinstance(raw_sources, list) or not raw_sources or len(raw_sources) > MAX_SOURCES:
            raise SpecError("spec.eventSources", f"must list 1 to {MAX_SOURCES} sources")
        sources = []
        for i, src in enumerate(raw_sources):
            where = f"spec.eventSources[{i}]"
            if not isinstance(src, dict) or not isinstance(src.get("kind"), str):
                raise SpecError(where, "must be an object with a kind")
            if not isinstance(src.get("name"), str) or not src["name"]:
                raise SpecError(f"{where}.name", "is required (a name or '*')")
            labels = src.get("matchLabels") or {}
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise SpecError(f"{where}.matchLabels", "must map strings to strings")
            if labels and src["name"] != "*":
                raise SpecError(f"{where}.matchLabels", "is only allowed with name '*'")
            sources.append(
                EventSource(
                    kind=src["kind"],
                    name=src["name"],
                    namespace=str(src.get("namespace") or namespace),
                    match_labels=tuple(sorted(labels.items())),
                )
            )
        severity = spec.get("eventSeverity", "info")
        if severity not in SEVERITIES:
            raise SpecError("spec.eventSeverity", "must be info or error")
        metadata = spec.get("eventMetadata") or {}
        if (
            not isinstance(metadata, dict)
            or len(metadata) > MAX_METADATA
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise SpecError("spec.eventMetadata", f"must map at most {MAX_METADATA} strings")
        summary = spec.get("summary", "")
        if not isinstance(summary, str) or len(summary) > 255:
            raise SpecError("spec.summary", "must be a string of at most 255 characters")
        suspend = spec.get("suspend", False)
        if not isinstance(suspend, bool):
            raise SpecError("spec.suspend", "must be true or false")
        return AlertSpec(
            namespace=namespace,
            name=name,
            provider=provider,
            sources=tuple(sources),
            severity=str(severity),
            inclusion=_patterns(spec.get("inclusionList"), "spec.inclusionList"),
            exclusion=_patterns(spec.get("exclusionList"), "spec.exclusionList"),
            metadata=tuple(sorted(metadata.items())),
            summary=summary,
            suspend=suspend,
        )
    except SpecError as exc:
        raise exc.about(subject) from None


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyState:
    """What one notification is about: the Ready condition and the revision."""

    status: str  # "True" | "False"
    reason: str
    message: str
    revision: str


def _revision(obj: Obj) -> str:
    status = obj.get("status") or {}
    for key in ("lastAttemptedRevision", "lastAppliedRevision"):
        if isinstance(status.get(key), str) and status[key]:
            return str(status[key])
    artifact = status.get("artifact")
    if isinstance(artifact, dict) and isinstance(artifact.get("revision"), str):
        return str(artifact["revision"])
    return ""


def ready_state(obj: Obj) -> ReadyState | None:
    """The object's Ready state, or None while it is not True or False (in progress)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            if cond.get("status") not in ("True", "False"):
                return None
            revision = _revision(obj)
            if cond.get("status") == "False":
                # A failure is about the revision attempted, a success about the one applied.
                revision = str((obj.get("status") or {}).get("lastAttemptedRevision") or revision)
            return ReadyState(
                status=str(cond["status"]),
                reason=str(cond.get("reason") or ""),
                message=redact_text(str(cond.get("message") or ""))[:MAX_MESSAGE],
                revision=revision,
            )
    return None


@dataclass(frozen=True)
class FluxEvent:
    """An event in the shape Flux controllers post (fluxcd/pkg ``apis/event/v1``)."""

    involved: tuple[tuple[str, str], ...]  # apiVersion, kind, name, namespace, uid
    severity: str
    reason: str
    message: str
    timestamp: str
    reporting_controller: str
    metadata: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def get(self, key: str) -> str:
        return dict(self.involved).get(key, "")

    @property
    def revision(self) -> str:
        """The source revision of the event (``<group>/revision`` metadata), or ""."""
        for key, value in self.metadata:
            if key == "revision" or key.endswith("/revision"):
                return value
        return ""

    def payload(self) -> dict[str, Any]:
        return {
            "involvedObject": dict(self.involved),
            "severity": self.severity,
            "timestamp": self.timestamp,
            "message": self.message,
            "reason": self.reason,
            "metadata": dict(self.metadata),
            "reportingController": self.reporting_controller,
            "reportingInstance": self.reporting_controller,
        }

    def with_metadata(self, extra: dict[str, str]) -> FluxEvent:
        """The event with ``extra`` metadata (existing keys win, as Flux does)."""
        merged = dict(extra)
        merged.update(dict(self.metadata))
        return FluxEvent(
            involved=self.involved,
            severity=self.severity,
            reason=self.reason,
            message=self.message,
            timestamp=self.timestamp,
            reporting_controller=self.reporting_controller,
            metadata=tuple(sorted(merged.items())),
            labels=self.labels,
        )

    def fingerprint(self) -> str:
        """The identity of the event for deduplication (not its timestamp)."""
        body = [self.involved, self.severity, self.reason, self.message, self.metadata]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:32]


def flux_event(obj: Obj, state: ReadyState, *, now: datetime | None = None) -> FluxEvent:
    """The event for ``obj`` entering ``state``."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    meta = obj.get("metadata") or {}
    involved = {
        "apiVersion": api_version,
        "kind": str(obj.get("kind") or ""),
        "name": str(meta.get("name") or ""),
        "namespace": str(meta.get("namespace") or ""),
        "uid": str(meta.get("uid") or ""),
    }
    metadata: dict[str, str] = {}
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(EVENT_METADATA_PREFIX) and isinstance(value, str):
            metadata[key.removeprefix(EVENT_METADATA_PREFIX)] = value
    if state.revision:
        metadata[f"{group}/revision" if group else "revision"] = state.revision
    labels = meta.get("labels") or {}
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return FluxEvent(
        involved=tuple((k, v) for k, v in involved.items() if v),
        severity="info" if state.status == "True" else "error",
        reason=state.reason or ("ReconciliationSucceeded" if state.status == "True" else "Failed"),
        message=state.message,
        timestamp=stamp,
        reporting_controller=REPORTERS.get(group, "gitsail-controller"),
        metadata=tuple(sorted(metadata.items())),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def alert_matches(alert: AlertSpec, event: FluxEvent) -> bool:
    """Whether ``alert`` wants ``event``: a source matches, the severity is wanted, the
    message is included and not excluded."""
    if alert.suspend:
        return False
    if alert.severity == "error" and event.severity != "error":
        return False
    labels = dict(event.labels)
    for source in alert.sources:
        if source.kind != event.get("kind") or source.namespace != event.get("namespace"):
            continue
        if source.name == "*":
            if all(labels.get(k) == v for k, v in source.match_labels):
                break
        elif source.name == event.get("name"):
            break
    else:
        return False
    if alert.inclusion and not any(p.search(event.message) for p in alert.inclusion):
        return False
    return not any(p.search(event.message) for p in alert.exclusion)
