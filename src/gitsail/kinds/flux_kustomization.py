"""Flux's ``Kustomization`` (``kustomize.toolkit.fluxcd.io/v1``, and the deprecated
``v1beta2`` served with the same schema): parse a spec into kind-neutral records.

Flux's rules, as its documentation states them (kustomize-controller
``docs/spec/v1/kustomizations.md``):

- ``spec.sourceRef`` (required): ``kind`` and ``name``; ``namespace`` defaults to the
  Kustomization's own.
- ``spec.prune`` and ``spec.interval`` are required. ``spec.retryInterval`` and
  ``spec.timeout`` default to the interval. ``spec.deletionPolicy`` defaults to
  ``MirrorPrune``.
- ``spec.path`` is relative to the artifact's root; empty is the root. It never leaves the
  artifact (Flux joins it securely; gitsail refuses a path that climbs out).
- ``spec.dependsOn[].namespace`` defaults to the Kustomization's namespace. Beyond Flux, an
  item may say ``kind: Application`` (and ``apiVersion``) to wait for an Argo CD Application.
- ``spec.postBuild``: substitution runs only when it defines at least one variable or one
  source (``RenderSpec.substitution``); ``substitute`` wins over ``substituteFrom``, and a
  later source over an earlier one (``gitsail.kinds.flux_substitute``).
- ``spec.decryption``: ``provider: sops`` with an optional ``secretRef.name`` (a Secret in the
  Kustomization's namespace whose ``*.agekey`` entries hold age identities); decryption
  itself is ``gitsail.kinds.flux_decryption``. Other providers and ``serviceAccountName``
  (cloud KMS workload identity) are refused.
- ``spec.kubeConfig.secretRef`` (``key``, default ``value`` then ``value.yaml``) names the
  kubeconfig Secret of another cluster (``gitsail.kinds.argo_cluster.read_flux_kubeconfig``).

Refused with a message (not implemented yet): ``kubeConfig.configMapRef`` (workload
identity), a ``sourceRef`` other than a ``GitRepository`` or an ``OCIRepository`` (read from
its artifact, ``flux_source_artifact``), and ``v1beta2``'s ``patchesStrategicMerge`` /
``patchesJson6902`` (removed in ``v1``: move them to ``spec.patches``). ``v1beta2``'s
``validation`` is accepted and has no effect, as in Flux
since it became deprecated (server-side apply validates).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.argo_cluster import kube_config_ref
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.records import (
    CommonMetadata,
    DeletionPolicy,
    Dependency,
    HealthCheck,
    HealthCheckExpr,
    ImageOverride,
    ObjectRef,
    Patch,
    PatchTarget,
    RenderSpec,
    SubstituteSource,
    SyncPolicy,
)

__all__ = [
    "API_VERSIONS",
    "GROUP",
    "KIND",
    "VARIABLE_NAME",
    "Decryption",
    "Kustomization",
    "parse_kustomization",
]

GROUP = "kustomize.toolkit.fluxcd.io"
KIND = "Kustomization"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
# Flux validates variable names with ^[_[:alpha:]][_[:alpha:][:digit:]]*$ (ASCII classes).
VARIABLE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")

_SOURCE_KINDS = ("GitRepository", "OCIRepository", "Bucket", "ExternalArtifact")
_DEPENDENCY_KINDS = ("Kustomization", "Application")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"


@dataclass(frozen=True)
class Decryption:
    """``spec.decryption``: the provider (always ``sops``) and the key Secret, if any."""

    provider: str
    secret_ref: str | None = None


@dataclass(frozen=True)
class Kustomization:
    """A parsed Kustomization: identity, source, render options, policy and checks."""

    namespace: str
    name: str
    generation: int
    source: ObjectRef
    render: RenderSpec
    sync: SyncPolicy
    health_checks: tuple[HealthCheck, ...] = ()
    health_check_exprs: tuple[HealthCheckExpr, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    requested_at: str | None = None
    decryption: Decryption | None = None
    # spec.kubeConfig.secretRef: (Secret name, key; "" for value / value.yaml)
    kube_config: tuple[str, str] | None = None


def parse_kustomization(obj: Any) -> Kustomization:
    """Parse a Kustomization object; raises ``SpecError`` (``UnsupportedField``) naming the
    field and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=API_VERSIONS
    )
    try:
        kube_config = kube_config_ref(spec)
        _refuse_unsupported(spec)
        source = _source_ref(spec.obj("sourceRef"), namespace, required=True)
        render = _render(spec)
        sync = _sync(spec)
        health_checks = tuple(_health_check(item) for item in spec.items("healthChecks"))
        exprs = tuple(_health_expr(item) for item in spec.items("healthCheckExprs"))
        dependencies = tuple(_dependency(item, namespace) for item in spec.items("dependsOn"))
        spec.string("validation")  # deprecated in v1beta2; no effect in Flux either
        decryption = _decryption(spec) if spec.present("decryption") else None
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return Kustomization(
        namespace=namespace,
        name=name,
        generation=generation,
        source=source,
        render=render,
        sync=sync,
        health_checks=health_checks,
        health_check_exprs=exprs,
        dependencies=dependencies,
        requested_at=annotation(obj, REQUESTED_AT),
        decryption=decryption,
        kube_config=kube_config,
    )


