"""Flux's source-controller for ``OCIRepository``: pull a layer, store it, say so in status.

One reconcile, top to bottom::

    deleting?      -> finalize: remove the object's artifacts, drop ``finalizers.fluxcd.io``
    parse spec     -> SpecError: Stalled (wait for a spec change), no retry
    suspended?     -> nothing at all (no status write), None
    finalizer      -> added once (a metadata patch)
    credentials    <- spec.secretRef (a kubernetes.io/dockerconfigjson Secret)
    resolve        <- ``OCIClient.resolve``: the tag (a semver range picks one) and the
                      manifest digest, within spec.timeout; no blob is read
    unchanged?     -> the revision, generation and stored file are those of status: reuse
    pull + store   <- ``OCIClient.pull_artifact`` (layerSelector), then ``ArtifactStore``:
                      ``extract`` unpacks the tar+gzip layer and archives it again minus
                      ignored files (``.sourceignore``, ``spec.ignore``); ``copy`` stores the
                      layer as it is
    status         -> ONE merge patch of the ``/status`` subresource, none when unchanged

It returns the seconds until the next run as the GitRepository reconciler does:
``spec.interval`` after a success or a stall on the source, a doubling backoff after a
transient failure, ``None`` when suspended, deleted, or stalled on the spec.

Status is what source-controller writes (``docs/spec/v1/ocirepositories.md``): ``artifact``
{path, url, revision ``<tag>@sha256:<manifest digest>`` (``sha256:<..>`` for a digest
reference), digest and size of the stored file, lastUpdateTime, ``metadata`` = the
manifest's annotations}, ``conditions`` (Ready, ArtifactInStorage, Reconciling, Stalled,
and FetchFailed / StorageOperationFailed only while true), ``observedGeneration``,
``observedIgnore``, ``observedLayerSelector``, ``lastHandledReconcileAt``. Reasons:
``OCIArtifactPullFailed``, ``OCIArtifactLayerOperationFailed``, ``AuthenticationFailed``,
``StorageOperationFailed``. A failure keeps the last artifact for consumers.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_gitrepository_reconciler import Outcome, stalled_on_spec_status
from gitsail.kinds.flux_ocirepository import GROUP, KIND, OCIRepository, parse_oci_repository
from gitsail.kinds.flux_source_reconciler import ControlPlane, FluxSourceReconciler, utcnow
from gitsail.kinds.status import (
    Condition,
    ReconcileError,
    Stalled,
    Transient,
    failure_conditions,
    put_condition,
    ready_conditions,
)
from gitsail.kube.errors import KubeError
from gitsail.model import Obj
from gitsail.source import redact_url
from gitsail.source.artifacts import ArtifactStore, IgnoreRules, StoredArtifact
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, InvalidSource, SourceError
from gitsail.source.oci import (
    PulledArtifact,
    credentials_from_docker_config,
    extract_layer,
    parse_oci_reference,
)

__all__ = ["ARTIFACT_KIND", "OCIPuller", "OCIRepositoryReconciler", "compute_status"]

log = logging.getLogger(__name__)

ARTIFACT_KIND = "ocirepository"  # the store's directory for this kind
API_VERSION = f"{GROUP}/v1"

SUCCEEDED = "Succeeded"
PULL_FAILED = "OCIArtifactPullFailed"
LAYER_FAILED = "OCIArtifactLayerOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
FETCH_FAILED = "FetchFailed"
NEGATIVE = ("FetchFailed", "StorageOperationFailed", "ArtifactOutdated")


class OCIPuller(Protocol):
    """What the reconciler asks of a registry (``gitsail.source.oci.OCIClient`` has it)."""

    async def resolve(
        self,
        ref: str,
        *,
        tag: str = "",
        semver: str = "",
        digest: str = "",
        creds: RepoCredentials | None = None,
        plain_http: bool = False,
    ) -> str: ...

    async def pull_artifact(
        self,
        ref: str,
        *,
        tag: str = "",
        semver: str = "",
        digest: str = "",
        media_type: str = "",
        creds: RepoCredentials | None = None,
        plain_http: bool = False,
    ) -> PulledArtifact: ...


def compute_status(
    current: Mapping[str, Any],
    repo: OCIRepository,
    outcome: Outcome,
    *,
    now: str,
    metadata: Mapping[str, str] | None = None,
    artifact_present: bool = True,
) -> dict[str, Any]:
    """The next ``status`` from the current one and this reconcile's outcome. Pure."""
    status = dict(current)
    conditions: list[dict[str, Any]] = [
        dict(c) for c in current.get("conditions") or [] if c.get("type") not in NEGATIVE
    ]
    generation = repo.generation
    if outcome.artifact is not None:
        stored = outcome.artifact
        previous = current.get("artifact") or {}
        same = previous.get("digest") == stored.digest and previous.get("path") == stored.path
        since = str(previous.get("lastUpdateTime") or now) if same else now
        artifact = stored.to_status(since)
        if metadata is None and same:
            metadata = previous.get("metadata")
        if metadata:
            artifact["metadata"] = dict(metadata)
        status["artifact"] = artifact
        message = f"stored artifact for revision '{stored.revision}'"
        conditions = ready_conditions(
            conditions,
            reason=SUCCEEDED,
            message=message,
            generation=generation,
            now=now,
            extra=[Condition(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, message, generation)],
        )
        status["observedGeneration"] = generation
        for key, value in (
            ("observedIgnore", repo.ignore),
            (
                "observedLayerSelector",
                repo.layer_selector.to_status() if repo.layer_selector else None,
            ),
        ):
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
    else:
        error = outcome.error
        assert error is not None
        if not artifact_present:
            status.pop("artifact", None)
            conditions = [c for c in conditions if c.get("type") != ARTIFACT_IN_STORAGE]
        conditions = failure_conditions(conditions, error, generation=generation, now=now)
        if outcome.failed_condition:
            conditions = put_condition(
                conditions,
                Condition(
                    outcome.failed_condition, "True", error.reason, error.message, generation
                ),
                now,
            )
        if isinstance(error, Stalled):
            status["observedGeneration"] = generation
    status["conditions"] = conditions
    if repo.requested_at is not None:
        status["lastHandledReconcileAt"] = repo.requested_at
    return status


