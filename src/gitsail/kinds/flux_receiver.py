"""Flux's ``Receiver`` (``notification.toolkit.fluxcd.io/v1``): parse the spec, compute the
webhook path, and write the Receiver's status.

Flux's rules, as notification-controller's documentation states them
(``docs/spec/v1/receivers.md``):

- the webhook path is ``/hook/`` + the hex SHA-256 of the token, then the Receiver's name,
  then its namespace, concatenated (``sha256(token+name+namespace)``); the token is the
  ``token`` key of the Secret ``spec.secretRef.name`` in the Receiver's namespace;
- ``spec.type`` says how a request is verified: ``generic`` (the secret path only),
  ``generic-hmac`` (``X-Signature: sha1|sha256|sha512=<hex>``), ``github``
  (``X-Hub-Signature-256``, or the older SHA-1 ``X-Hub-Signature``) and ``gitlab``
  (``X-Gitlab-Token`` equals the token); the HTTP side is ``gitsail.controller.receiver``;
- ``spec.events`` filters by the forge's event header (``push``, ``Push Hook``; compared
  without case) for ``github`` and ``gitlab``; empty means every event;
- ``spec.resources``: ``kind``, ``name``, optional ``apiVersion`` (Flux's default version
  of the kind when absent) and ``namespace`` (the Receiver's when absent); ``name: "*"``
  with ``matchLabels`` selects by labels. An accepted request annotates each of them with
  ``reconcile.fluxcd.io/requestedAt: <RFC 3339 time>``, which is how Flux asks an object
  to reconcile now;
- ``spec.interval`` (default 10m) re-reads the Secret; ``spec.suspend`` stops handling.

Status, as Flux writes it: ``webhookPath``, ``observedGeneration`` (the last generation
that became ready), ``lastHandledReconcileAt``, and ``conditions`` ``Ready=True`` reason
``Succeeded`` "Receiver initialized for path: /hook/…", or ``Ready=False`` reason
``TokenNotFound`` with ``Reconciling=True`` while the Secret or its key is missing.

Refused with a message (``UnsupportedField``): the types gitsail does not implement
(``bitbucket``, ``harbor``, ``dockerhub``, ``quay``, ``gcr``, ``nexus``, ``acr``,
``cdevents``, ``generic-oidc``) and ``resourceFilter`` (CEL). Beyond Flux, an empty token
is refused (an HMAC keyed with nothing proves nothing) and ``matchLabels`` without
``name: "*"`` is an error instead of being ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.status import ReconcileError, Stalled, Transient, failure_conditions
from gitsail.kinds.status import ready_conditions as _ready_conditions
from gitsail.model import Obj

__all__ = [
    "API_VERSION",
    "DEFAULT_INTERVAL",
    "KIND",
    "RECEIVER_TYPES",
    "REQUESTED_AT",
    "Receiver",
    "ReceiverReconciler",
    "ResourceRef",
    "parse_receiver",
    "receiver_status",
    "receiver_token",
    "rfc3339_nano",
    "webhook_path",
]

GROUP = "notification.toolkit.fluxcd.io"
API_VERSION = f"{GROUP}/v1"
KIND = "Receiver"
DEFAULT_INTERVAL = 600.0
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
HOOK_PREFIX = "/hook/"
TOKEN_KEY = "token"  # noqa: S105 (the key's name)
# Retry of a Receiver whose Secret is missing; the Secret's watch usually comes first.
TOKEN_RETRY = 30.0

RECEIVER_TYPES = ("generic", "generic-hmac", "github", "gitlab")
_FLUX_ONLY_TYPES = (
    "bitbucket",
    "harbor",
    "dockerhub",
    "quay",
    "gcr",
    "nexus",
    "acr",
    "cdevents",
    "generic-oidc",
)
# The kinds a Receiver may name (Flux's list) and the version used when apiVersion is absent.
DEFAULT_VERSIONS: dict[str, str | None] = {
    "Bucket": "source.toolkit.fluxcd.io/v1",
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "HelmChart": "source.toolkit.fluxcd.io/v1",
    "HelmRepository": "source.toolkit.fluxcd.io/v1",
    "OCIRepository": "source.toolkit.fluxcd.io/v1beta2",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
    "ImageRepository": "image.toolkit.fluxcd.io/v1beta2",
    "ImagePolicy": None,
    "ImageUpdateAutomation": None,
}
_NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_API_VERSION = r"[a-z0-9.-]+/[a-z0-9]+"


@dataclass(frozen=True)
class ResourceRef:
    """One ``spec.resources`` entry, defaults applied: an object, or (``name == "*"``) the
    objects of ``kind`` in ``namespace`` carrying every one of ``match_labels``."""

    api_version: str
    kind: str
    name: str
    namespace: str
    match_labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.match_labels)


@dataclass(frozen=True)
class Receiver:
    """A parsed Receiver."""

    namespace: str
    name: str
    generation: int
    type: str  # one of RECEIVER_TYPES
    events: tuple[str, ...]
    resources: tuple[ResourceRef, ...]
    secret_name: str
    interval: float = DEFAULT_INTERVAL
    suspend: bool = False
    requested_at: str | None = None

    def path(self, token: str) -> str:
        return webhook_path(token, self.name, self.namespace)

    def wants(self, event: str) -> bool:
        """Whether ``spec.events`` lets this event through (without case, as Flux)."""
        return not self.events or any(event.lower() == e.lower() for e in self.events)


def webhook_path(token: str, name: str, namespace: str) -> str:
    """Flux's path: ``/hook/`` + hex ``sha256(token + name + namespace)``."""
    digest = hashlib.sha256((token + name + namespace).encode()).hexdigest()
    return HOOK_PREFIX + digest


