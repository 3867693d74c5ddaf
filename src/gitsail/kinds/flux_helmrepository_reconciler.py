"""Flux's source-controller for ``HelmRepository``: fetch ``index.yaml``, store it, say so.

One reconcile, top to bottom::

    deleting?      -> finalize: remove the object's files, drop ``finalizers.fluxcd.io``
    parse spec     -> SpecError: Stalled (wait for a spec change), no retry
    suspended?     -> nothing at all (no status write), None
    finalizer      -> added once (a metadata patch)
    type: oci      -> Ready without an artifact (HelmCharts pull from the registry), None
    credentials    <- spec.secretRef (username/password; deprecated certFile/keyFile/caFile)
                      and spec.certSecretRef (tls.crt/tls.key/ca.crt)
    fetch          <- ``HelmRepoSource.fetch_index``: at most ``helm_index_bytes``, denied
                      networks refused, within spec.timeout
    parse          <- ``HelmRepoSource.parse_index``: a broken index is refused here, and
                      the parsed one stays in the shared cache for this repository's charts
    store          -> ``ArtifactStore.put_file(..., suffix=".yaml")``: the bytes as served
    status         -> ONE merge patch of ``/status``, none when unchanged

Status is what Flux v1 writes: ``artifact`` {path, url, revision, digest, size,
lastUpdateTime} whose revision is the index's ``sha256:<hex>`` (the digest of the file as
served, which is also the artifact's digest), ``url`` (the artifact's URL), ``conditions``
(Ready, ArtifactInStorage, Reconciling, Stalled, and FetchFailed /
StorageOperationFailed while true), ``observedGeneration``, ``lastHandledReconcileAt``. A
failure keeps the last artifact, so HelmCharts go on using it.

The helpers at the bottom (status, finalizer, credentials) are shared with the HelmChart
reconciler, which reads the same Secrets for its downloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_helmrepository import GROUP, KIND, HelmRepository, parse_helm_repository
from gitsail.kinds.flux_source_reconciler import (
    FINALIZER,
    ControlPlane,
    FluxSourceReconciler,
    utcnow,
)
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
from gitsail.source.artifacts import ArtifactStore, StoredArtifact
from gitsail.source.credentials import RepoCredentials, secret_values
from gitsail.source.errors import AuthError, InvalidSource, SourceError
from gitsail.source.helm import HelmRepoSource, TLSConfig

__all__ = [
    "FINALIZER",
    "HelmRepositoryReconciler",
    "Outcome",
    "SourceReconciler",
    "repository_access",
    "source_status",
]

log = logging.getLogger(__name__)

ARTIFACT_KIND = "helmrepository"
API_VERSION = f"{GROUP}/v1"

SUCCEEDED = "Succeeded"
AUTHENTICATION_FAILED = "AuthenticationFailed"
INDEXATION_FAILED = "IndexationFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
INVALID_SPEC = "InvalidSpec"
UNSUPPORTED_FIELD = "UnsupportedField"
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
FETCH_FAILED = "FetchFailed"
NEGATIVE = ("FetchFailed", "BuildFailed", "StorageOperationFailed", "ArtifactOutdated")


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found: an artifact (or, for an OCI repository, none and no error),
    or an error and the negative-polarity condition naming where it happened."""

    artifact: StoredArtifact | None = None
    error: ReconcileError | None = None
    failed_condition: str | None = None
    message: str = ""  # Ready's message on success
    reason: str = SUCCEEDED
    observed: tuple[tuple[str, Any], ...] = ()  # status fields set on success (None drops)


def source_status(
    current: Mapping[str, Any],
    outcome: Outcome,
    *,
    generation: int,
    requested_at: str | None,
    now: str,
    artifact_present: bool,
) -> dict[str, Any]:
    """A Flux source's next ``status`` from its current one and this reconcile's outcome.
    Pure: the same inputs give the same dict, so an unchanged world writes nothing."""
    status = dict(current)
    conditions = [dict(c) for c in current.get("conditions") or [] if c.get("type") not in NEGATIVE]
    if outcome.error is None:
        extra: list[Condition] = []
        stored = outcome.artifact
        if stored is not None:
            previous = current.get("artifact") or {}
            same = previous.get("digest") == stored.digest and previous.get("path") == stored.path
            since = str(previous.get("lastUpdateTime") or now) if same else now
            status["artifact"] = stored.to_status(since)
            status["url"] = stored.url
            extra.append(
                Condition(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, outcome.message, generation)
            )
        else:
            status.pop("artifact", None)
            status.pop("url", None)
            conditions = [c for c in conditions if c.get("type") != ARTIFACT_IN_STORAGE]
        conditions = ready_conditions(
            conditions,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=now,
            extra=extra,
        )
        status["observedGeneration"] = generation
        for key, value in outcome.observed:
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
    else:
        error = outcome.error
        if not artifact_present:
            status.pop("artifact", None)
            status.pop("url", None)
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
    if requested_at is not None:
        status["lastHandledReconcileAt"] = requested_at
    return status


