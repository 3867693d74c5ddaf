"""Flux's source-controller for ``GitRepository``: fetch, archive, serve, and say so in status.

One reconcile, top to bottom::

    deleting?      -> finalize: remove the object's archives, drop ``finalizers.fluxcd.io``
    parse spec     -> SpecError: Stalled (wait for a spec change), no retry
    suspended?     -> nothing at all (no status write), None
    finalizer      -> added once (a metadata patch)
    credentials    <- spec.secretRef (basic auth, bearer token, SSH identity + known_hosts)
    fetch          <- the shared ``GitSource`` (one mirror per URL, one fetch per revision,
                      access proven with these credentials, SSRF deny-list), within
                      spec.timeout
    archive        -> ``ArtifactStore``: deterministic .tar.gz minus ignored files, includes
                      copied in; skipped when the revision, generation and file are unchanged
    status         -> ONE merge patch of the ``/status`` subresource, none when unchanged

It returns the seconds until the next run: ``spec.interval`` after a success, a backoff
(doubling from 1 s, at most the interval) after a transient failure, ``spec.interval`` after
a stalled one whose cause may be in the source (e.g. an artifact over the limit), ``None``
when suspended, deleted, or stalled on the spec (the watch brings the next change).

Status is what Flux writes (source-controller ``docs/spec/v1/gitrepositories.md``):
``artifact`` {path, url, revision, digest, lastUpdateTime, size}, ``conditions`` (Ready,
ArtifactInStorage, Reconciling, Stalled, and the negative-polarity FetchFailed /
IncludeUnavailable / StorageOperationFailed present only while true), ``observedGeneration``
(on success or stall), ``observedIgnore``, ``observedInclude``, ``lastHandledReconcileAt``.

Revisions are Flux v1's: ``main@sha1:<sha>`` for a branch, ``v1.0.0@sha1:<sha>`` for a tag
or the tag a semver range chose, ``refs/pull/1/head@sha1:<sha>`` for a ref name,
``sha1:<sha>`` for a bare commit (``<branch>@sha1:<sha>`` with a branch). A failure keeps
the last artifact: consumers go on using it.

A ``commit`` given with a ``branch`` must be in that branch's history (GitOperationFailed
otherwise), as Flux requires. Not implemented, refused with AuthenticationFailed:
``ca.crt``/``caFile`` and passphrase-protected SSH keys in the Secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_gitrepository import GROUP, KIND, GitRepository, parse_git_repository
from gitsail.kinds.flux_source_reconciler import (
    FINALIZER,
    ControlPlane,
    FluxSourceReconciler,
    utcnow,
)
from gitsail.kinds.records import RefKind, RevisionRef
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
from gitsail.model import Artifact, Obj
from gitsail.source import redact_url
from gitsail.source.artifacts import ArtifactStore, IgnoreRules, Include, StoredArtifact
from gitsail.source.credentials import RepoCredentials, secret_values
from gitsail.source.errors import (
    AuthError,
    InvalidSource,
    SourceError,
    UnknownHostKey,
)

__all__ = [
    "FINALIZER",
    "ControlPlane",
    "GitFetcher",
    "GitRepositoryReconciler",
    "Outcome",
    "artifact_revision",
    "compute_status",
    "credentials_from_secret",
    "fetch_revision",
]

log = logging.getLogger(__name__)

ARTIFACT_KIND = "gitrepository"  # the store's directory for this kind
API_VERSION = f"{GROUP}/v1"

# Reasons, as source-controller writes them.
SUCCEEDED = "Succeeded"
GIT_OPERATION_FAILED = "GitOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
INCLUDE_UNAVAILABLE = "IncludeUnavailable"
INVALID_SPEC = "InvalidSpec"
UNSUPPORTED_FIELD = "UnsupportedField"
# Condition types.
READY = "Ready"
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
FETCH_FAILED = "FetchFailed"
NEGATIVE = ("FetchFailed", "IncludeUnavailable", "StorageOperationFailed", "ArtifactOutdated")


class GitFetcher(Protocol):
    """What the reconciler asks of git (``gitsail.source.GitSource`` has it)."""

    async def resolve_ref(
        self, repo_url: str, revision: str, creds: RepoCredentials | None = None
    ) -> tuple[str, str]: ...

    async def fetch(
        self,
        repo_url: str,
        revision: str,
        path: str,
        creds: RepoCredentials | None = None,
    ) -> Artifact: ...

    async def branch_contains(
        self, repo_url: str, branch: str, sha: str, creds: RepoCredentials | None = None
    ) -> bool: ...

    def forget(self, repo_url: str) -> None:
        """Drop the refs remembered for ``repo_url`` (the next fetch asks the server)."""


# -- pure pieces ----------------------------------------------------------------------------


def fetch_revision(ref: RevisionRef) -> str:
    """What to ask ``GitSource`` for: full ref names, so a branch never resolves to a tag
    of the same name (Flux clones exactly the ref it was given)."""
    if ref.kind is RefKind.BRANCH:
        return f"refs/heads/{ref.value}"
    if ref.kind is RefKind.TAG:
        return f"refs/tags/{ref.value}"
    return ref.value  # a ref name, a commit SHA, or a semver range (resolved first)


def artifact_revision(ref: RevisionRef, resolved_ref: str, sha: str) -> str:
    """Flux v1's artifact revision: ``<named pointer>@<algo>:<sha>`` or ``<algo>:<sha>``."""
    digest = f"{'sha256' if len(sha) == 64 else 'sha1'}:{sha}"
    if ref.kind is RefKind.COMMIT:
        return f"{ref.branch}@{digest}" if ref.branch else digest
    if ref.kind is RefKind.SEMVER:
        return f"{resolved_ref.removeprefix('refs/tags/')}@{digest}"
    return f"{ref.value}@{digest}"