def rfc3339_nano(when: datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: fraction without trailing zeros, ``Z``."""
    when = when.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{when.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def parse_receiver(obj: Any) -> Receiver:
    """Parse a Receiver object; raises ``SpecError`` (``UnsupportedField``) naming the field
    and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=(API_VERSION,)
    )
    try:
        receiver = _receiver(spec, namespace, name, generation)
    except SpecError as exc:
        raise exc.about(subject) from None
    return replace(receiver, requested_at=annotation(obj, REQUESTED_AT))


def _receiver(spec: Fields, namespace: str, name: str, generation: int) -> Receiver:
    kind = spec.choice("type", RECEIVER_TYPES + _FLUX_ONLY_TYPES, "")
    if not kind:
        raise SpecError(spec.at("type"), f"required (one of {', '.join(RECEIVER_TYPES)})")
    if kind in _FLUX_ONLY_TYPES:
        raise UnsupportedField(
            spec.at("type"),
            f"{kind} receivers are not implemented by gitsail yet "
            f"(use one of {', '.join(RECEIVER_TYPES)})",
        )
    if spec.present("resourceFilter"):
        spec.raw("resourceFilter")
        raise UnsupportedField(
            spec.at("resourceFilter"), "CEL resource filters are not implemented by gitsail yet"
        )
    events = spec.strings("events")
    resources = tuple(_resource(item, namespace) for item in spec.items("resources"))
    if not resources:
        raise SpecError(spec.at("resources"), "required: the objects to reconcile")
    secret = spec.obj("secretRef")
    secret_name = secret.string("name", pattern=_NAME) or ""
    secret.finish()
    if not secret_name:
        raise SpecError(spec.at("secretRef.name"), "required: the Secret with the token")
    interval = spec.duration("interval")
    suspend = spec.boolean("suspend")
    spec.finish()
    return Receiver(
        namespace=namespace,
        name=name,
        generation=generation,
        type=kind,
        events=events,
        resources=resources,
        secret_name=secret_name,
        interval=interval or DEFAULT_INTERVAL,
        suspend=suspend,
    )


def _resource(item: Fields, default_namespace: str) -> ResourceRef:
    kind = item.need_string("kind")
    if kind not in DEFAULT_VERSIONS:
        raise SpecError(
            item.at("kind"),
            f"{shown(kind)} is not a Flux kind a Receiver can reconcile "
            f"(one of {', '.join(sorted(DEFAULT_VERSIONS))})",
        )
    api_version = item.string("apiVersion", pattern=_API_VERSION) or DEFAULT_VERSIONS[kind]
    if api_version is None:
        raise SpecError(item.at("apiVersion"), f"required for kind {kind}")
    name = item.need_string("name")
    if name != "*" and (len(name) > 253 or not _is_name(name)):
        raise SpecError(item.at("name"), f"not an object name or '*': {shown(name)}")
    namespace = item.string("namespace", pattern=_NAME) or default_namespace
    labels = item.string_map("matchLabels")
    item.finish()
    if name == "*" and not labels:
        raise SpecError(item.at("matchLabels"), "required when name is '*'")
    if labels and name != "*":
        raise SpecError(item.at("matchLabels"), "only allowed with name '*'")
    return ResourceRef(api_version, kind, name, namespace, labels)


