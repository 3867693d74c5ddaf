"""Flux's ``HelmRelease`` (``helm.toolkit.fluxcd.io/v2``, and the deprecated ``v2beta1`` /
``v2beta2`` served with the same schema): parse a spec into frozen records.

Flux's rules, as helm-controller's documentation states them (``docs/spec/v2/helmreleases.md``):

- One of ``spec.chart`` (a template for a ``HelmChart`` that the release makes, named
  ``<namespace>-<name>`` in the namespace of ``chart.spec.sourceRef``) or ``spec.chartRef``
  (a ``HelmChart`` or ``OCIRepository`` whose artifact is the chart) must be set, not both.
  ``chart.spec.version`` defaults to ``*``; ``chart.spec.sourceRef.namespace`` to the
  release's namespace.
- ``releaseName`` defaults to ``[<targetNamespace>-]<name>``; when that is over 53
  characters it is shortened to its first 40 characters, ``-`` and the first 12 hex digits
  of its SHA-256.
- ``targetNamespace`` and ``storageNamespace`` default to the HelmRelease's namespace.
  Departure (the ``helm`` binary keeps a release in the namespace it deploys to): the
  storage namespace defaults to the target namespace, and a different one is refused.
- ``maxHistory`` defaults to 5, ``timeout`` to 5m; ``install.remediation.retries`` and
  ``upgrade.remediation.retries`` to 0 (a negative number retries for ever);
  ``upgrade.remediation.remediateLastFailure`` defaults to ``retries > 0``, its
  ``strategy`` to ``rollback``; ``uninstall.deletionPropagation`` to ``background``;
  ``install.crds`` and ``upgrade.crds`` to ``Create`` (``CreateReplace`` is refused).
- ``dependsOn[].namespace`` defaults to the release's namespace; beyond Flux an item may say
  ``kind: Kustomization`` or ``kind: Application``.
- ``valuesFrom`` items: ``kind`` ConfigMap or Secret, ``valuesKey`` defaults to
  ``values.yaml``; ``targetPath`` is a Helm ``--set`` path (see ``flux_helmrelease_values``).

Deprecated fields of ``v2beta1`` are mapped, each with a warning (``HelmRelease.deprecations``,
sent as a Warning Event by the reconciler): ``chart.spec.valuesFile`` → ``valuesFiles``,
``install.skipCRDs`` / ``upgrade`` ``skipCRDs`` → ``crds: Skip`` (``Create`` when false),
``spec.valuesFile`` (never honoured by Flux either) is refused.

``postRenderers`` (kustomize ``patches`` and ``images``, in order) and ``commonMetadata``
are applied by gitsail's post-renderer (``helm_postrender``) before the owner labels.

``spec.kubeConfig.secretRef`` releases on another cluster (``argo_cluster``); its
``configMapRef`` is refused.

Refused with a message (not implemented yet): ``chart.spec.verify``,
``healthCheckExprs``, ``test.filters``, ``dependsOn[].readyExpr``, ``install``/``upgrade``
``strategy``, ``crds: CreateReplace``, a ``chart.spec.sourceRef`` other than
``HelmRepository`` or ``GitRepository``, ``chartRef`` of kind ``ExternalArtifact``,
``persistentClient: false`` and ``upgrade.preserveValues`` (non-declarative).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.argo_cluster import kube_config_ref
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_kustomization import _image, _patch
from gitsail.kinds.flux_kustomization_build import kustomize_options
from gitsail.kinds.records import (
    CommonMetadata,
    Dependency,
    ImageOverride,
    ObjectRef,
    Patch,
    PatchTarget,
    RenderSpec,
)

__all__ = [
    "API_VERSIONS",
    "GROUP",
    "KIND",
    "ChartTemplate",
    "DriftDetection",
    "DriftIgnore",
    "HelmRelease",
    "InstallOptions",
    "PostRenderer",
    "Remediation",
    "RollbackOptions",
    "TestOptions",
    "UninstallOptions",
    "UpgradeOptions",
    "ValuesReference",
    "chart_name",
    "default_release_name",
    "parse_helmrelease",
    "post_render_config",
    "post_renderers_digest",
]

GROUP = "helm.toolkit.fluxcd.io"
KIND = "HelmRelease"
API_VERSIONS = (f"{GROUP}/v2", f"{GROUP}/v2beta2", f"{GROUP}/v2beta1")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"
RELEASE_NAME_MAX = 53
DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_HISTORY = 5

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CHART_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,250}")
_CHART_SOURCES = ("HelmRepository", "GitRepository", "Bucket")
_CHART_REF_KINDS = ("OCIRepository", "HelmChart", "ExternalArtifact")
_DEPENDENCY_KINDS = ("HelmRelease", "Kustomization", "Application")
_CRDS = ("Skip", "Create", "CreateReplace")
_PROPAGATION = ("background", "foreground", "orphan")
_DRIFT_MODES = ("disabled", "enabled", "warn")


@dataclass(frozen=True)
class ChartTemplate:
    """``spec.chart``: the HelmChart this release makes (``<ns>-<name>`` in ``source``'s
    namespace)."""

    chart: str
    version: str
    source: ObjectRef
    interval: float | None = None
    values_files: tuple[str, ...] = ()
    ignore_missing_values_files: bool = False
    reconcile_strategy: str = "ChartVersion"
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ValuesReference:
    """One ``valuesFrom`` item, in the release's namespace."""

    kind: str  # ConfigMap | Secret
    name: str
    values_key: str = "values.yaml"
    target_path: str | None = None
    optional: bool = False
    literal: bool = False