def credentials_from_secret(secret: Obj, url: str) -> RepoCredentials:
    """A Flux Git Secret as credentials for ``url``: ``username``/``password`` (basic),
    ``bearerToken``, or SSH ``identity`` + ``known_hosts``. Raises ``Transient``
    (AuthenticationFailed) for a Secret that cannot be used as written: fixing the Secret
    does not change the GitRepository, so it is retried."""
    meta = secret.get("metadata") or {}
    shown = f"Secret {meta.get('namespace', '')}/{meta.get('name', '')}"
    try:
        values = secret_values(secret)
    except InvalidSource as exc:
        raise Transient(AUTHENTICATION_FAILED, exc.message) from None
    if url.startswith("ssh://"):
        identity = values.get("identity", "")
        known_hosts = values.get("known_hosts", "")
        if not identity or not known_hosts:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{shown} must hold 'identity' and 'known_hosts' for an ssh:// URL",
            )
        if values.get("password"):
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{shown}: passphrase-protected SSH keys ('password') are not supported by "
                "gitsail yet; use a key without a passphrase",
            )
        return RepoCredentials(url=url, ssh_private_key=identity, known_hosts=known_hosts)
    for key in ("ca.crt", "caFile"):
        if key in values:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"{shown}: a custom certificate authority ('{key}') is not supported by "
                "gitsail yet",
            )
    username, password = values.get("username", ""), values.get("password", "")
    token = values.get("bearerToken", "")
    if not (username or password or token):
        raise Transient(
            AUTHENTICATION_FAILED,
            f"{shown} holds neither 'username'/'password' nor 'bearerToken'",
        )
    return RepoCredentials(url=url, username=username, password=password, bearer_token=token)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found: a stored artifact, or an error (and the negative-polarity
    condition type that names where it happened, e.g. FetchFailed)."""

    artifact: StoredArtifact | None = None
    error: ReconcileError | None = None
    failed_condition: str | None = None


def compute_status(
    current: Mapping[str, Any],
    repo: GitRepository,
    outcome: Outcome,
    *,
    now: str,
    artifact_present: bool = True,
) -> dict[str, Any]:
    """The object's next ``status`` from its current one and this reconcile's outcome.

    ``artifact_present`` says whether the artifact in ``current`` is still in storage; a
    failure keeps it in status only then (a consumer must not be sent to a 404).

    Pure: the same inputs give the same dict, so an unchanged world writes nothing."""
    status = dict(current)
    conditions: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or []]
    generation = repo.generation
    if outcome.artifact is not None:
        stored = outcome.artifact
        previous = current.get("artifact") or {}
        same = previous.get("digest") == stored.digest and previous.get("path") == stored.path
        since = str(previous.get("lastUpdateTime") or now) if same else now
        status["artifact"] = stored.to_status(since)
        message = f"stored artifact for revision '{stored.revision}'"
        conditions = [c for c in conditions if c.get("type") not in NEGATIVE]
        conditions = ready_conditions(
            conditions,
            reason=SUCCEEDED,
            message=message,
            generation=generation,
            now=now,
            extra=[Condition(ARTIFACT_IN_STORAGE, "True", SUCCEEDED, message, generation)],
        )
        status["observedGeneration"] = generation
        _put_or_drop(status, "observedIgnore", repo.source.ignore)
        _put_or_drop(
            status,
            "observedInclude",
            [
                {
                    "repository": {"name": i.repository},
                    "fromPath": i.from_path,
                    "toPath": i.to_path,
                }
                for i in repo.source.include
            ]
            or None,
        )
    else:
        error = outcome.error
        assert error is not None
        conditions = [c for c in conditions if c.get("type") not in NEGATIVE]
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


def stalled_on_spec_status(
    current: Mapping[str, Any],
    error: SpecError,
    generation: int,
    requested_at: str | None,
    now: str,
) -> dict[str, Any]:
    """Status of an object whose spec cannot be used (nothing was fetched)."""
    reason = UNSUPPORTED_FIELD if isinstance(error, UnsupportedField) else INVALID_SPEC
    stalled = Stalled(reason, str(error))
    conditions = [dict(c) for c in current.get("conditions") or [] if c.get("type") not in NEGATIVE]
    status = dict(current)
    status["conditions"] = failure_conditions(conditions, stalled, generation=generation, now=now)
    status["observedGeneration"] = generation
    if requested_at is not None:
        status["lastHandledReconcileAt"] = requested_at
    return status


def _put_or_drop(status: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        status.pop(key, None)
    else:
        status[key] = value


# -- the reconciler -------------------------------------------------------------------------


class GitRepositoryReconciler(FluxSourceReconciler):
    """Reconciles ``source.toolkit.fluxcd.io`` GitRepositories (v1 and v1beta2 objects)."""

    api_version = API_VERSION
    kind = KIND
    artifact_kind = ARTIFACT_KIND

    def __init__(
        self,
        control_plane: ControlPlane,
        git: GitFetcher,
        store: ArtifactStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, store, clock=clock, field_manager=field_manager)
        self.git = git

    # -- entry points ----------------------------------------------------------------------

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        """Bring ``obj``'s artifact and status up to date; seconds until the next run."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        current = obj.get("status") or {}
        try:
            repo = parse_git_repository(obj)
        except SpecError as exc:
            generation = int(meta.get("generation") or 0)
            requested = (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
            status = stalled_on_spec_status(current, exc, generation, requested, self.now())
            await self.write_status(obj, current, status)
            return None
        if repo.source.suspend:
            return None
        await self.ensure_finalizer(obj)
        if repo.requested_at and repo.requested_at != current.get("lastHandledReconcileAt"):
            # A new `flux reconcile` / Receiver request: the push that prompted it may be
            # newer than the refs GitSource remembers for a few seconds, so ask the server.
            self.git.forget(repo.source.url)
        outcome = await self._produce(repo, current)
        present = self.artifact_present(current)
        status = compute_status(current, repo, outcome, now=self.now(), artifact_present=present)
        await self.write_status(obj, current, status)
        if outcome.error is not None:
            log.info(
                "GitRepository %s/%s: %s: %s (reasons: %s)",
                repo.namespace,
                repo.name,
                outcome.error.reason,
                outcome.error.message,
                ",".join(sorted(reasons)) or "-",
            )
        return self.next_run((repo.namespace, repo.name), outcome.error, repo.source.interval)

    # -- steps -----------------------------------------------------------------------------

    async def _produce(self, repo: GitRepository, current: Mapping[str, Any]) -> Outcome:
        source = repo.source
        try:
            creds = await self._credentials(repo)
            checkout, revision = await asyncio.wait_for(
                self._fetch(repo, creds), timeout=source.timeout
            )
        except TimeoutError:
            return Outcome(
                error=Transient(
                    GIT_OPERATION_FAILED,
                    f"fetching {redact_url(source.url)} timed out after {source.timeout:g}s "
                    "(spec.timeout); retrying",
                ),
                failed_condition=FETCH_FAILED,
            )
        except ReconcileError as exc:
            return Outcome(error=exc, failed_condition=FETCH_FAILED)
        except SourceError as exc:
            return Outcome(error=_source_error(exc), failed_condition=FETCH_FAILED)
        reused = self._unchanged(repo, current, revision)
        if reused is not None:
            return Outcome(artifact=reused)
        try:
            includes = await self._includes(repo)
        except ReconcileError as exc:
            return Outcome(error=exc, failed_condition=INCLUDE_UNAVAILABLE)
        try:
            stored = await asyncio.to_thread(self._archive, repo, checkout, revision, includes)
        except InvalidSource as exc:
            return Outcome(
                error=Stalled(STORAGE_OPERATION_FAILED, exc.message),
                failed_condition="StorageOperationFailed",
            )
        except OSError as exc:
            return Outcome(
                error=Transient(STORAGE_OPERATION_FAILED, f"cannot store the artifact: {exc}"),
                failed_condition="StorageOperationFailed",
            )
        return Outcome(artifact=stored)

    async def _credentials(self, repo: GitRepository) -> RepoCredentials | None:
        name = repo.source.secret_ref
        if name is None or repo.source.url.startswith("file://"):
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
        return credentials_from_secret(secret, repo.source.url)

    async def _fetch(self, repo: GitRepository, creds: RepoCredentials | None) -> tuple[Path, str]:
        source = repo.source
        wanted = fetch_revision(source.ref)
        resolved_ref = ""
        if source.ref.kind is RefKind.SEMVER:
            _, resolved_ref = await self.git.resolve_ref(source.url, wanted, creds)
            wanted = resolved_ref
        branch = source.ref.branch
        # Checked first: fetching the branch brings the commit, if it is in it, into the
        # mirror, so the fetch below needs no round trip for it.
        if (
            source.ref.kind is RefKind.COMMIT
            and branch is not None
            and not await self.git.branch_contains(source.url, branch, source.ref.value, creds)
        ):
            raise Transient(
                GIT_OPERATION_FAILED,
                f"commit {source.ref.value} (spec.ref.commit) is not in branch {branch} "
                f"(spec.ref.branch) of {redact_url(source.url)}",
            )
        fetched = await self.git.fetch(source.url, wanted, ".", creds)
        return fetched.root, artifact_revision(source.ref, resolved_ref, fetched.revision)

    def _unchanged(
        self, repo: GitRepository, current: Mapping[str, Any], revision: str
    ) -> StoredArtifact | None:
        """The artifact in status, when archiving again would give the same file."""
        artifact = current.get("artifact") or {}
        if (
            repo.source.include
            or artifact.get("revision") != revision
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

    async def _includes(self, repo: GitRepository) -> list[Include]:
        out: list[Include] = []
        for include in repo.source.include:
            shown = f"GitRepository {repo.namespace}/{include.repository}"
            try:
                other = await self.control_plane.get(
                    API_VERSION, KIND, include.repository, repo.namespace
                )
            except KubeError as exc:
                raise Transient(INCLUDE_UNAVAILABLE, f"cannot read {shown}: {exc}") from None
            artifact = ((other or {}).get("status") or {}).get("artifact") or {}
            path = str(artifact.get("path") or "")
            parts = path.split("/")
            archive = self.store.file(*parts) if len(parts) == 4 else None
            if other is None or archive is None:
                raise Transient(
                    INCLUDE_UNAVAILABLE,
                    f"{shown} (spec.include) has no artifact yet"
                    + ("" if other is not None else ": it does not exist"),
                )
            out.append(Include(archive, include.from_path, include.to_path))
        return out

    def _archive(
        self, repo: GitRepository, checkout: Path, revision: str, includes: Sequence[Include]
    ) -> StoredArtifact:
        rules = IgnoreRules.load(checkout, repo.source.ignore)
        return self.store.archive(
            ARTIFACT_KIND,
            repo.namespace,
            repo.name,
            checkout,
            revision=revision,
            ignore=rules,
            includes=includes,
        )


def _source_error(exc: SourceError) -> ReconcileError:
    """A source error as the condition users read, and whether waiting can help."""
    if isinstance(exc, AuthError | UnknownHostKey):
        return Transient(AUTHENTICATION_FAILED, exc.message)
    if isinstance(exc, InvalidSource):  # refused URL, escaping symlink: fix spec or source
        return Stalled(GIT_OPERATION_FAILED, exc.message)
    # RevisionNotFound (the branch may be pushed), FetchError (the server may come back)
    return Transient(GIT_OPERATION_FAILED, exc.message)