def _refuse_unsupported(spec: Fields) -> None:
    for field, why in (
        ("patchesStrategicMerge", "removed in kustomize.toolkit.fluxcd.io/v1: use spec.patches"),
        ("patchesJson6902", "removed in kustomize.toolkit.fluxcd.io/v1: use spec.patches"),
    ):
        if spec.present(field):
            spec.raw(field)
            raise UnsupportedField(spec.at(field), why)


def _decryption(spec: Fields) -> Decryption:
    decryption = spec.obj("decryption")
    provider = decryption.need_string("provider")
    if provider != "sops":
        raise SpecError(decryption.at("provider"), f"{shown(provider)} is not one of sops")
    if decryption.present("serviceAccountName"):
        decryption.raw("serviceAccountName")
        raise UnsupportedField(
            decryption.at("serviceAccountName"),
            "cloud KMS workload identity is not implemented by gitsail (use age keys in secretRef)",
        )
    ref = decryption.obj("secretRef")
    name = ref.string("name", pattern=_DNS_SUBDOMAIN) or None
    ref.finish()
    decryption.finish()
    return Decryption(provider=provider, secret_ref=name)


def _source_ref(ref: Fields, namespace: str, *, required: bool) -> ObjectRef:
    if required and not ref.present("kind") and not ref.present("name"):
        raise SpecError(ref.path, "required (kind and name of a GitRepository)")
    kind = ref.need_string("kind")
    if kind not in _SOURCE_KINDS:
        raise SpecError(ref.at("kind"), f"{shown(kind)} is not one of {', '.join(_SOURCE_KINDS)}")
    if kind not in ("GitRepository", "OCIRepository"):
        raise UnsupportedField(
            ref.at("kind"),
            f"{kind} sources are not implemented by gitsail yet (use GitRepository or "
            "OCIRepository)",
        )
    name = ref.need_string("name", pattern=_DNS_SUBDOMAIN)
    source_ns = ref.string("namespace", pattern=_DNS_LABEL) or namespace
    api_version = ref.string("apiVersion") or None
    ref.finish()
    return ObjectRef(kind=kind, name=name, namespace=source_ns, api_version=api_version)


def _path(spec: Fields) -> str:
    raw = spec.string("path") or ""
    if "\x00" in raw:
        raise SpecError(spec.at("path"), "must not contain NUL")
    normal = posixpath.normpath("/" + raw.replace("\\", "/")).lstrip("/")
    # Flux joins the path under the artifact root; climbing out is refused, not clamped.
    depth = 0
    for part in raw.replace("\\", "/").split("/"):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            raise SpecError(spec.at("path"), f"must stay inside the artifact, got {shown(raw)}")
    return "" if normal == "." else normal