@dataclass(frozen=True)
class Remediation:
    """What to do when an install or upgrade fails: ``retries`` more attempts (negative:
    for ever), remediating between them with ``strategy``."""

    retries: int = 0
    ignore_test_failures: bool | None = None  # None: spec.test.ignoreFailures
    remediate_last_failure: bool = False
    strategy: str = "rollback"  # upgrades only; installs are always uninstalled

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` attempts used every retry."""
        return self.retries >= 0 and failures > self.retries


@dataclass(frozen=True)
class InstallOptions:
    timeout: float
    remediation: Remediation = Remediation(strategy="uninstall")
    crds: str = "Create"
    create_namespace: bool = False
    replace: bool = False
    disable_wait: bool = False
    disable_wait_for_jobs: bool = False
    disable_hooks: bool = False
    disable_openapi_validation: bool = False
    disable_schema_validation: bool = False
    disable_take_ownership: bool = False


@dataclass(frozen=True)
class UpgradeOptions:
    timeout: float
    remediation: Remediation = Remediation()
    crds: str = "Create"
    reinstall_on_chart_name_change: bool = True  # chartNameChangeStrategy: Reinstall
    force: bool = False
    cleanup_on_fail: bool = False
    disable_wait: bool = False
    disable_wait_for_jobs: bool = False
    disable_hooks: bool = False
    disable_openapi_validation: bool = False
    disable_schema_validation: bool = False
    disable_take_ownership: bool = False


@dataclass(frozen=True)
class TestOptions:
    timeout: float
    enable: bool = False
    ignore_failures: bool = False


@dataclass(frozen=True)
class RollbackOptions:
    timeout: float
    disable_wait: bool = False
    disable_wait_for_jobs: bool = False
    disable_hooks: bool = False
    force: bool = False
    cleanup_on_fail: bool = False


@dataclass(frozen=True)
class UninstallOptions:
    timeout: float
    keep_history: bool = False
    disable_hooks: bool = False
    disable_wait: bool = False
    deletion_propagation: str = "background"


@dataclass(frozen=True)
class PostRenderer:
    """One ``postRenderers[].kustomize`` item: patches and images, applied in order."""

    patches: tuple[Patch, ...] = ()
    images: tuple[ImageOverride, ...] = ()


@dataclass(frozen=True)
class DriftIgnore:
    """JSON pointers ignored when comparing, for the objects ``target`` selects (all when
    ``None``; its fields are regular expressions, as in Flux)."""

    paths: tuple[str, ...]
    target: PatchTarget | None = None


@dataclass(frozen=True)
class DriftDetection:
    mode: str = "disabled"  # disabled | enabled (correct) | warn (report only)
    ignore: tuple[DriftIgnore, ...] = ()


@dataclass(frozen=True)
class HelmRelease:
    """A parsed HelmRelease. ``values_json`` is the inline values as canonical JSON (so the
    record stays hashable); ``values()`` parses it."""

    namespace: str
    name: str
    generation: int
    interval: float
    release_name: str
    target_namespace: str
    storage_namespace: str
    chart: ChartTemplate | None
    chart_ref: ObjectRef | None
    install: InstallOptions
    upgrade: UpgradeOptions
    test: TestOptions
    rollback: RollbackOptions
    uninstall: UninstallOptions
    timeout: float = DEFAULT_TIMEOUT
    max_history: int = DEFAULT_MAX_HISTORY
    values_json: str = "{}"
    values_from: tuple[ValuesReference, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    drift: DriftDetection = DriftDetection()
    post_renderers: tuple[PostRenderer, ...] = ()
    common_metadata: CommonMetadata | None = None
    suspend: bool = False
    service_account_name: str | None = None
    kube_config: tuple[str, str] | None = None  # spec.kubeConfig.secretRef (name, key)
    requested_at: str | None = None
    force_at: str | None = None
    reset_at: str | None = None
    deprecations: tuple[str, ...] = field(default=())

    def values(self) -> dict[str, Any]:
        loaded = json.loads(self.values_json)
        return loaded if isinstance(loaded, dict) else {}

    @property
    def chart_object(self) -> ObjectRef:
        """The source object whose artifact is the chart: the HelmChart this release makes
        (``spec.chart``) or the one ``spec.chartRef`` names."""
        if self.chart_ref is not None:
            return self.chart_ref
        assert self.chart is not None  # parse_helmrelease guarantees one of the two
        return ObjectRef(
            kind="HelmChart",
            name=chart_name(self.namespace, self.name),
            namespace=self.chart.source.namespace,
        )


def chart_name(namespace: str, name: str) -> str:
    """The HelmChart Flux makes for a release: ``<namespace>-<name>``."""
    return f"{namespace}-{name}"


def default_release_name(name: str, target_namespace: str | None) -> str:
    """``[<targetNamespace>-]<name>``, shortened as Flux does when over 53 characters."""
    full = f"{target_namespace}-{name}" if target_namespace else name
    if len(full) <= RELEASE_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()
    return f"{full[:40]}-{digest[:12]}"


def parse_helmrelease(obj: Any) -> HelmRelease:
    """Parse a HelmRelease object; raises ``SpecError`` (``UnsupportedField``) naming the
    field and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=API_VERSIONS
    )
    deprecations: list[str] = []
    try:
        kube_config = kube_config_ref(spec)
        _refuse_unsupported(spec)
        interval = spec.need_duration("interval")
        timeout = spec.duration("timeout")
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        chart, chart_ref = _chart(spec, namespace, deprecations)
        target_namespace = spec.string("targetNamespace", pattern=_DNS_LABEL) or None
        release_name = spec.string("releaseName") or default_release_name(name, target_namespace)
        if len(release_name) > RELEASE_NAME_MAX or not _RELEASE_NAME.fullmatch(release_name):
            raise SpecError(
                spec.at("releaseName"),
                f"{shown(release_name)} is not a valid Helm release name (lowercase letters, "
                "digits, '-' and '.', at most 53 characters)",
            )
        target = target_namespace or namespace
        storage = spec.string("storageNamespace", pattern=_DNS_LABEL) or target
        if storage != target:
            raise UnsupportedField(
                spec.at("storageNamespace"),
                f"gitsail keeps a release in the namespace it deploys to (as the helm CLI "
                f"does); set it to {shown(target)} or remove it",
            )
        max_history = _integer(spec, "maxHistory", DEFAULT_MAX_HISTORY, minimum=0)
        test = _test(spec.obj("test"), timeout)
        install = _install(spec.obj("install"), timeout, deprecations)
        upgrade = _upgrade(spec.obj("upgrade"), timeout, deprecations)
        rollback = _rollback(spec.obj("rollback"), timeout)
        uninstall = _uninstall(spec.obj("uninstall"), timeout)
        values = spec.raw("values")
        if values is not None and not isinstance(values, Mapping):
            raise SpecError(spec.at("values"), f"expected an object, got {shown(values)}")
        values_from = tuple(_values_reference(item) for item in spec.items("valuesFrom"))
        dependencies = tuple(_dependency(item, namespace) for item in spec.items("dependsOn"))
        drift = _drift(spec.obj("driftDetection"))
        post_renderers = tuple(_post_renderer(item) for item in spec.items("postRenderers"))
        common = None
        if spec.present("commonMetadata"):
            meta = spec.obj("commonMetadata")
            common = CommonMetadata(
                labels=meta.string_map("labels"), annotations=meta.string_map("annotations")
            )
            meta.finish()
        suspend = spec.boolean("suspend")
        account = spec.string("serviceAccountName", pattern=_DNS_SUBDOMAIN) or None
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return HelmRelease(
        namespace=namespace,
        name=name,
        generation=generation,
        interval=interval,
        release_name=release_name,
        target_namespace=target,
        storage_namespace=storage,
        chart=chart,
        chart_ref=chart_ref,
        install=install,
        upgrade=upgrade,
        test=test,
        rollback=rollback,
        uninstall=uninstall,
        timeout=timeout,
        max_history=max_history,
        values_json=json.dumps(values or {}, sort_keys=True, separators=(",", ":")),
        values_from=values_from,
        dependencies=dependencies,
        drift=drift,
        post_renderers=post_renderers,
        common_metadata=common,
        suspend=suspend,
        service_account_name=account,
        kube_config=kube_config,
        requested_at=annotation(obj, REQUESTED_AT),
        force_at=annotation(obj, FORCE_AT),
        reset_at=annotation(obj, RESET_AT),
        deprecations=tuple(f"{subject}: {d}" for d in deprecations),
    )


def _refuse_unsupported(spec: Fields) -> None:
    for name, why in (
        ("healthCheckExprs", "CEL health checks are not implemented for HelmReleases yet"),
        ("waitStrategy", "wait strategies are not implemented by gitsail yet (helm's wait)"),
        ("postRenderStrategy", "post-render strategies are not implemented (Helm 3: nohooks)"),
        ("valuesFile", "removed from the HelmRelease API: use spec.chart.spec.valuesFiles"),
    ):
        if spec.present(name):
            spec.raw(name)
            raise UnsupportedField(spec.at(name), why)
    if spec.raw("persistentClient") is False:
        raise UnsupportedField(
            spec.at("persistentClient"), "gitsail runs helm as a new process every time"
        )


def _integer(fields: Fields, name: str, default: int, *, minimum: int | None = None) -> int:
    value = fields.raw(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(fields.at(name), f"expected an integer, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise SpecError(fields.at(name), f"must be at least {minimum}, got {value}")
    if abs(value) > 2**31:
        raise SpecError(fields.at(name), f"out of range: {value}")
    return value


def _chart(
    spec: Fields, namespace: str, deprecations: list[str]
) -> tuple[ChartTemplate | None, ObjectRef | None]:
    has_chart, has_ref = spec.present("chart"), spec.present("chartRef")
    if has_chart == has_ref:
        spec.raw("chart")
        spec.raw("chartRef")
        raise SpecError("spec", "exactly one of spec.chart and spec.chartRef must be set")
    if has_ref:
        ref = spec.obj("chartRef")
        kind = ref.need_string("kind")
        if kind not in _CHART_REF_KINDS:
            raise SpecError(
                ref.at("kind"), f"{shown(kind)} is not one of {', '.join(_CHART_REF_KINDS)}"
            )
        if kind == "ExternalArtifact":
            raise UnsupportedField(
                ref.at("kind"), "ExternalArtifact sources are not implemented by gitsail yet"
            )
        chart_ref = ObjectRef(
            kind=kind,
            name=ref.need_string("name", pattern=_DNS_SUBDOMAIN),
            namespace=ref.string("namespace", pattern=_DNS_LABEL) or namespace,
            api_version=ref.string("apiVersion") or None,
        )
        ref.finish()
        return None, chart_ref
    chart = spec.obj("chart")
    if chart.present("kind"):
        chart.raw("kind")
        raise UnsupportedField(
            chart.at("kind"), "chart templates of another kind than HelmChart are not implemented"
        )
    meta = chart.obj("metadata")
    labels, annotations = meta.string_map("labels"), meta.string_map("annotations")
    meta.finish()
    body = chart.obj("spec")
    if body.present("verify"):
        body.raw("verify")
        raise UnsupportedField(
            body.at("verify"), "chart signature verification is not implemented by gitsail yet"
        )
    name = body.need_string("chart")
    if not _CHART_NAME.fullmatch(name) and "/" not in name:
        raise SpecError(body.at("chart"), f"invalid chart name {shown(name)}")
    version = (body.string("version") or "*").strip() or "*"
    source = body.obj("sourceRef")
    kind = source.need_string("kind")
    if kind not in _CHART_SOURCES:
        raise SpecError(
            source.at("kind"), f"{shown(kind)} is not one of {', '.join(_CHART_SOURCES)}"
        )
    if kind == "Bucket":
        raise UnsupportedField(source.at("kind"), "Bucket sources are not implemented by gitsail")
    source_ref = ObjectRef(
        kind=kind,
        name=source.need_string("name", pattern=_DNS_SUBDOMAIN),
        namespace=source.string("namespace", pattern=_DNS_LABEL) or namespace,
        api_version=source.string("apiVersion") or None,
    )
    source.finish()
    values_files = body.strings("valuesFiles")
    legacy = body.string("valuesFile")
    if legacy:
        deprecations.append(
            "spec.chart.spec.valuesFile is deprecated, use spec.chart.spec.valuesFiles"
        )
        values_files = (legacy, *values_files)
    template = ChartTemplate(
        chart=name,
        version=version,
        source=source_ref,
        interval=body.duration("interval"),
        values_files=values_files,
        ignore_missing_values_files=body.boolean("ignoreMissingValuesFiles"),
        reconcile_strategy=body.choice(
            "reconcileStrategy", ("ChartVersion", "Revision"), "ChartVersion"
        ),
        labels=labels,
        annotations=annotations,
    )
    body.finish()
    chart.finish()
    return template, None


def _remediation(fields: Fields, *, upgrade: bool) -> Remediation:
    retries = _integer(fields, "retries", 0)
    last = fields.raw("remediateLastFailure")
    if last is not None and not isinstance(last, bool):
        raise SpecError(
            fields.at("remediateLastFailure"), f"expected true or false, got {shown(last)}"
        )
    ignore = fields.raw("ignoreTestFailures")
    if ignore is not None and not isinstance(ignore, bool):
        raise SpecError(
            fields.at("ignoreTestFailures"), f"expected true or false, got {shown(ignore)}"
        )
    strategy = fields.choice("strategy", ("rollback", "uninstall"), "rollback")
    if not upgrade and fields.present("strategy"):
        raise SpecError(fields.at("strategy"), "only upgrades have a remediation strategy")
    fields.finish()
    return Remediation(
        retries=retries,
        ignore_test_failures=ignore,
        # Flux: upgrades remediate the last failure by default when they retry at all.
        remediate_last_failure=bool(last) if last is not None else (upgrade and retries != 0),
        strategy=strategy if upgrade else "uninstall",
    )


def _crds(fields: Fields, deprecations: list[str], what: str) -> str:
    crds = fields.choice("crds", _CRDS, "")
    skip = fields.raw("skipCRDs")
    if skip is not None:
        if not isinstance(skip, bool):
            raise SpecError(fields.at("skipCRDs"), f"expected true or false, got {shown(skip)}")
        deprecations.append(f"spec.{what}.skipCRDs is deprecated, use spec.{what}.crds")
        if not crds:
            crds = "Skip" if skip else "Create"
    if crds == "CreateReplace":
        raise UnsupportedField(
            fields.at("crds"),
            "CreateReplace is not implemented by gitsail yet (helm never replaces the CRDs "
            "of crds/): use Create or Skip",
        )
    return crds or "Create"


def _refuse_strategy(fields: Fields) -> None:
    if fields.present("strategy"):
        fields.raw("strategy")
        raise UnsupportedField(
            fields.at("strategy"),
            "release strategies are not implemented by gitsail yet (RemediateOnFailure)",
        )


def _install(fields: Fields, timeout: float, deprecations: list[str]) -> InstallOptions:
    _refuse_strategy(fields)
    fields.boolean("serverSideApply")  # helm 3 applies client-side; accepted, no effect
    options = InstallOptions(
        timeout=fields.duration("timeout") or timeout,
        remediation=_remediation(fields.obj("remediation"), upgrade=False),
        crds=_crds(fields, deprecations, "install"),
        create_namespace=fields.boolean("createNamespace"),
        replace=fields.boolean("replace"),
        disable_wait=fields.boolean("disableWait"),
        disable_wait_for_jobs=fields.boolean("disableWaitForJobs"),
        disable_hooks=fields.boolean("disableHooks"),
        disable_openapi_validation=fields.boolean("disableOpenAPIValidation"),
        disable_schema_validation=fields.boolean("disableSchemaValidation"),
        disable_take_ownership=fields.boolean("disableTakeOwnership"),
    )
    fields.finish()
    return options


def _upgrade(fields: Fields, timeout: float, deprecations: list[str]) -> UpgradeOptions:
    _refuse_strategy(fields)
    if fields.boolean("preserveValues"):
        raise UnsupportedField(
            fields.at("preserveValues"), "non-declarative values are not implemented by gitsail"
        )
    name_change = fields.choice(
        "chartNameChangeStrategy", ("Reinstall", "InPlaceUpdate"), "Reinstall"
    )
    fields.string("serverSideApply")
    options = UpgradeOptions(
        timeout=fields.duration("timeout") or timeout,
        remediation=_remediation(fields.obj("remediation"), upgrade=True),
        crds=_crds(fields, deprecations, "upgrade"),
        reinstall_on_chart_name_change=name_change == "Reinstall",
        force=fields.boolean("force"),
        cleanup_on_fail=fields.boolean("cleanupOnFail"),
        disable_wait=fields.boolean("disableWait"),
        disable_wait_for_jobs=fields.boolean("disableWaitForJobs"),
        disable_hooks=fields.boolean("disableHooks"),
        disable_openapi_validation=fields.boolean("disableOpenAPIValidation"),
        disable_schema_validation=fields.boolean("disableSchemaValidation"),
        disable_take_ownership=fields.boolean("disableTakeOwnership"),
    )
    fields.finish()
    return options


def _test(fields: Fields, timeout: float) -> TestOptions:
    if fields.present("filters"):
        fields.raw("filters")
        raise UnsupportedField(
            fields.at("filters"), "test filters are not implemented by gitsail yet"
        )
    options = TestOptions(
        timeout=fields.duration("timeout") or timeout,
        enable=fields.boolean("enable"),
        ignore_failures=fields.boolean("ignoreFailures"),
    )
    fields.finish()
    return options


def _rollback(fields: Fields, timeout: float) -> RollbackOptions:
    fields.boolean("recreate")  # deprecated by Flux, no effect
    fields.string("serverSideApply")
    options = RollbackOptions(
        timeout=fields.duration("timeout") or timeout,
        disable_wait=fields.boolean("disableWait"),
        disable_wait_for_jobs=fields.boolean("disableWaitForJobs"),
        disable_hooks=fields.boolean("disableHooks"),
        force=fields.boolean("force"),
        cleanup_on_fail=fields.boolean("cleanupOnFail"),
    )
    fields.finish()
    return options


def _uninstall(fields: Fields, timeout: float) -> UninstallOptions:
    options = UninstallOptions(
        timeout=fields.duration("timeout") or timeout,
        keep_history=fields.boolean("keepHistory"),
        disable_hooks=fields.boolean("disableHooks"),
        disable_wait=fields.boolean("disableWait"),
        deletion_propagation=fields.choice("deletionPropagation", _PROPAGATION, "background"),
    )
    fields.finish()
    return options


def _values_reference(item: Fields) -> ValuesReference:
    kind = item.choice("kind", ("ConfigMap", "Secret"), "")
    if not kind:
        raise SpecError(item.at("kind"), "required (ConfigMap or Secret)")
    key = item.string("valuesKey") or "values.yaml"
    if len(key) > 253 or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise SpecError(item.at("valuesKey"), f"invalid data key {shown(key)}")
    target_path = item.string("targetPath") or None
    if target_path is not None and (len(target_path) > 250 or "\x00" in target_path):
        raise SpecError(item.at("targetPath"), f"invalid path {shown(target_path)}")
    reference = ValuesReference(
        kind=kind,
        name=item.need_string("name", pattern=_DNS_SUBDOMAIN),
        values_key=key,
        target_path=target_path,
        optional=item.boolean("optional"),
        literal=item.boolean("literal"),
    )
    item.finish()
    return reference


def _dependency(item: Fields, namespace: str) -> Dependency:
    kind = item.choice("kind", _DEPENDENCY_KINDS, "HelmRelease")
    item.string("apiVersion")  # informative, the kind decides
    if item.present("readyExpr"):
        item.raw("readyExpr")
        raise UnsupportedField(
            item.at("readyExpr"), "readyExpr is not implemented for HelmReleases yet"
        )
    dependency = Dependency(
        kind=kind,
        namespace=item.string("namespace", pattern=_DNS_LABEL) or namespace,
        name=item.need_string("name", pattern=_DNS_SUBDOMAIN),
    )
    item.finish()
    return dependency


def _drift(fields: Fields) -> DriftDetection:
    mode = fields.choice("mode", _DRIFT_MODES, "disabled")
    ignore = []
    for item in fields.items("ignore"):
        paths = item.strings("paths")
        if not paths:
            raise SpecError(item.at("paths"), "required (JSON pointers)")
        for i, pointer in enumerate(paths):
            if pointer and not pointer.startswith("/"):
                raise SpecError(f"{item.at('paths')}[{i}]", f"not a JSON pointer: {shown(pointer)}")
        target = None
        if item.present("target"):
            t = item.obj("target")
            target = PatchTarget(
                group=t.string("group") or None,
                version=t.string("version") or None,
                kind=t.string("kind") or None,
                name=t.string("name") or None,
                namespace=t.string("namespace") or None,
                label_selector=t.string("labelSelector") or None,
                annotation_selector=t.string("annotationSelector") or None,
            )
            t.finish()
            for key in ("group", "version", "kind", "name", "namespace"):
                pattern = getattr(target, key)
                if pattern is not None:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise SpecError(t.at(key), f"invalid regular expression: {exc}") from None
        item.raw("target")
        item.finish()
        ignore.append(DriftIgnore(paths=paths, target=target))
    fields.finish()
    return DriftDetection(mode=mode, ignore=tuple(ignore))


def _post_renderer(item: Fields) -> PostRenderer:
    body = item.obj("kustomize")
    for legacy in ("patchesStrategicMerge", "patchesJson6902"):
        if body.present(legacy):
            body.raw(legacy)
            raise UnsupportedField(body.at(legacy), "removed from the HelmRelease API: use patches")
    renderer = PostRenderer(
        patches=tuple(_patch(p) for p in body.items("patches")),
        images=tuple(_image(i) for i in body.items("images")),
    )
    body.finish()
    item.finish()
    return renderer


def post_render_config(hr: HelmRelease) -> dict[str, Any]:
    """``postRenderers`` and ``commonMetadata`` as ``helm_postrender`` reads them."""
    steps = []
    for renderer in hr.post_renderers:
        options = kustomize_options(RenderSpec(path="", patches=renderer.patches))
        images = [
            {
                k: v
                for k, v in (
                    ("name", i.name),
                    ("newName", i.new_name),
                    ("newTag", i.new_tag),
                    ("digest", i.digest),
                )
                if v
            }
            for i in renderer.images
        ]
        steps.append({"patches": list(options.patches), "images": images})
    common = hr.common_metadata
    config: dict[str, Any] = {"steps": steps} if steps else {}
    if common is not None and common.labels:
        config["labels"] = dict(common.labels)
    if common is not None and common.annotations:
        config["annotations"] = dict(common.annotations)
    return config


def post_renderers_digest(hr: HelmRelease) -> str:
    """Flux's ``observedPostRenderersDigest``: "" when there are none."""
    config = post_render_config(hr)
    if not config:
        return ""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
