"""Flux's ``HelmChart`` (``source.toolkit.fluxcd.io/v1``, and the deprecated ``v1beta2``
served with the same schema): parse a spec into a frozen ``HelmChart`` record.

Flux's rules, as its documentation states them (source-controller
``docs/spec/v1/helmcharts.md``):

- ``spec.chart`` (required): the chart's name in a HelmRepository, or its directory in a
  GitRepository's artifact (``./charts/redis``).
- ``spec.version``: a semver range (Masterminds syntax: ``17.x`` is the highest 17 release
  that is not a pre-release) or an exact version; default ``*``. Ignored for Git sources,
  whose chart has the version its ``Chart.yaml`` says.
- ``spec.sourceRef``: ``kind`` HelmRepository or GitRepository (``Bucket`` is refused),
  ``name``, optional ``apiVersion``; always in the HelmChart's namespace.
- ``spec.valuesFiles``: files (relative to the chart for a HelmRepository, to the artifact's
  root for a GitRepository) merged in order, the later winning, to become the packaged
  chart's ``values.yaml``; ``spec.ignoreMissingValuesFiles`` skips the missing ones. The
  v1beta2 ``valuesFile`` is merged before them.
- ``spec.reconcileStrategy``: ``ChartVersion`` (default: a new artifact when the chart's
  version changes) or ``Revision`` (for Git sources, each new source revision: the version
  gets ``+<first 12 hex of the source digest>``).
- ``spec.interval`` (required), ``spec.suspend``.

Refused with a message: ``verify`` (signature verification is not implemented),
``v1beta2``'s ``accessFrom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.errors import SpecError, UnsupportedField

__all__ = [
    "API_VERSIONS",
    "GROUP",
    "KIND",
    "HelmChart",
    "parse_helm_chart",
]

GROUP = "source.toolkit.fluxcd.io"
KIND = "HelmChart"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
SOURCE_KINDS = ("HelmRepository", "GitRepository", "Bucket")
CHART_VERSION = "ChartVersion"
REVISION = "Revision"


@dataclass(frozen=True)
class HelmChart:
    """A parsed HelmChart."""

    namespace: str
    name: str
    generation: int
    chart: str
    version: str  # "*" when not set
    source_kind: str  # "HelmRepository" | "GitRepository"
    source_name: str
    interval: float
    values_files: tuple[str, ...] = ()
    ignore_missing_values_files: bool = False
    reconcile_strategy: str = CHART_VERSION
    suspend: bool = False
    requested_at: str | None = None


def parse_helm_chart(obj: Any) -> HelmChart:
    """Parse a HelmChart object; raises ``SpecError`` (``UnsupportedField``) naming the field
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
) -> HelmChart:
    for field, why in (
        ("verify", "chart signature verification (cosign/notation) is not implemented by gitsail"),
        ("accessFrom", "cross-namespace access lists (v1beta2) are not implemented by gitsail"),
    ):
        if spec.present(field):
            spec.raw(field)
            raise UnsupportedField(spec.at(field), why)
    chart = spec.need_string("chart")
    if len(chart) > 2048 or any(ord(c) < 32 for c in chart):
        raise SpecError(spec.at("chart"), f"invalid value {shown(chart)}")
    version = (spec.string("version") or "*").strip() or "*"
    if len(version) > 256:
        raise SpecError(spec.at("version"), f"too long: {shown(version)}")
    source = spec.obj("sourceRef")
    source_kind = source.need_string("kind")
    source_name = source.need_string("name")
    source.string("apiVersion")
    source.finish()
    if source_kind not in SOURCE_KINDS:
        raise SpecError(
            spec.at("sourceRef.kind"),
            f"{shown(source_kind)} is not one of {', '.join(SOURCE_KINDS)}",
        )
    if source_kind == "Bucket":
        raise UnsupportedField(
            spec.at("sourceRef.kind"),
            "Bucket sources are not implemented by gitsail; use a HelmRepository or a "
            "GitRepository",
        )
    values_files = spec.strings("valuesFiles")
    legacy = spec.string("valuesFile")
    if legacy:
        values_files = (legacy, *values_files)
    for i, path in enumerate(values_files):
        _check_relative(spec.at(f"valuesFiles[{i}]"), path)
    if source_kind == "GitRepository":
        _check_relative(spec.at("chart"), chart)
    ignore_missing = spec.boolean("ignoreMissingValuesFiles")
    strategy = spec.choice("reconcileStrategy", (CHART_VERSION, REVISION), CHART_VERSION)
    interval = spec.need_duration("interval")
    suspend = spec.boolean("suspend")
    spec.finish()
    return HelmChart(
        namespace=namespace,
        name=name,
        generation=generation,
        chart=chart,
        version=version,
        source_kind=source_kind,
        source_name=source_name,
        interval=interval,
        values_files=values_files,
        ignore_missing_values_files=ignore_missing,
        reconcile_strategy=strategy,
        suspend=suspend,
        requested_at=requested_at,
    )


def _check_relative(field: str, path: str) -> None:
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\")) or ".." in parts or "\x00" in path:
        raise SpecError(field, f"must be a relative path inside the source, got {shown(path)}")