def _spec_stalled_status(
    current: Mapping[str, Any], error: SpecError, obj: Obj, now: str
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    reason = UNSUPPORTED_FIELD if isinstance(error, UnsupportedField) else INVALID_SPEC
    outcome = Outcome(error=Stalled(reason, str(error)))
    requested = (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
    present = bool(current.get("artifact"))
    return source_status(
        current,
        outcome,
        generation=generation,
        requested_at=requested if isinstance(requested, str) else None,
        now=now,
        artifact_present=present,
    )


def repository_access(
    secret: Obj | None, cert_secret: Obj | None, url: str
) -> tuple[RepoCredentials | None, TLSConfig | None]:
    """Credentials and TLS of a HelmRepository from its Secrets (``secretRef``:
    ``username``/``password`` and the deprecated ``certFile``/``keyFile``/``caFile``;
    ``certSecretRef``: ``tls.crt``/``tls.key``/``ca.crt``). Raises ``Transient``
    (AuthenticationFailed) for a Secret that cannot be used as written."""
    creds: RepoCredentials | None = None
    tls_values: dict[str, str] = {}
    if secret is not None:
        values = _values(secret)
        username, password = values.get("username", ""), values.get("password", "")
        if bool(username) != bool(password):
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{_shown(secret)} must hold both 'username' and 'password' (or neither)",
            )
        if username:
            creds = RepoCredentials(
                url=url, username=username, password=password, type="helm", enable_oci=True
            )
        for old, new in (("certFile", "tls.crt"), ("keyFile", "tls.key"), ("caFile", "ca.crt")):
            if values.get(old):
                tls_values[new] = values[old]
        if creds is None and not tls_values:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{_shown(secret)} holds neither 'username'/'password' nor TLS files",
            )
    if cert_secret is not None:
        values = _values(cert_secret)
        tls_values.update({k: values[k] for k in ("tls.crt", "tls.key", "ca.crt") if values.get(k)})
        if not tls_values:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{_shown(cert_secret)} holds none of 'tls.crt', 'tls.key', 'ca.crt'",
            )
    if bool(tls_values.get("tls.crt")) != bool(tls_values.get("tls.key")):
        raise Transient(
            AUTHENTICATION_FAILED,
            "a client certificate needs both 'tls.crt' and 'tls.key' (certFile and keyFile)",
        )
    tls = None
    if tls_values:
        tls = TLSConfig(
            ca=tls_values.get("ca.crt", ""),
            cert=tls_values.get("tls.crt", ""),
            key=tls_values.get("tls.key", ""),
        )
    return creds, tls


def _values(secret: Obj) -> dict[str, str]:
    try:
        return secret_values(secret)
    except InvalidSource as exc:
        raise Transient(AUTHENTICATION_FAILED, exc.message) from None


def _shown(secret: Obj) -> str:
    meta = secret.get("metadata") or {}
    return f"Secret {meta.get('namespace', '')}/{meta.get('name', '')}"


class SourceReconciler(FluxSourceReconciler):
    """The Helm source kinds' shared part: Secrets read for downloads, a stalled spec."""

    api_version = API_VERSION
    kind = KIND
    artifact_kind = ARTIFACT_KIND

    async def secret(self, namespace: str, name: str | None, field: str) -> Obj | None:
        """The Secret ``name`` (``field`` of the spec) or None when no name is given."""
        if name is None:
            return None
        try:
            secret = await self.control_plane.get("v1", "Secret", name, namespace)
        except KubeError as exc:
            raise Transient(AUTHENTICATION_FAILED, f"cannot read Secret {name}: {exc}") from None
        if secret is None:
            raise Transient(
                AUTHENTICATION_FAILED, f"Secret {namespace}/{name} ({field}) does not exist"
            )
        return secret

    async def stalled_on_spec(self, obj: Obj, current: Mapping[str, Any], exc: SpecError) -> None:
        await self.write_status(obj, current, _spec_stalled_status(current, exc, obj, self.now()))