def _is_name(name: str) -> bool:
    return re.fullmatch(_NAME, name) is not None


# -- status -------------------------------------------------------------------------------


def receiver_token(secret: Obj | None, receiver: Receiver) -> str:
    """The token from the Receiver's Secret; ``Transient("TokenNotFound")`` when the Secret,
    its ``token`` key, or a value is missing (the value itself never appears in a message)."""
    where = f"'{receiver.namespace}/{receiver.secret_name}'"
    if secret is None:
        raise Transient(
            "TokenNotFound", f"unable to read token from secret {where}: Secret not found"
        )
    data = secret.get("data") or {}
    raw = data.get(TOKEN_KEY) if isinstance(data, dict) else None
    if not isinstance(raw, str):
        raise Transient(
            "TokenNotFound", f"invalid {where} secret data: required field '{TOKEN_KEY}'"
        )
    try:
        token = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Transient(
            "TokenNotFound", f"invalid {where} secret data: '{TOKEN_KEY}' is not UTF-8 text"
        ) from None
    if not token:
        raise Transient("TokenNotFound", f"invalid {where} secret data: '{TOKEN_KEY}' is empty")
    return token


def receiver_status(
    obj: Obj, receiver: Receiver | None, token: str | ReconcileError, now: str
) -> dict[str, Any]:
    """The status a reconcile writes: computed from the object's current status, so the
    same facts give the same status byte for byte (no write, no watch event)."""
    current: dict[str, Any] = dict(obj.get("status") or {})
    conditions = current.get("conditions") or []
    generation = (obj.get("metadata") or {}).get("generation")
    status: dict[str, Any] = {}
    if isinstance(token, ReconcileError):
        status["conditions"] = failure_conditions(conditions, token, generation=generation, now=now)
        status["webhookPath"] = ""
        if "observedGeneration" in current:
            status["observedGeneration"] = current["observedGeneration"]
    else:
        assert receiver is not None
        path = receiver.path(token)
        status["conditions"] = _ready_conditions(
            conditions,
            reason="Succeeded",
            message=f"Receiver initialized for path: {path}",
            generation=generation,
            now=now,
        )
        status["webhookPath"] = path
        status["observedGeneration"] = generation
    requested = annotation(obj, REQUESTED_AT)
    if requested is not None:
        status["lastHandledReconcileAt"] = requested
    elif "lastHandledReconcileAt" in current:
        status["lastHandledReconcileAt"] = current["lastHandledReconcileAt"]
    return status


class StatusPatcher(Protocol):
    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = ...,
    ) -> Obj: ...


SecretLookup = Callable[[str, str], Awaitable[Obj | None]]


def _now() -> datetime:
    return datetime.now(UTC)


class ReceiverReconciler:
    """Reconciles one Receiver: reads its token, computes its webhook path, and writes its
    status with one ``/status`` merge patch (none when nothing changed).

    ``secrets(namespace, name)`` returns the Secret (from a watch in the controller). The
    result is when to reconcile again: ``spec.interval`` when ready, ``TOKEN_RETRY`` while
    the token is missing, ``None`` for a suspended Receiver or a spec only an edit can fix.
    """

    api_version = API_VERSION
    kind = KIND

    def __init__(
        self,
        kube: StatusPatcher,
        secrets: SecretLookup,
        *,
        clock: Callable[[], datetime] = _now,
        field_manager: str = "gitsail",
    ) -> None:
        self.kube = kube
        self.secrets = secrets
        self.clock = clock
        self.field_manager = field_manager

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # nothing of ours to clean up: the path dies with the object
        receiver: Receiver | None = None
        outcome: str | ReconcileError
        try:
            receiver = parse_receiver(obj)
        except SpecError as exc:
            outcome = Stalled("InvalidSpec", str(exc))
        else:
            if receiver.suspend:
                return None
            try:
                outcome = receiver_token(
                    await self.secrets(receiver.namespace, receiver.secret_name), receiver
                )
            except Transient as exc:
                outcome = exc
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        status = receiver_status(obj, receiver, outcome, now)
        current = obj.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            await self.kube.merge_patch(
                API_VERSION,
                KIND,
                str(meta.get("name")),
                {"status": status},
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=self.field_manager,
            )
        if isinstance(outcome, Stalled):
            return None
        if isinstance(outcome, Transient):
            return TOKEN_RETRY
        assert receiver is not None
        return receiver.interval
