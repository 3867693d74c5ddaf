"""Flux's ``OCIRepository`` (``source.toolkit.fluxcd.io/v1``, and ``v1beta2`` served with
the same schema): parse a spec into a frozen record.

Flux's rules, as its documentation states them (source-controller
``docs/spec/v1/ocirepositories.md``):

- ``spec.url`` (required): ``oci://<host>[:<port>]/<repository>``, without a tag or digest.
- ``spec.ref``: of ``tag``, ``semver`` and ``digest`` the later one wins (digest > semver >
  tag); no reference at all means the ``latest`` tag.
- ``spec.layerSelector``: ``mediaType`` picks the first layer of that type (default: the
  first layer); ``operation`` is ``extract`` (default: the ``tar+gzip`` layer is unpacked
  and archived again, minus ignored files) or ``copy`` (the layer is stored as it is).
- ``spec.secretRef.name``: a ``kubernetes.io/dockerconfigjson`` Secret in the same
  namespace; ``spec.insecure``: plain HTTP; ``spec.interval`` (required), ``spec.timeout``
  (default 60s), ``spec.ignore``, ``spec.suspend``.

Refused with a message (not implemented): ``verify`` (cosign/notation), ``certSecretRef``,
``proxySecretRef``, ``serviceAccountName``, ``ref.semverFilter``, and ``provider`` other
than ``generic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.source.errors import InvalidSource
from gitsail.source.oci import parse_oci_reference

__all__ = [
    "API_VERSIONS",
    "DEFAULT_TAG",
    "DEFAULT_TIMEOUT",
    "GROUP",
    "KIND",
    "LayerSelector",
    "OCIRef",
    "OCIRepository",
    "parse_oci_repository",
]

GROUP = "source.toolkit.fluxcd.io"
KIND = "OCIRepository"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
DEFAULT_TAG = "latest"
DEFAULT_TIMEOUT = 60.0
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"

_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
_MEDIA_TYPE = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"


@dataclass(frozen=True)
class OCIRef:
    """What to pull; ``digest`` > ``semver`` > ``tag`` (only the winner is kept)."""

    tag: str = ""
    semver: str = ""
    digest: str = ""


@dataclass(frozen=True)
class LayerSelector:
    media_type: str = ""  # "" = the first layer
    operation: str = "extract"  # "extract" | "copy"

    def to_status(self) -> dict[str, str]:
        out = {"operation": self.operation}
        if self.media_type:
            out["mediaType"] = self.media_type
        return out


@dataclass(frozen=True)
class OCIRepository:
    """A parsed OCIRepository."""

    namespace: str
    name: str
    generation: int
    url: str
    ref: OCIRef
    layer_selector: LayerSelector | None
    secret_ref: str | None
    insecure: bool
    interval: float
    timeout: float
    suspend: bool
    ignore: str | None
    requested_at: str | None = None  # reconcile.fluxcd.io/requestedAt


def parse_oci_repository(obj: Any) -> OCIRepository:
    """Parse an OCIRepository; raises ``SpecError`` (``UnsupportedField``) naming the field
    and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=API_VERSIONS
    )
    try:
        return _parse(spec, namespace, name, generation, annotation(obj, REQUESTED_AT))
    except SpecError as exc:
        raise exc.about(subject) from None


def _parse(
    spec: Fields, namespace: str, name: str, generation: int, requested_at: str | None
) -> OCIRepository:
    _refuse_unsupported(spec)
    url = spec.need_string("url")
    try:
        parse_oci_reference(url)
    except InvalidSource as exc:
        raise SpecError(spec.at("url"), exc.message) from None
    interval = spec.need_duration("interval")
    timeout = spec.duration("timeout")
    secret = spec.obj("secretRef")
    secret_name = secret.string("name", required=spec.present("secretRef"))
    secret.finish()
    ref = _ref(spec.obj("ref"))
    selector = _layer_selector(spec) if spec.present("layerSelector") else None
    spec.raw("layerSelector")
    insecure = spec.boolean("insecure")
    ignore = spec.string("ignore")
    suspend = spec.boolean("suspend")
    spec.finish()
    return OCIRepository(
        namespace=namespace,
        name=name,
        generation=generation,
        url=url.strip(),
        ref=ref,
        layer_selector=selector,
        secret_ref=secret_name or None,
        insecure=insecure,
        interval=interval,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        suspend=suspend,
        ignore=ignore,
        requested_at=requested_at,
    )


def _ref(ref: Fields) -> OCIRef:
    tag = ref.string("tag", pattern=_TAG) or ""
    semver = ref.string("semver") or ""
    digest = ref.string("digest", pattern=_DIGEST) or ""
    if ref.present("semverFilter"):
        ref.raw("semverFilter")
        raise UnsupportedField(
            ref.at("semverFilter"), "tag filters are not implemented by gitsail yet"
        )
    ref.finish()
    if len(semver) > 256:
        raise SpecError(ref.at("semver"), f"too long: {shown(semver)}")
    if digest:
        return OCIRef(digest=digest)
    if semver:
        return OCIRef(semver=semver)
    return OCIRef(tag=tag or DEFAULT_TAG)


def _layer_selector(spec: Fields) -> LayerSelector:
    block = spec.obj("layerSelector")
    media_type = block.string("mediaType", pattern=_MEDIA_TYPE) or ""
    operation = block.choice("operation", ("extract", "copy"), "extract")
    block.finish()
    return LayerSelector(media_type=media_type, operation=operation)


def _refuse_unsupported(spec: Fields) -> None:
    for field, why in (
        ("verify", "signature verification (cosign, notation) is not implemented by gitsail yet"),
        ("certSecretRef", "custom CAs and client certificates are not implemented by gitsail yet"),
        ("proxySecretRef", "proxies are not implemented by gitsail yet"),
        (
            "serviceAccountName",
            "image pull secrets of a ServiceAccount are not read by gitsail yet",
        ),
    ):
        if spec.present(field):
            spec.raw(field)
            raise UnsupportedField(spec.at(field), why)
    provider = spec.choice("provider", ("generic", "aws", "azure", "gcp"), "generic")
    if provider != "generic":
        raise UnsupportedField(
            spec.at("provider"),
            f"provider {provider} (workload identity) is not implemented by gitsail yet; use "
            "generic with a secretRef",
        )
