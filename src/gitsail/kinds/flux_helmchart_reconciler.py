"""Flux's source-controller for ``HelmChart``: resolve, pull or package a chart, store it.

One reconcile, top to bottom::

    deleting?      -> finalize: remove the object's packages, drop ``finalizers.fluxcd.io``
    parse spec     -> SpecError: Stalled (wait for a spec change), no retry
    suspended?     -> nothing at all (no status write), None
    source         <- spec.sourceRef, in the chart's namespace:
      HelmRepository (HTTP)  its stored index, parsed once per digest (``HelmRepoSource``'s
                             shared cache: many charts of one big index parse it once);
                             the version picked (``17.x``: highest 17 release, no
                             pre-release); unchanged version -> the stored package is kept;
                             else the package downloaded with the repository's credentials
                             (to its own origin only unless ``passCredentials``) and its
                             digest checked against the index
      HelmRepository (OCI)   the injected ``OCICharts`` pulls ``<url>/<chart>``; without
                             one, Stalled with a message
      GitRepository          its artifact unpacked; the chart directory packaged
                             (deterministically) at its Chart.yaml version, plus
                             ``+<12 hex of the source digest>`` with ``reconcileStrategy:
                             Revision``; dependencies must be vendored under ``charts/``
    valuesFiles    -> merged in order into the packaged chart's ``values.yaml``
    store          -> ``ArtifactStore.put_file(..., suffix=".tgz")``
    status         -> ONE merge patch of ``/status``, none when unchanged

Status is what Flux v1 writes: ``artifact`` (revision = the chart version), ``url``,
``observedChartName``, ``observedSourceArtifactRevision``, ``observedValuesFiles``,
``observedGeneration``, conditions Ready (ChartPullSucceeded / ChartPackageSucceeded),
ArtifactInStorage, Reconciling, Stalled and, while true, FetchFailed (the source, its
credentials, the download) or BuildFailed (no such chart or version, a chart that cannot be
packaged). A failure keeps the last artifact: a HelmRelease goes on using it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_helmchart import GROUP, KIND, REVISION, HelmChart, parse_helm_chart
from gitsail.kinds.flux_helmrepository import HelmRepository, parse_helm_repository
from gitsail.kinds.flux_helmrepository_reconciler import (
    AUTHENTICATION_FAILED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    Outcome,
    SourceReconciler,
    repository_access,
    source_status,
)
from gitsail.kinds.flux_source_reconciler import ControlPlane, utcnow
from gitsail.kinds.status import ReconcileError, Stalled, Transient
from gitsail.kube.errors import KubeError
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source import redact_url
from gitsail.source.artifacts import ArtifactStore, StoredArtifact
from gitsail.source.boundedyaml import YAMLLimitError, load_document
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, InvalidSource, RevisionNotFound, SourceError
from gitsail.source.helm import (
    HelmIndex,
    HelmRepoSource,
    TLSConfig,
    pack_chart,
    pick_chart_version,
    unpack_chart,
)
from gitsail.source.oci import PulledChart

__all__ = ["HelmChartReconciler", "OCICharts", "PulledChart", "merge_values"]

log = logging.getLogger(__name__)

ARTIFACT_KIND = "helmchart"
API_VERSION = f"{GROUP}/v1"
SOURCE_API_VERSION = f"{GROUP}/v1"

# Reasons, as source-controller writes them.
CHART_PULL_SUCCEEDED = "ChartPullSucceeded"
CHART_PACKAGE_SUCCEEDED = "ChartPackageSucceeded"
CHART_PULL_ERROR = "ChartPullError"
CHART_PACKAGE_ERROR = "ChartPackageError"
SOURCE_UNAVAILABLE = "SourceUnavailable"
BUILD_FAILED = "BuildFailed"


class OCICharts(Protocol):
    """Pulls charts from OCI registries (``gitsail.source.oci`` provides one)."""

    async def pull_chart(
        self, ref: str, version: str, creds: RepoCredentials | None
    ) -> PulledChart:
        """``ref`` is ``oci://host[:port]/path/chart``; ``version`` exact, a semver range, or
        ``""`` for the latest stable release."""
        ...


class _Failed(Exception):
    """A reconcile error and the negative-polarity condition that says where it happened."""

    def __init__(self, error: ReconcileError, condition: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.condition = condition


def _fetch_failed(error: ReconcileError) -> _Failed:
    return _Failed(error, FETCH_FAILED)


def _build_failed(error: ReconcileError) -> _Failed:
    return _Failed(error, BUILD_FAILED)


@dataclass(frozen=True)
class _Built:
    """A chart ready to store (``data``) or the stored one kept (``kept``)."""

    name: str
    version: str
    source_revision: str
    pulled: bool  # pulled from a repository (vs packaged from a directory)
    values_files: tuple[str, ...] = ()
    data: bytes | None = None
    kept: StoredArtifact | None = None


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base``: maps merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        existing = out.get(key)
        if isinstance(existing, Mapping) and isinstance(value, Mapping):
            out[key] = merge_values(existing, value)
        else:
            out[key] = value
    return out


class HelmChartReconciler(SourceReconciler):
    """Reconciles ``source.toolkit.fluxcd.io`` HelmCharts (v1 and v1beta2 objects)."""

    api_version = API_VERSION
    kind = KIND
    artifact_kind = ARTIFACT_KIND

    def __init__(
        self,
        control_plane: ControlPlane,
        helm: HelmRepoSource,
        store: ArtifactStore,
        *,
        oci: OCICharts | None = None,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, store, clock=clock, field_manager=field_manager)
        self.helm = helm
        self.oci = oci
        self.policy = policy if policy is not None else helm.policy or DEFAULT_POLICY

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        """Bring ``obj``'s artifact and status up to date; seconds until the next run."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        current = obj.get("status") or {}
        try:
            chart = parse_helm_chart(obj)
        except SpecError as exc:
            await self.stalled_on_spec(obj, current, exc)
            return None
        if chart.suspend:
            return None
        await self.ensure_finalizer(obj)
        outcome = await self._produce(chart, current)
        present = self.store.exists(str((current.get("artifact") or {}).get("path") or ""))
        status = source_status(
            current,
            outcome,
            generation=chart.generation,
            requested_at=chart.requested_at,
            now=self.now(),
            artifact_present=present,
        )
        await self.write_status(obj, current, status)
        if outcome.error is not None:
            log.info(
                "HelmChart %s/%s: %s: %s (reasons: %s)",
                chart.namespace,
                chart.name,
                outcome.error.reason,
                outcome.error.message,
                ",".join(sorted(reasons)) or "-",
            )
        return self.next_run((chart.namespace, chart.name), outcome.error, chart.interval)

    # -- steps -----------------------------------------------------------------------------

    async def _produce(self, chart: HelmChart, current: Mapping[str, Any]) -> Outcome:
        try:
            source = await self._source(chart)
            if chart.source_kind == "GitRepository":
                built = await self._from_git(chart, source, current)
            else:
                repo = _repository(source, chart)
                if repo.oci:
                    built = await self._from_oci(chart, repo, current)
                else:
                    built = await self._from_index(chart, repo, source, current)
            stored = built.kept or await self._store(chart, built)
        except _Failed as failed:
            return Outcome(error=failed.error, failed_condition=failed.condition)
        verb = "pulled" if built.pulled else "packaged"
        return Outcome(
            artifact=stored,
            message=f"{verb} '{built.name}' chart with version '{built.version}'",
            reason=CHART_PULL_SUCCEEDED if built.pulled else CHART_PACKAGE_SUCCEEDED,
            observed=(
                ("observedChartName", built.name),
                ("observedSourceArtifactRevision", built.source_revision or None),
                ("observedValuesFiles", list(built.values_files) or None),
            ),
        )

    async def _source(self, chart: HelmChart) -> Obj:
        what = f"{chart.source_kind} {chart.namespace}/{chart.source_name}"
        try:
            source = await self.control_plane.get(
                SOURCE_API_VERSION, chart.source_kind, chart.source_name, chart.namespace
            )
        except KubeError as exc:
            raise _fetch_failed(
                Transient(SOURCE_UNAVAILABLE, f"cannot read {what}: {exc}")
            ) from None
        if source is None:
            raise _fetch_failed(
                Transient(SOURCE_UNAVAILABLE, f"{what} (spec.sourceRef) does not exist")
            )
        return source

    async def _access(
        self, repo: HelmRepository
    ) -> tuple[RepoCredentials | None, TLSConfig | None]:
        try:
            secret = await self.secret(repo.namespace, repo.secret_ref, "spec.secretRef")
            cert = await self.secret(repo.namespace, repo.cert_secret_ref, "spec.certSecretRef")
            return repository_access(secret, cert, repo.url)
        except ReconcileError as exc:
            raise _fetch_failed(exc) from None

    async def _from_index(
        self, chart: HelmChart, repo: HelmRepository, source: Obj, current: Mapping[str, Any]
    ) -> _Built:
        artifact = (source.get("status") or {}).get("artifact") or {}
        revision = str(artifact.get("revision") or "")
        index = await self._index(repo, artifact)
        requested = "" if chart.version == "*" else chart.version
        try:
            entry = pick_chart_version(index, chart.chart, requested, repo.url)
        except SourceError as exc:
            raise _build_failed(Stalled(CHART_PULL_ERROR, exc.message)) from None
        version = str(entry.get("version"))
        kept = self._kept(chart, current, version)
        if kept is not None:
            used = _observed_values_files(current)
            return _Built(chart.chart, version, revision, True, used, kept=kept)
        creds, tls = await self._access(repo)
        try:
            package = await asyncio.wait_for(
                self.helm.download_chart(
                    repo.url,
                    index,
                    chart.chart,
                    version,
                    creds,
                    tls=tls,
                    pass_credentials=repo.pass_credentials,
                ),
                timeout=repo.timeout,
            )
        except TimeoutError:
            raise _fetch_failed(
                Transient(
                    CHART_PULL_ERROR,
                    f"downloading chart {chart.chart} {version} from {redact_url(repo.url)} "
                    f"timed out after {repo.timeout:g}s (the HelmRepository's spec.timeout)",
                )
            ) from None
        except SourceError as exc:
            raise _fetch_failed(_pull_error(exc)) from None
        except ValueError as exc:  # a TLS certificate or key that cannot be loaded
            raise _fetch_failed(
                Transient(AUTHENTICATION_FAILED, f"cannot use the TLS Secret: {exc}")
            ) from None
        data, used = await self._with_values(chart, package.data, package.name)
        return _Built(package.name, version, revision, True, used, data=data)

    async def _index(self, repo: HelmRepository, artifact: Mapping[str, Any]) -> HelmIndex:
        what = f"HelmRepository {repo.namespace}/{repo.name}"
        digest, path = str(artifact.get("digest") or ""), str(artifact.get("path") or "")
        cached = self.helm.indexes.get(digest) if digest else None
        if cached is not None:
            return cached
        local = self.store.local_path(path) if path else None
        if local is None:
            raise _fetch_failed(
                Transient(SOURCE_UNAVAILABLE, f"{what} has no index artifact yet; waiting for it")
            )
        try:
            raw = await asyncio.to_thread(local.read_bytes)
            return await self.helm.parse_index(raw, repo.url)
        except OSError as exc:
            raise _fetch_failed(
                Transient(SOURCE_UNAVAILABLE, f"cannot read the index of {what}: {exc}")
            ) from None
        except SourceError as exc:
            raise _fetch_failed(Transient(SOURCE_UNAVAILABLE, exc.message)) from None

    async def _from_oci(
        self, chart: HelmChart, repo: HelmRepository, current: Mapping[str, Any]
    ) -> _Built:
        ref = f"{repo.url.rstrip('/')}/{chart.chart}"
        if self.oci is None:
            raise _fetch_failed(
                Stalled(
                    CHART_PULL_ERROR,
                    f"HelmRepository {repo.namespace}/{repo.name} is an OCI registry and this "
                    f"controller has no OCI client: {ref} cannot be pulled",
                )
            )
        creds, _tls = await self._access(repo)
        if creds is None and repo.insecure:
            creds = RepoCredentials(url=repo.url, type="helm", enable_oci=True, insecure=True)
        elif creds is not None and repo.insecure:
            creds = RepoCredentials(
                url=creds.url,
                username=creds.username,
                password=creds.password,
                type="helm",
                enable_oci=True,
                insecure=True,
            )
        requested = "" if chart.version == "*" else chart.version
        try:
            pulled = await asyncio.wait_for(
                self.oci.pull_chart(ref, requested, creds), timeout=repo.timeout
            )
        except TimeoutError:
            raise _fetch_failed(
                Transient(CHART_PULL_ERROR, f"pulling {ref} timed out after {repo.timeout:g}s")
            ) from None
        except RevisionNotFound as exc:
            raise _build_failed(Stalled(CHART_PULL_ERROR, exc.message)) from None
        except SourceError as exc:
            raise _fetch_failed(_pull_error(exc)) from None
        kept = self._kept(chart, current, pulled.version)
        if kept is not None and kept.digest == pulled.digest and not chart.values_files:
            return _Built(chart.chart, pulled.version, pulled.digest, True, kept=kept)
        data, used = await self._with_values(chart, pulled.data, chart.chart)
        return _Built(chart.chart, pulled.version, pulled.digest, True, used, data=data)

    async def _from_git(self, chart: HelmChart, source: Obj, current: Mapping[str, Any]) -> _Built:
        what = f"GitRepository {chart.namespace}/{chart.source_name}"
        artifact = (source.get("status") or {}).get("artifact") or {}
        path, revision = str(artifact.get("path") or ""), str(artifact.get("revision") or "")
        if not path or not self.store.exists(path):
            raise _fetch_failed(
                Transient(SOURCE_UNAVAILABLE, f"{what} has no artifact yet; waiting for it")
            )
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gitsail-helmchart-"))
        try:
            return await asyncio.to_thread(self._package_git, chart, work, path, revision, current)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _package_git(
        self,
        chart: HelmChart,
        work: Path,
        path: str,
        revision: str,
        current: Mapping[str, Any],
    ) -> _Built:
        root = work / "source"
        try:
            self.store.extract(path, root)
        except (InvalidSource, OSError) as exc:
            raise _fetch_failed(Transient(SOURCE_UNAVAILABLE, str(exc))) from None
        directory = (root / chart.chart).resolve()
        if not directory.is_relative_to(root.resolve()) or not (directory / "Chart.yaml").is_file():
            raise _build_failed(
                Stalled(
                    CHART_PACKAGE_ERROR,
                    f"no chart at {chart.chart!r} in the artifact of GitRepository "
                    f"{chart.namespace}/{chart.source_name} (no Chart.yaml there)",
                )
            )
        meta = self._yaml_map(directory / "Chart.yaml", f"{chart.chart}/Chart.yaml")
        name, version = str(meta.get("name") or ""), str(meta.get("version") or "")
        if not name or not version:
            raise _build_failed(
                Stalled(CHART_PACKAGE_ERROR, f"{chart.chart}/Chart.yaml needs a name and a version")
            )
        if chart.reconcile_strategy == REVISION and revision:
            version = f"{version}+{revision.rsplit(':', 1)[-1][:12]}"
        kept = self._kept(chart, current, version)
        if kept is not None:
            used = _observed_values_files(current)
            return _Built(name, version, revision, False, used, kept=kept)
        _check_dependencies(meta, directory, chart.chart)
        if version != meta.get("version"):
            meta["version"] = version
            (directory / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        used = self._write_values(chart, directory, base=root)
        try:
            data = pack_chart(directory, name, limit=self.policy.chart_unpacked_bytes)
        except InvalidSource as exc:
            raise _build_failed(Stalled(CHART_PACKAGE_ERROR, exc.message)) from None
        return _Built(name, version, revision, False, used, data=data)

    async def _with_values(
        self, chart: HelmChart, data: bytes, name: str
    ) -> tuple[bytes, tuple[str, ...]]:
        """``data`` with ``values.yaml`` replaced by the merged ``valuesFiles`` (relative
        to the chart), or as it is when there are none."""
        if not chart.values_files:
            return data, ()
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gitsail-helmchart-"))
        try:
            return await asyncio.to_thread(self._repack, chart, data, name, work)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _repack(
        self, chart: HelmChart, data: bytes, name: str, work: Path
    ) -> tuple[bytes, tuple[str, ...]]:
        root = work / "chart"
        try:
            unpack_chart(data, root, f"chart {name}", self.policy)
        except SourceError as exc:
            raise _build_failed(Stalled(CHART_PULL_ERROR, exc.message)) from None
        directory = root / name
        if not (directory / "Chart.yaml").is_file():
            raise _build_failed(
                Stalled(CHART_PULL_ERROR, f"the package of chart {name} has no {name}/Chart.yaml")
            )
        used = self._write_values(chart, directory, base=directory)
        try:
            return pack_chart(directory, name, limit=self.policy.chart_unpacked_bytes), used
        except InvalidSource as exc:
            raise _build_failed(Stalled(CHART_PACKAGE_ERROR, exc.message)) from None

    def _write_values(self, chart: HelmChart, directory: Path, *, base: Path) -> tuple[str, ...]:
        """Merge ``chart.values_files`` (relative to ``base``) into ``directory/values.yaml``;
        the files used, in order."""
        if not chart.values_files:
            return ()
        merged: dict[str, Any] = {}
        used: list[str] = []
        for rel in chart.values_files:
            file = (base / rel).resolve()
            if not file.is_relative_to(base.resolve()):
                raise _build_failed(Stalled(CHART_PACKAGE_ERROR, f"{rel!r} leaves the source"))
            if not file.is_file():
                if chart.ignore_missing_values_files:
                    continue
                raise _build_failed(
                    Stalled(
                        CHART_PACKAGE_ERROR,
                        f"values file {rel!r} (spec.valuesFiles) does not exist in the source; "
                        "set spec.ignoreMissingValuesFiles to skip missing files",
                    )
                )
            merged = merge_values(merged, self._yaml_map(file, rel))
            used.append(rel)
        (directory / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        return tuple(used)

    def _yaml_map(self, file: Path, shown: str) -> dict[str, Any]:
        try:
            size = file.stat().st_size
            if size > self.policy.yaml_document_bytes:
                raise YAMLLimitError(
                    f"{shown} is larger than {self.policy.yaml_document_bytes} bytes"
                )
            doc = load_document(file.read_bytes(), shown, self.policy)
        except (YAMLLimitError, yaml.YAMLError, OSError) as exc:
            raise _build_failed(
                Stalled(CHART_PACKAGE_ERROR, f"cannot read {shown}: {exc}")
            ) from None
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise _build_failed(Stalled(CHART_PACKAGE_ERROR, f"{shown} is not a YAML mapping"))
        return doc

    def _kept(
        self, chart: HelmChart, current: Mapping[str, Any], version: str
    ) -> StoredArtifact | None:
        """The stored package when building again would give the same chart."""
        artifact = current.get("artifact") or {}
        path = str(artifact.get("path") or "")
        if (
            artifact.get("revision") != version
            or current.get("observedGeneration") != chart.generation
            or not self.store.exists(path)
        ):
            return None
        return StoredArtifact(
            path=path,
            url=f"{self.store.base_url}/{path}",
            revision=version,
            digest=str(artifact.get("digest") or ""),
            size=int(artifact.get("size") or 0),
        )

    async def _store(self, chart: HelmChart, built: _Built) -> StoredArtifact:
        assert built.data is not None
        try:
            return await asyncio.to_thread(
                self.store.put_file,
                ARTIFACT_KIND,
                chart.namespace,
                chart.name,
                built.data,
                revision=built.version,
                suffix=".tgz",
            )
        except InvalidSource as exc:
            raise _Failed(
                Stalled(STORAGE_OPERATION_FAILED, exc.message), STORAGE_OPERATION_FAILED
            ) from None
        except OSError as exc:
            raise _Failed(
                Transient(STORAGE_OPERATION_FAILED, f"cannot store the artifact: {exc}"),
                STORAGE_OPERATION_FAILED,
            ) from None


def _observed_values_files(current: Mapping[str, Any]) -> tuple[str, ...]:
    """The values files the kept package was built with (as its status says)."""
    return tuple(str(f) for f in current.get("observedValuesFiles") or ())


def _repository(source: Obj, chart: HelmChart) -> HelmRepository:
    try:
        return parse_helm_repository(source)
    except SpecError as exc:
        raise _fetch_failed(
            Stalled(
                SOURCE_UNAVAILABLE,
                f"HelmRepository {chart.namespace}/{chart.source_name} cannot be used: {exc}",
            )
        ) from None


def _pull_error(exc: SourceError) -> ReconcileError:
    if isinstance(exc, AuthError):
        return Transient(AUTHENTICATION_FAILED, exc.message)
    if isinstance(exc, InvalidSource):
        return Stalled(CHART_PULL_ERROR, exc.message)
    return Transient(CHART_PULL_ERROR, exc.message)


def _check_dependencies(meta: Mapping[str, Any], directory: Path, chart: str) -> None:
    dependencies: Sequence[Any] = meta.get("dependencies") or []
    missing = []
    for dep in dependencies:
        name = str(dep.get("name") or "") if isinstance(dep, Mapping) else ""
        vendored = (directory / "charts" / name).is_dir() or any(
            (directory / "charts").glob(f"{name}-*.tgz")
        )
        if name and not vendored:
            missing.append(name)
    if missing:
        raise _build_failed(
            Stalled(
                CHART_PACKAGE_ERROR,
                f"chart {chart} depends on {', '.join(missing)}, not vendored under charts/; "
                "gitsail does not run 'helm dependency build': commit the dependencies",
            )
        )
