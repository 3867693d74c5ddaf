"""A HelmRelease's chart: the ``HelmChart`` it makes from ``spec.chart``, and the package.

As helm-controller does, a release with ``spec.chart`` owns a ``HelmChart`` named
``<namespace>-<name>`` in the namespace of ``chart.spec.sourceRef``, made from the template
(``chart``, ``version``, ``sourceRef``, ``interval`` — the template's, else the release's —
``valuesFiles``, ``reconcileStrategy``, the template's labels and annotations) with the field
manager ``helm-controller``. It carries the labels ``helm.toolkit.fluxcd.io/name`` and
``…/namespace`` so that gitsail deletes only a HelmChart it made, when the release is
deleted. A ``spec.chartRef`` names a ``HelmChart`` or ``OCIRepository`` the release only reads.

The chart is the source's ``status.artifact``: it must exist and be for the source's current
generation (``ArtifactFailed`` otherwise, retried: the source turning Ready wakes the
release). Its file is read from the controller's ``ArtifactStore`` (``local_path``), checked
against ``artifact.digest``, and its ``Chart.yaml`` read from the package (bounded: members,
sizes, YAML limits). Metadata is cached by digest and an unchanged package file is hashed
once, so an idle pass reads no file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitsail.kinds.flux_helmrelease import HelmRelease
from gitsail.kinds.records import ObjectRef
from gitsail.kinds.status import Transient
from gitsail.kube import Kube, NotFoundKind
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.boundedyaml import YAMLLimitError, load_document

__all__ = [
    "ARTIFACT_FAILED",
    "CHART_API_VERSION",
    "FIELD_MANAGER",
    "OWNER_NAME",
    "OWNER_NAMESPACE",
    "ChartPackage",
    "ChartSource",
    "desired_helmchart",
]

FIELD_MANAGER = "helm-controller"
CHART_API_VERSION = "source.toolkit.fluxcd.io/v1"
OCI_API_VERSION = "source.toolkit.fluxcd.io/v1"
OWNER_NAME = "helm.toolkit.fluxcd.io/name"
OWNER_NAMESPACE = "helm.toolkit.fluxcd.io/namespace"
ARTIFACT_FAILED = "ArtifactFailed"
_CHART_YAML_BYTES = 1 << 20
_CACHE = 256


@dataclass(frozen=True)
class ChartPackage:
    """The chart a release installs: its package file and what its Chart.yaml says."""

    path: Path
    name: str
    version: str
    app_version: str
    digest: str  # of the package, sha256:<hex>
    source: str  # "HelmChart/ns/name", as status.helmChart shows it (ns/name)
    revision: str  # what lastAttemptedRevision records: the chart version (OCI: +digest)


def _go_duration(seconds: float) -> str:
    whole = int(seconds)
    if whole == seconds and whole % 60 == 0:
        return f"{whole // 60}m0s" if whole % 3600 else f"{whole // 3600}h0m0s"
    return f"{seconds:g}s"


def desired_helmchart(hr: HelmRelease) -> Obj:
    """The HelmChart ``hr.chart`` describes (``hr.chart`` must be set)."""
    template = hr.chart
    assert template is not None
    target = hr.chart_object
    spec: dict[str, Any] = {
        "chart": template.chart,
        "version": template.version,
        "sourceRef": {"kind": template.source.kind, "name": template.source.name},
        "interval": _go_duration(template.interval if template.interval else hr.interval),
        "reconcileStrategy": template.reconcile_strategy,
    }
    if template.values_files:
        spec["valuesFiles"] = list(template.values_files)
    if template.ignore_missing_values_files:
        spec["ignoreMissingValuesFiles"] = True
    labels = {**dict(template.labels), OWNER_NAME: hr.name, OWNER_NAMESPACE: hr.namespace}
    metadata: dict[str, Any] = {
        "name": target.name,
        "namespace": target.namespace,
        "labels": labels,
    }
    if template.annotations:
        metadata["annotations"] = dict(template.annotations)
    return {
        "apiVersion": CHART_API_VERSION,
        "kind": "HelmChart",
        "metadata": metadata,
        "spec": spec,
    }


def owns_helmchart(hr_namespace: str, hr_name: str, chart: Obj) -> bool:
    labels = (chart.get("metadata") or {}).get("labels") or {}
    return labels.get(OWNER_NAME) == hr_name and labels.get(OWNER_NAMESPACE) == hr_namespace


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_subset(v, have.get(k)) for k, v in want.items())
    return bool(want == have)


class ChartSource:
    """Makes, finds and reads a release's chart (see the module docstring)."""

    def __init__(
        self, kube: Kube, artifacts: ArtifactStore, policy: Policy = DEFAULT_POLICY
    ) -> None:
        self.kube = kube
        self.artifacts = artifacts
        self.policy = policy
        self._meta: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        # package file -> ((size, mtime), digest): an unchanged file is not hashed again
        self._files: dict[str, tuple[tuple[int, int], str]] = {}

    async def ensure_template(self, hr: HelmRelease) -> Obj:
        """The release's HelmChart as it is now, applied first when it differs from the
        template (an unchanged one costs one GET)."""
        want = desired_helmchart(hr)
        ref = hr.chart_object
        live = await self._get(CHART_API_VERSION, "HelmChart", ref)
        if live is not None and not owns_helmchart(hr.namespace, hr.name, live):
            raise Transient(
                ARTIFACT_FAILED,
                f"HelmChart '{ref.namespace}/{ref.name}' exists and was not made by this "
                "HelmRelease; not changed",
            )
        if live is None or not _subset(
            {"spec": want["spec"], "metadata": {"labels": want["metadata"]["labels"]}}, live
        ):
            live = await self.kube.apply(want, field_manager=FIELD_MANAGER, force=True)
        return live

    async def delete_template(self, hr_namespace: str, hr_name: str, ref: ObjectRef) -> None:
        live = await self._get(CHART_API_VERSION, "HelmChart", ref)
        if live is None or not owns_helmchart(hr_namespace, hr_name, live):
            return
        uid = str((live.get("metadata") or {}).get("uid") or "")
        await self.kube.delete(
            CHART_API_VERSION,
            "HelmChart",
            ref.name,
            ref.namespace,
            propagation="Background",
            preconditions={"uid": uid},
        )

    async def _get(self, api_version: str, kind: str, ref: ObjectRef) -> Obj | None:
        try:
            return await self.kube.get(api_version, kind, ref.name, ref.namespace)
        except NotFoundKind:
            return None

    async def package(self, hr: HelmRelease, source: Obj | None = None) -> ChartPackage:
        """The chart package of the release's source object (read when not given)."""
        ref = hr.chart_object
        shown = f"{ref.kind} '{ref.namespace}/{ref.name}'"
        if source is None:
            api_version = CHART_API_VERSION if ref.kind == "HelmChart" else OCI_API_VERSION
            source = await self._get(api_version, ref.kind, ref)
        if source is None:
            raise Transient(ARTIFACT_FAILED, f"{shown} not found", retry_after=10.0)
        status = source.get("status") or {}
        generation = (source.get("metadata") or {}).get("generation")
        artifact = status.get("artifact")
        if not isinstance(artifact, Mapping) or not artifact.get("path"):
            raise Transient(
                ARTIFACT_FAILED, f"{shown} is not ready: no artifact yet", retry_after=10.0
            )
        if generation is not None and status.get("observedGeneration") not in (None, generation):
            raise Transient(
                ARTIFACT_FAILED,
                f"{shown} is not ready: generation {generation} is not reconciled yet",
                retry_after=10.0,
            )
        path = self.artifacts.local_path(str(artifact.get("path")))
        if path is None:
            raise Transient(
                ARTIFACT_FAILED,
                f"{shown}: artifact {artifact.get('path')} is not in the controller's storage",
                retry_after=10.0,
            )
        digest = str(artifact.get("digest") or "")
        name, version, app_version, actual = await asyncio.to_thread(
            self._read_meta, path, digest, shown
        )
        revision = version
        if ref.kind == "OCIRepository":
            revision = f"{version}+{actual.removeprefix('sha256:')[:12]}"
        return ChartPackage(
            path=path,
            name=name,
            version=version,
            app_version=app_version,
            digest=actual,
            source=f"{ref.namespace}/{ref.name}",
            revision=revision,
        )

    def _read_meta(self, path: Path, digest: str, shown: str) -> tuple[str, str, str, str]:
        stat = path.stat()
        size = stat.st_size
        seen = self._files.get(str(path))
        if seen is not None and seen[0] == (size, stat.st_mtime_ns) and seen[1] == digest:
            cached_meta = self._meta.get(digest)
            if cached_meta is not None:
                return (*cached_meta, digest)  # this very file was hashed and read before
        if size > self.policy.chart_archive_bytes:
            raise Transient(
                ARTIFACT_FAILED,
                f"{shown}: chart package over {self.policy.chart_archive_bytes} bytes "
                "(GITSAIL_CHART_ARCHIVE_BYTES)",
            )
        data = path.read_bytes()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest and digest != actual:
            raise Transient(ARTIFACT_FAILED, f"{shown}: the artifact does not match its digest")
        self._files[str(path)] = ((size, stat.st_mtime_ns), actual)
        while len(self._files) > _CACHE:
            self._files.pop(next(iter(self._files)))
        cached = self._meta.get(actual)
        if cached is None:
            cached = self._chart_yaml(data, shown)
            self._meta[actual] = cached
            while len(self._meta) > _CACHE:
                self._meta.popitem(last=False)
        self._meta.move_to_end(actual)
        return (*cached, actual)

    def _chart_yaml(self, data: bytes, shown: str) -> tuple[str, str, str]:
        def bad(why: str) -> Transient:
            return Transient(ARTIFACT_FAILED, f"{shown}: invalid chart package: {why}")

        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                for count, member in enumerate(archive):
                    if count > self.policy.chart_entries:
                        raise bad(f"over {self.policy.chart_entries} entries")
                    parts = member.name.split("/")
                    if len(parts) != 2 or parts[1] != "Chart.yaml" or not member.isfile():
                        continue
                    if member.size > _CHART_YAML_BYTES:
                        raise bad("Chart.yaml is too large")
                    handle = archive.extractfile(member)
                    if handle is None:
                        raise bad("Chart.yaml cannot be read")
                    meta = load_document(handle.read(), "Chart.yaml", self.policy)
                    if not isinstance(meta, Mapping):
                        raise bad("Chart.yaml is not a map")
                    name, version = meta.get("name"), meta.get("version")
                    if not isinstance(name, str) or not name or version is None:
                        raise bad("Chart.yaml has no name or version")
                    app = meta.get("appVersion")
                    return name, str(version), "" if app is None else str(app)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise bad(str(exc)) from None
        except (YAMLLimitError, yaml.YAMLError) as exc:
            raise bad(f"Chart.yaml: {exc}") from None
        raise bad("no Chart.yaml")