class HelmRepositoryReconciler(SourceReconciler):
    """Reconciles ``source.toolkit.fluxcd.io`` HelmRepositories (v1 and v1beta2 objects)."""

    def __init__(
        self,
        control_plane: ControlPlane,
        helm: HelmRepoSource,
        store: ArtifactStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, store, clock=clock, field_manager=field_manager)
        self.helm = helm

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        """Bring ``obj``'s artifact and status up to date; seconds until the next run."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        current = obj.get("status") or {}
        try:
            repo = parse_helm_repository(obj)
        except SpecError as exc:
            await self.stalled_on_spec(obj, current, exc)
            return None
        if repo.suspend:
            return None
        await self.ensure_finalizer(obj)
        if repo.oci:
            outcome = Outcome(
                message="Helm repository is ready: an OCI registry has no index and no "
                "artifact; HelmCharts pull their charts from it",
            )
        else:
            outcome = await self._produce(repo)
        present = self.store.exists(str((current.get("artifact") or {}).get("path") or ""))
        status = source_status(
            current,
            outcome,
            generation=repo.generation,
            requested_at=repo.requested_at,
            now=self.now(),
            artifact_present=present,
        )
        await self.write_status(obj, current, status)
        if outcome.error is not None:
            log.info(
                "HelmRepository %s/%s: %s: %s (reasons: %s)",
                repo.namespace,
                repo.name,
                outcome.error.reason,
                outcome.error.message,
                ",".join(sorted(reasons)) or "-",
            )
        if repo.oci:
            return None  # not polled: nothing to fetch
        return self.next_run((repo.namespace, repo.name), outcome.error, repo.interval)

    async def _produce(self, repo: HelmRepository) -> Outcome:
        try:
            secret = await self.secret(repo.namespace, repo.secret_ref, "spec.secretRef")
            cert = await self.secret(repo.namespace, repo.cert_secret_ref, "spec.certSecretRef")
            creds, tls = repository_access(secret, cert, repo.url)
            raw = await asyncio.wait_for(
                self.helm.fetch_index(repo.url, creds, tls=tls), timeout=repo.timeout
            )
            index = await self.helm.parse_index(raw, repo.url)
        except TimeoutError:
            return Outcome(
                error=Transient(
                    INDEXATION_FAILED,
                    f"fetching {redact_url(repo.url)}/index.yaml timed out after {repo.timeout:g}s "
                    "(spec.timeout); retrying",
                ),
                failed_condition=FETCH_FAILED,
            )
        except ReconcileError as exc:
            return Outcome(error=exc, failed_condition=FETCH_FAILED)
        except SourceError as exc:
            reason = AUTHENTICATION_FAILED if isinstance(exc, AuthError) else INDEXATION_FAILED
            error: ReconcileError = (
                Stalled(reason, exc.message)
                if isinstance(exc, InvalidSource)
                else Transient(reason, exc.message)
            )
            return Outcome(error=error, failed_condition=FETCH_FAILED)
        except ValueError as exc:  # a TLS certificate or key that cannot be loaded
            return Outcome(
                error=Transient(AUTHENTICATION_FAILED, f"cannot use the TLS Secret: {exc}"),
                failed_condition=FETCH_FAILED,
            )
        try:
            stored = await asyncio.to_thread(
                self.store.put_file,
                ARTIFACT_KIND,
                repo.namespace,
                repo.name,
                raw,
                revision=index.digest,
                suffix=".yaml",
            )
        except InvalidSource as exc:
            return Outcome(
                error=Stalled(STORAGE_OPERATION_FAILED, exc.message),
                failed_condition=STORAGE_OPERATION_FAILED,
            )
        except OSError as exc:
            return Outcome(
                error=Transient(STORAGE_OPERATION_FAILED, f"cannot store the artifact: {exc}"),
                failed_condition=STORAGE_OPERATION_FAILED,
            )
        return Outcome(artifact=stored, message=f"stored artifact: revision '{index.digest}'")