class OCIRepositoryReconciler(FluxSourceReconciler):
    """Reconciles ``source.toolkit.fluxcd.io`` OCIRepositories (v1 and v1beta2 objects)."""

    api_version = API_VERSION
    kind = KIND
    artifact_kind = ARTIFACT_KIND

    def __init__(
        self,
        control_plane: ControlPlane,
        oci: OCIPuller,
        store: ArtifactStore,
        *,
        work_dir: Path | None = None,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, store, clock=clock, field_manager=field_manager)
        self.oci = oci
        self.work_dir = work_dir

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        """Bring ``obj``'s artifact and status up to date; seconds until the next run."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        current = obj.get("status") or {}
        try:
            repo = parse_oci_repository(obj)
        except SpecError as exc:
            generation = int(meta.get("generation") or 0)
            requested = (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
            status = stalled_on_spec_status(current, exc, generation, requested, self.now())
            await self.write_status(obj, current, status)
            return None
        if repo.suspend:
            return None
        await self.ensure_finalizer(obj)
        outcome, metadata = await self._produce(repo, current)
        status = compute_status(
            current,
            repo,
            outcome,
            now=self.now(),
            metadata=metadata,
            artifact_present=self.artifact_present(current),
        )
        await self.write_status(obj, current, status)
        if outcome.error is not None:
            log.info(
                "OCIRepository %s/%s: %s: %s (reasons: %s)",
                repo.namespace,
                repo.name,
                outcome.error.reason,
                outcome.error.message,
                ",".join(sorted(reasons)) or "-",
            )
        return self.next_run((repo.namespace, repo.name), outcome.error, repo.interval)

    async def _produce(
        self, repo: OCIRepository, current: Mapping[str, Any]
    ) -> tuple[Outcome, dict[str, str] | None]:
        selector = repo.layer_selector
        try:
            creds = await self._credentials(repo)
            async with asyncio.timeout(repo.timeout):
                revision = await self.oci.resolve(
                    repo.url,
                    tag=repo.ref.tag,
                    semver=repo.ref.semver,
                    digest=repo.ref.digest,
                    creds=creds,
                    plain_http=repo.insecure,
                )
                reused = self._unchanged(repo, current, revision)
                if reused is not None:
                    return Outcome(artifact=reused), None
                pulled = await self.oci.pull_artifact(
                    repo.url,
                    tag=repo.ref.tag,
                    semver=repo.ref.semver,
                    digest=repo.ref.digest,
                    media_type=selector.media_type if selector else "",
                    creds=creds,
                    plain_http=repo.insecure,
                )
        except TimeoutError:
            shown = redact_url(repo.url)
            message = f"pulling {shown} timed out after {repo.timeout:g}s (spec.timeout)"
            return Outcome(
                error=Transient(PULL_FAILED, message), failed_condition=FETCH_FAILED
            ), None
        except ReconcileError as exc:
            return Outcome(error=exc, failed_condition=FETCH_FAILED), None
        except SourceError as exc:
            return Outcome(error=_source_error(repo, exc), failed_condition=FETCH_FAILED), None
        try:
            stored = await asyncio.to_thread(self._store, repo, pulled)
        except InvalidSource as exc:
            stalled = Stalled(LAYER_FAILED, exc.message)
            return Outcome(error=stalled, failed_condition=FETCH_FAILED), None
        except OSError as exc:
            failed = Transient(STORAGE_OPERATION_FAILED, f"cannot store the artifact: {exc}")
            return Outcome(error=failed, failed_condition=STORAGE_OPERATION_FAILED), None
        return Outcome(artifact=stored), dict(pulled.annotations)

    async def _credentials(self, repo: OCIRepository) -> RepoCredentials | None:
        name = repo.secret_ref
        if name is None:
            return None
        try:
            secret = await self.control_plane.get("v1", "Secret", name, repo.namespace)
        except KubeError as exc:
            raise Transient(AUTHENTICATION_FAILED, f"cannot read Secret {name}: {exc}") from None
        if secret is None:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"Secret {repo.namespace}/{name} (spec.secretRef) does not exist",
            )
        host = parse_oci_reference(repo.url).host
        try:
            return credentials_from_docker_config(secret, host)
        except InvalidSource as exc:
            raise Transient(AUTHENTICATION_FAILED, exc.message) from None

    def _unchanged(
        self, repo: OCIRepository, current: Mapping[str, Any], revision: str
    ) -> StoredArtifact | None:
        """The artifact in status, when pulling again would store the same file."""
        artifact = current.get("artifact") or {}
        if (
            artifact.get("revision") != revision
            or current.get("observedGeneration") != repo.generation
            or not self.store.exists(str(artifact.get("path") or ""))
        ):
            return None
        path = str(artifact["path"])
        return StoredArtifact(
            path=path,
            url=f"{self.store.base_url}/{path}",
            revision=revision,
            digest=str(artifact.get("digest") or ""),
            size=int(artifact.get("size") or 0),
        )

    def _store(self, repo: OCIRepository, pulled: PulledArtifact) -> StoredArtifact:
        """Blocking: the layer as-is (``copy``) or unpacked and archived again."""
        selector = repo.layer_selector
        if selector is not None and selector.operation == "copy":
            return self.store.put_file(
                ARTIFACT_KIND,
                repo.namespace,
                repo.name,
                pulled.data,
                revision=pulled.revision,
                suffix=".tar.gz",
            )
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="oci-") as tmp:
            tree = Path(tmp) / "layer"
            what = f"the layer {pulled.layer_digest} of {pulled.url}"
            extract_layer(pulled.data, tree, what=what, policy=self.store.policy)
            rules = IgnoreRules.load(tree, repo.ignore)
            return self.store.archive(
                ARTIFACT_KIND,
                repo.namespace,
                repo.name,
                tree,
                revision=pulled.revision,
                ignore=rules,
            )


def _source_error(repo: OCIRepository, exc: SourceError) -> ReconcileError:
    message = f"failed to pull artifact from '{redact_url(repo.url)}': {exc.message}"
    if isinstance(exc, AuthError):
        return Transient(AUTHENTICATION_FAILED, message)
    if isinstance(exc, InvalidSource):  # a refused host, a layer over a bound: fix something
        return Stalled(PULL_FAILED, message)
    return Transient(PULL_FAILED, message)  # not found (may be pushed), unreachable