def _render(spec: Fields) -> RenderSpec:
    path = _path(spec)
    target_namespace = spec.string("targetNamespace", pattern=_DNS_LABEL) or None
    prefix = spec.string("namePrefix") or None
    suffix = spec.string("nameSuffix") or None
    for field, value in (("namePrefix", prefix), ("nameSuffix", suffix)):
        if value is not None and len(value) > 200:
            raise SpecError(spec.at(field), f"longer than 200 characters: {shown(value)}")
    images = tuple(_image(item) for item in spec.items("images"))
    patches = tuple(_patch(item) for item in spec.items("patches"))
    components = spec.strings("components")
    for i, component in enumerate(components):
        if posixpath.isabs(component) or "://" in component:
            raise SpecError(
                f"{spec.at('components')}[{i}]",
                f"must be a local relative path, got {shown(component)}",
            )
    ignore_missing = spec.boolean("ignoreMissingComponents")
    metadata = spec.obj("commonMetadata")
    common = None
    if spec.present("commonMetadata"):
        common = CommonMetadata(
            labels=metadata.string_map("labels"), annotations=metadata.string_map("annotations")
        )
    metadata.finish()
    post = spec.obj("postBuild")
    substitute = post.string_map("substitute")
    for key, _ in substitute:
        if not VARIABLE_NAME.fullmatch(key):
            raise SpecError(
                f"{post.at('substitute')}.{key}",
                "invalid variable name (letters, digits and _, not starting with a digit)",
            )
    sources = tuple(_substitute_source(item) for item in post.items("substituteFrom"))
    post.finish()
    return RenderSpec(
        path=path,
        target_namespace=target_namespace,
        name_prefix=prefix,
        name_suffix=suffix,
        images=images,
        patches=patches,
        components=components,
        ignore_missing_components=ignore_missing,
        common_metadata=common,
        substitute=substitute,
        substitute_from=sources,
        substitution=bool(substitute or sources),
    )


def _image(item: Fields) -> ImageOverride:
    image = ImageOverride(
        name=item.need_string("name"),
        new_name=item.string("newName") or None,
        new_tag=item.string("newTag") or None,
        digest=item.string("digest") or None,
    )
    item.finish()
    return image


def _patch(item: Fields) -> Patch:
    text = item.need_string("patch")
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
    item.raw("target")
    item.finish()
    return Patch(patch=text, target=target)


def _substitute_source(item: Fields) -> SubstituteSource:
    source = SubstituteSource(
        kind=item.choice("kind", ("ConfigMap", "Secret"), ""),
        name=item.need_string("name", pattern=_DNS_SUBDOMAIN),
        optional=item.boolean("optional"),
    )
    if not source.kind:
        raise SpecError(item.at("kind"), "required (ConfigMap or Secret)")
    item.finish()
    return source


def _sync(spec: Fields) -> SyncPolicy:
    interval = spec.need_duration("interval")
    retry = spec.duration("retryInterval")
    timeout = spec.duration("timeout")
    policy = spec.choice(
        "deletionPolicy", tuple(p.value for p in DeletionPolicy), DeletionPolicy.MIRROR_PRUNE.value
    )
    return SyncPolicy(
        prune=spec.boolean("prune", required=True),
        interval=interval,
        retry_interval=interval if retry is None else retry,
        timeout=interval if timeout is None else timeout,
        wait=spec.boolean("wait"),
        force=spec.boolean("force"),
        deletion_policy=DeletionPolicy(policy),
        suspend=spec.boolean("suspend"),
        service_account_name=spec.string("serviceAccountName", pattern=_DNS_SUBDOMAIN) or None,
    )


def _health_check(item: Fields) -> HealthCheck:
    check = HealthCheck(
        api_version=item.string("apiVersion") or None,
        kind=item.need_string("kind"),
        name=item.need_string("name"),
        namespace=item.string("namespace") or None,
    )
    item.finish()
    return check


def _health_expr(item: Fields) -> HealthCheckExpr:
    expr = HealthCheckExpr(
        api_version=item.need_string("apiVersion"),
        kind=item.need_string("kind"),
        current=item.need_string("current"),
        in_progress=item.string("inProgress") or None,
        failed=item.string("failed") or None,
    )
    item.finish()
    return expr


def _dependency(item: Fields, namespace: str) -> Dependency:
    kind = item.choice("kind", _DEPENDENCY_KINDS, "Kustomization")
    item.string("apiVersion")  # gitsail's extension: informative, the kind decides
    dependency = Dependency(
        kind=kind,
        namespace=item.string("namespace", pattern=_DNS_LABEL) or namespace,
        name=item.need_string("name", pattern=_DNS_SUBDOMAIN),
        ready_expr=item.string("readyExpr") or None,
    )
    item.finish()
    return dependency
