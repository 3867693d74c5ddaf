"""Flux's ``HelmRepository`` (``source.toolkit.fluxcd.io/v1``, and the deprecated ``v1beta2``
served with the same schema): parse a spec into a frozen ``HelmRepository`` record.

Flux's rules, as its documentation states them (source-controller
``docs/spec/v1/helmrepositories.md``):

- ``spec.url`` (required): an ``http(s)://`` repository whose ``index.yaml`` is fetched, or
  with ``spec.type: oci`` an ``oci://`` registry prefix that HelmCharts pull from.
- ``spec.interval`` (default ``1m``) and ``spec.timeout`` (default ``1m``) are Go durations;
  both are ignored for ``type: oci``, which has no artifact and is not polled.
- ``spec.secretRef.name``: a Secret in the same namespace with ``username``/``password``
  (and, deprecated, TLS ``certFile``/``keyFile``/``caFile``); ``spec.certSecretRef.name``: a
  Secret with ``tls.crt``/``tls.key``/``ca.crt``. ``spec.passCredentials`` sends the
  credentials to chart hosts other than the repository's own.
- ``spec.insecure`` (OCI only: plain HTTP to the registry), ``spec.suspend``.

Refused with a message: ``provider`` other than ``generic`` (cloud workload identity is not
implemented), ``v1beta2``'s ``accessFrom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields
from gitsail.kinds.errors import SpecError, UnsupportedField

__all__ = [
    "API_VERSIONS",
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "GROUP",
    "KIND",
    "HelmRepository",
    "parse_helm_repository",
]

GROUP = "source.toolkit.fluxcd.io"
KIND = "HelmRepository"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 60.0
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"

_HTTP_URL = r"https?://[^\s]+"
_OCI_URL = r"oci://[^\s]+"


@dataclass(frozen=True)
class HelmRepository:
    """A parsed HelmRepository."""

    namespace: str
    name: str
    generation: int
    url: str
    oci: bool  # spec.type: oci
    interval: float
    timeout: float
    secret_ref: str | None = None
    cert_secret_ref: str | None = None
    pass_credentials: bool = False
    insecure: bool = False
    suspend: bool = False
    requested_at: str | None = None


def parse_helm_repository(obj: Any) -> HelmRepository:
    """Parse a HelmRepository object; raises ``SpecError`` (``UnsupportedField``) naming the
    field and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=API_VERSIONS
    )
    try:
        return _parse(spec, namespace, name, generation, annotation(obj, REQUESTED_AT))
    except SpecError as exc:
        raise exc.about(subject) from None


def _parse(
    spec: Fields, namespace: str, name: str, generation: int, requested_at: str | None
) -> HelmRepository:
    if spec.present("accessFrom"):
        spec.raw("accessFrom")
        raise UnsupportedField(
            spec.at("accessFrom"),
            "cross-namespace access lists (v1beta2) are not implemented by gitsail",
        )
    provider = spec.choice("provider", ("generic", "aws", "azure", "gcp"), "generic")
    if provider != "generic":
        raise UnsupportedField(
            spec.at("provider"),
            f"provider {provider} (cloud workload identity) is not implemented by gitsail yet; "
            "use generic with a secretRef",
        )
    oci = spec.choice("type", ("default", "oci"), "default") == "oci"
    url = spec.need_string("url", pattern=_OCI_URL if oci else _HTTP_URL)
    interval = spec.duration("interval")
    timeout = spec.duration("timeout")
    secret_ref = _local_ref(spec, "secretRef")
    cert_secret_ref = _local_ref(spec, "certSecretRef")
    pass_credentials = spec.boolean("passCredentials")
    insecure = spec.boolean("insecure")
    suspend = spec.boolean("suspend")
    spec.finish()
    return HelmRepository(
        namespace=namespace,
        name=name,
        generation=generation,
        url=url,
        oci=oci,
        interval=interval or DEFAULT_INTERVAL,
        timeout=timeout or DEFAULT_TIMEOUT,
        secret_ref=secret_ref,
        cert_secret_ref=cert_secret_ref,
        pass_credentials=pass_credentials,
        insecure=insecure,
        suspend=suspend,
        requested_at=requested_at,
    )


def _local_ref(spec: Fields, field: str) -> str | None:
    ref = spec.obj(field)
    name = ref.string("name", required=spec.present(field))
    ref.finish()
    return name or None
