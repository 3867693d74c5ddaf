"""Flux's image automation reconcilers: scan a registry, choose a tag, commit it to Git.

``ImageRepositoryReconciler`` (image-reflector-controller)::

    parse spec     -> SpecError: Stalled, no retry
    suspended?     -> nothing (no status write), None
    credentials    <- spec.secretRef (a kubernetes.io/dockerconfigjson Secret), for the host
    scan           <- ``GET /v2/<name>/tags/list`` pages (``OCIClient.tags``: Link headers on
                      the same host, token or basic auth from the registry's challenge,
                      bounded pages, at most ``Policy.oci_tags`` tags), within spec.timeout
    exclusionList  -> the tags kept; remembered in the ``TagStore`` under a revision (the
                      sha256 of the sorted tags)
    status         -> ``canonicalImageName``, ``lastScanResult`` {revision, tagCount,
                      scanTime, latestTags (the 10 highest, reverse sorted)},
                      ``observedExclusionList``, ``observedGeneration``, Ready

``ImagePolicyReconciler`` reads its repository's tags from the ``TagStore`` (the scan of this
controller process; a policy whose repository has not been scanned here yet waits for it),
chooses one (``flux_image.select_tag``) and writes ``latestRef`` {name, tag} (v1),
``latestImage`` (v1beta2's field, ``name:tag``), ``observedPreviousRef`` when it changed,
Ready.

``ImageUpdateAutomationReconciler`` (image-automation-controller), Setters strategy: the
GitRepository's URL, credentials and branch (or ``git.checkout.ref.branch``), the Ready
policies of its namespace (``policySelector`` labels), then ``gitsail.source.gitpush``:
a private clone, ``flux_image_setters.apply_setters`` on ``update.path``, one commit by
``git.commit.author`` with the rendered ``messageTemplate``, a push to ``git.push.branch``
(default: the checkout branch). Status: ``lastAutomationRunTime``, ``lastPushCommit``,
``lastPushTime``, ``observedPolicies``, ``observedSourceRevision``, Ready.

What wakes whom is the controller's business (``gitsail.controller.flux_image``): a scan
with a new revision wakes the repository's policies, a policy with a new ``latestRef``
wakes the automations of its namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gitsail.kinds._fields import annotation
from gitsail.kinds.errors import SpecError
from gitsail.kinds.flux_gitrepository import REQUESTED_AT, parse_git_repository
from gitsail.kinds.flux_gitrepository_reconciler import (
    credentials_from_secret,
    stalled_on_spec_status,
)
from gitsail.kinds.flux_image import (
    GROUP,
    ImagePolicy,
    ImageRepository,
    ImageUpdateAutomation,
    parse_image_policy,
    parse_image_repository,
    parse_image_update_automation,
    select_tag,
)
from gitsail.kinds.flux_image_message import DEFAULT_MESSAGE, render_message
from gitsail.kinds.flux_image_setters import PolicyImage, SetterResult, apply_setters
from gitsail.kinds.flux_source_reconciler import rfc3339, status_patch, utcnow
from gitsail.kinds.gotemplate import TemplateError
from gitsail.kinds.records import RefKind
from gitsail.kinds.status import (
    ReconcileError,
    Stalled,
    Transient,
    failure_conditions,
    ready_conditions,
)
from gitsail.kube.errors import KubeError, NotFound
from gitsail.model import Obj
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, InvalidSource, SourceError
from gitsail.source.git import GitSource
from gitsail.source.gitpush import Identity, PushResult, push_change
from gitsail.source.oci import credentials_from_docker_config, parse_oci_reference
from gitsail.source.yamledit import EditError

__all__ = [
    "API_VERSION",
    "ImagePolicyReconciler",
    "ImageRepositoryReconciler",
    "ImageUpdateAutomationReconciler",
    "TagLister",
    "TagStore",
    "canonical_image",
]

log = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/v1"
LATEST_TAGS = 10
SUCCEEDED = "Succeeded"
DEPENDENCY_NOT_READY = "DependencyNotReady"
AUTHENTICATION_FAILED = "AuthenticationFailed"
READ_OPERATION_FAILED = "ReadOperationFailed"
INVALID_SPEC = "InvalidSpec"
GIT_OPERATION_FAILED = "GitOperationFailed"
UPDATE_FAILED = "UpdateFailed"
ACCESS_DENIED = "AccessDenied"
RETRY_BASE = 1.0
POLICY_WAIT = 5.0  # a policy whose repository has no scan in this process yet
MAX_POLICIES = 1000  # policies of one namespace an automation considers


class ControlPlane(Protocol):
    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]: ...

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj: ...


class TagLister(Protocol):
    """``gitsail.source.oci.OCIClient`` has it."""

    async def tags(
        self, ref: str, creds: RepoCredentials | None = None, *, plain_http: bool = False
    ) -> list[str]: ...


@dataclass
class TagStore:
    """The tags of each scanned ImageRepository, by (namespace, name): (revision, tags)."""

    scans: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def put(self, key: tuple[str, str], tags: Sequence[str]) -> str:
        ordered = tuple(sorted(set(tags)))
        revision = "sha256:" + hashlib.sha256("\n".join(ordered).encode()).hexdigest()
        self.scans[key] = (revision, ordered)
        return revision

    def get(self, key: tuple[str, str]) -> tuple[str, tuple[str, ...]] | None:
        return self.scans.get(key)

    def forget(self, key: tuple[str, str]) -> None:
        self.scans.pop(key, None)


def canonical_image(image: str) -> str:
    """Docker's canonical name: ``nginx`` -> ``docker.io/library/nginx``."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image
    if not sep:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def _registry_ref(image: str) -> str:
    """The ``oci://host/repository`` the tags are listed at (Docker Hub: its registry)."""
    canonical = canonical_image(image)
    host, _, repository = canonical.partition("/")
    if host == "docker.io":
        host = "index.docker.io"
    return f"oci://{host}/{repository}"


class _Base:
    kind: str = ""

    def __init__(
        self,
        control_plane: ControlPlane,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        self.control_plane = control_plane
        self.clock = clock
        self.field_manager = field_manager
        self._failures: dict[tuple[str, str], int] = {}

    api_version = API_VERSION

    def now(self) -> str:
        return rfc3339(self.clock())

    def next_run(
        self, key: tuple[str, str], error: ReconcileError | None, interval: float
    ) -> float:
        if error is None or isinstance(error, Stalled):
            self._failures.pop(key, None)
            return interval
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if isinstance(error, Transient) and error.retry_after is not None:
            return float(error.retry_after)
        return min(interval, RETRY_BASE * (1 << min(failures - 1, 20)))

    async def write_status(
        self, obj: Obj, current: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        requested = annotation(obj, REQUESTED_AT)
        if requested is not None:  # `flux reconcile` / `gitsail reconcile image ...`
            status = {**status, "lastHandledReconcileAt": requested}
        patch = status_patch(current, status)
        if patch is None:
            return
        meta = obj.get("metadata") or {}
        try:
            await self.control_plane.merge_patch(
                str(obj.get("apiVersion") or API_VERSION),
                self.kind,
                str(meta.get("name")),
                patch,
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=self.field_manager,
            )
        except NotFound:
            return

    async def stalled_on_spec(self, obj: Obj, error: SpecError) -> None:
        current = dict(obj.get("status") or {})
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        status = stalled_on_spec_status(current, error, generation, None, self.now())
        await self.write_status(obj, current, status)

    def failed(
        self, current: Mapping[str, Any], error: ReconcileError, generation: int
    ) -> dict[str, Any]:
        status = dict(current)
        status["conditions"] = failure_conditions(
            list(current.get("conditions") or []), error, generation=generation, now=self.now()
        )
        return status

    def succeeded(
        self, current: Mapping[str, Any], message: str, generation: int
    ) -> dict[str, Any]:
        status = dict(current)
        status["conditions"] = ready_conditions(
            list(current.get("conditions") or []),
            reason=SUCCEEDED,
            message=message,
            generation=generation,
            now=self.now(),
        )
        status["observedGeneration"] = generation
        return status


def _deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


# -- ImageRepository ---------------------------------------------------------------------


class ImageRepositoryReconciler(_Base):
    kind = "ImageRepository"

    def __init__(
        self,
        control_plane: ControlPlane,
        registry: TagLister,
        store: TagStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, clock=clock, field_manager=field_manager)
        self.registry = registry
        self.store = store

    def forget(self, namespace: str, name: str) -> None:
        self.store.forget((namespace, name))
        self._failures.pop((namespace, name), None)

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        if _deleting(obj):
            return None
        try:
            repo = parse_image_repository(obj)
        except SpecError as exc:
            await self.stalled_on_spec(obj, exc)
            return None
        if repo.suspend:
            return None
        key = (repo.namespace, repo.name)
        current = dict(obj.get("status") or {})
        error: ReconcileError | None = None
        try:
            tags = await self._scan(repo)
        except ReconcileError as exc:
            error = exc
            status = self.failed(current, exc, repo.generation)
        else:
            kept = repo.keep(tags)
            revision = self.store.put(key, kept)
            status = self.succeeded(
                current, f"successful scan: found {len(kept)} tags", repo.generation
            )
            previous = current.get("lastScanResult") or {}
            scan_time = (
                str(previous.get("scanTime"))
                if previous.get("revision") == revision and previous.get("scanTime")
                else self.now()
            )
            status["canonicalImageName"] = canonical_image(repo.image)
            status["lastScanResult"] = {
                "revision": revision,
                "tagCount": len(kept),
                "scanTime": scan_time,
                "latestTags": sorted(kept, reverse=True)[:LATEST_TAGS],
            }
            status["observedExclusionList"] = list(repo.exclusions)
        await self.write_status(obj, current, status)
        return self.next_run(key, error, repo.interval)

    async def _scan(self, repo: ImageRepository) -> list[str]:
        ref = _registry_ref(repo.image)
        try:
            target = parse_oci_reference(ref)
        except InvalidSource as exc:
            raise Stalled(INVALID_SPEC, exc.message) from None
        creds = await self._credentials(repo, target.host)
        if repo.insecure and creds is not None:
            creds = RepoCredentials(
                url=creds.url,
                username=creds.username,
                password=creds.password,
                bearer_token=creds.bearer_token,
                insecure=True,
            )
        try:
            return await asyncio.wait_for(
                self.registry.tags(ref, creds, plain_http=repo.insecure), repo.timeout
            )
        except TimeoutError:
            raise Transient(
                READ_OPERATION_FAILED,
                f"scanning {repo.image} took longer than spec.timeout ({repo.timeout:g}s)",
            ) from None
        except AuthError as exc:
            raise Transient(AUTHENTICATION_FAILED, exc.message) from None
        except SourceError as exc:
            raise Transient(READ_OPERATION_FAILED, exc.message) from None

    async def _credentials(self, repo: ImageRepository, host: str) -> RepoCredentials | None:
        if repo.secret_ref is None:
            return None
        try:
            secret = await self.control_plane.get("v1", "Secret", repo.secret_ref, repo.namespace)
        except KubeError as exc:
            raise Transient(AUTHENTICATION_FAILED, f"cannot read Secret: {exc}") from None
        if secret is None:
            raise Transient(
                AUTHENTICATION_FAILED,
                f"Secret {repo.namespace}/{repo.secret_ref} (spec.secretRef) does not exist",
            )
        try:
            found = credentials_from_docker_config(secret, host)
        except InvalidSource as exc:
            raise Transient(AUTHENTICATION_FAILED, exc.message) from None
        if found is None and host == "index.docker.io":
            found = credentials_from_docker_config(secret, "docker.io")
        return found


# -- ImagePolicy -------------------------------------------------------------------------


class ImagePolicyReconciler(_Base):
    kind = "ImagePolicy"

    def __init__(
        self,
        control_plane: ControlPlane,
        store: TagStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, clock=clock, field_manager=field_manager)
        self.store = store

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        if _deleting(obj):
            return None
        try:
            policy = parse_image_policy(obj)
        except SpecError as exc:
            await self.stalled_on_spec(obj, exc)
            return None
        current = dict(obj.get("status") or {})
        key = (policy.namespace, policy.name)
        try:
            image, tag = await self._choose(policy)
        except ReconcileError as exc:
            await self.write_status(obj, current, self.failed(current, exc, policy.generation))
            if isinstance(exc, Transient):
                return self.next_run(key, exc, POLICY_WAIT)
            return None  # a new scan wakes it
        self._failures.pop(key, None)
        status = self.succeeded(
            current, f"Latest image tag for '{image}' resolved to {tag}", policy.generation
        )
        latest = {"name": image, "tag": tag}
        previous = current.get("latestRef")
        if isinstance(previous, dict) and previous != latest:
            status["observedPreviousRef"] = dict(previous)
        status["latestRef"] = latest
        status["latestImage"] = f"{image}:{tag}"
        await self.write_status(obj, current, status)
        return None  # a new scan of its repository wakes it

    async def _choose(self, policy: ImagePolicy) -> tuple[str, str]:
        ns, name = policy.repository_namespace, policy.repository_name
        repo = await self.control_plane.get(API_VERSION, "ImageRepository", name, ns)
        if repo is None:
            raise Transient(DEPENDENCY_NOT_READY, f"ImageRepository {ns}/{name} does not exist")
        try:
            spec = parse_image_repository(repo)
        except SpecError:
            raise Transient(
                DEPENDENCY_NOT_READY, f"ImageRepository {ns}/{name} has an invalid spec"
            ) from None
        if ns != policy.namespace and not await self._access_allowed(repo, policy.namespace):
            raise Stalled(
                ACCESS_DENIED,
                f"ImageRepository {ns}/{name} does not grant access to namespace "
                f"{policy.namespace} (spec.accessFrom.namespaceSelectors)",
            )
        scan = self.store.get((ns, name))
        last = (repo.get("status") or {}).get("lastScanResult") or {}
        if scan is None or (last.get("revision") and last.get("revision") != scan[0]):
            raise Transient(
                DEPENDENCY_NOT_READY,
                f"ImageRepository {ns}/{name} has not been scanned yet",
                retry_after=POLICY_WAIT,
            )
        tag = select_tag(policy, scan[1])
        if tag is None:
            raise Stalled(
                "ReconciliationFailed",
                f"cannot determine latest tag for policy: no tag of {spec.image} matches "
                f"the {policy.kind} policy",
            )
        return spec.image, tag

    async def _access_allowed(self, repo: Obj, namespace: str) -> bool:
        """Flux's ACL: another namespace's policy may read this repository's tags only when
        ``spec.accessFrom.namespaceSelectors`` has a selector matching that namespace's
        labels (``matchLabels: {}`` matches every namespace); no ``accessFrom``: denied."""
        access = (repo.get("spec") or {}).get("accessFrom")
        selectors = access.get("namespaceSelectors") if isinstance(access, dict) else None
        if not isinstance(selectors, list) or not selectors:
            return False
        try:
            found = await self.control_plane.get("v1", "Namespace", namespace)
        except KubeError:
            return False
        labels = ((found or {}).get("metadata") or {}).get("labels") or {}
        for selector in selectors[:MAX_POLICIES]:
            wanted = selector.get("matchLabels") if isinstance(selector, dict) else None
            if wanted is None:
                wanted = {}
            if isinstance(wanted, dict) and all(labels.get(k) == v for k, v in wanted.items()):
                return True
        return False


# -- ImageUpdateAutomation ---------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    url: str
    branch: str
    creds: RepoCredentials | None


class ImageUpdateAutomationReconciler(_Base):
    kind = "ImageUpdateAutomation"

    def __init__(
        self,
        control_plane: ControlPlane,
        git: GitSource,
        *,
        clock: Callable[[], datetime] = utcnow,
        field_manager: str = "gitsail",
    ) -> None:
        super().__init__(control_plane, clock=clock, field_manager=field_manager)
        self.git = git

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        if _deleting(obj):
            return None
        try:
            auto = parse_image_update_automation(obj)
        except SpecError as exc:
            await self.stalled_on_spec(obj, exc)
            return None
        if auto.suspend:
            return None
        key = (auto.namespace, auto.name)
        current = dict(obj.get("status") or {})
        error: ReconcileError | None = None
        try:
            source = await self._source(auto)
            policies = await self._policies(auto)
            pushed = await self._run(auto, source, policies)
        except ReconcileError as exc:
            error = exc
            status = self.failed(current, exc, auto.generation)
            status["lastAutomationRunTime"] = self.now()
        else:
            if pushed is not None:
                message = (
                    f"committed and pushed commit '{pushed.commit}' to branch '{pushed.branch}'"
                )
            else:
                message = "repository up-to-date"
            status = self.succeeded(current, message, auto.generation)
            status["lastAutomationRunTime"] = self.now()
            status["observedPolicies"] = {
                name.split(":", 1)[1]: {"name": image.name, "tag": image.tag}
                for name, image in sorted(policies.items())
            }
            if pushed is not None:
                status["lastPushCommit"] = pushed.commit
                status["lastPushTime"] = self.now()
                status["observedSourceRevision"] = f"{pushed.branch}@sha1:{pushed.commit}"
        await self.write_status(obj, current, status)
        return self.next_run(key, error, auto.interval)

    async def _source(self, auto: ImageUpdateAutomation) -> _Source:
        ns, name = auto.source_namespace, auto.source_name
        if ns != auto.namespace:
            # It would push with another namespace's Git credentials: never.
            raise Stalled(
                ACCESS_DENIED,
                f"sourceRef names GitRepository {ns}/{name} in another namespace; an "
                "ImageUpdateAutomation may only push through a GitRepository of its own "
                "namespace",
            )
        try:
            obj = await self.control_plane.get(
                "source.toolkit.fluxcd.io/v1", "GitRepository", name, ns
            )
        except KubeError as exc:
            raise Transient(DEPENDENCY_NOT_READY, f"cannot read GitRepository: {exc}") from None
        if obj is None:
            raise Transient(DEPENDENCY_NOT_READY, f"GitRepository {ns}/{name} does not exist")
        try:
            repo = parse_git_repository(obj)
        except SpecError as exc:
            raise Transient(
                DEPENDENCY_NOT_READY, f"GitRepository {ns}/{name} is invalid: {exc}"
            ) from None
        branch = auto.checkout_branch
        if not branch:
            ref = repo.source.ref
            if ref.kind is RefKind.BRANCH:
                branch = ref.value
            elif ref.kind is RefKind.COMMIT and ref.branch:
                branch = ref.branch
            else:
                raise Stalled(
                    INVALID_SPEC,
                    f"GitRepository {ns}/{name} does not follow a branch; set "
                    "spec.git.checkout.ref.branch",
                )
        creds: RepoCredentials | None = None
        if repo.source.secret_ref is not None and not repo.source.url.startswith("file://"):
            secret = await self.control_plane.get("v1", "Secret", repo.source.secret_ref, ns)
            if secret is None:
                raise Transient(
                    AUTHENTICATION_FAILED,
                    f"Secret {ns}/{repo.source.secret_ref} of GitRepository {name} does not exist",
                )
            creds = credentials_from_secret(secret, repo.source.url)
        return _Source(repo.source.url, branch, creds)

    async def _policies(self, auto: ImageUpdateAutomation) -> dict[str, PolicyImage]:
        selector = ",".join(f"{k}={v}" for k, v in auto.policy_selector) or None
        try:
            items = await self.control_plane.list(
                API_VERSION, "ImagePolicy", auto.namespace, label_selector=selector
            )
        except KubeError as exc:
            raise Transient(DEPENDENCY_NOT_READY, f"cannot list ImagePolicies: {exc}") from None
        chosen: dict[str, PolicyImage] = {}
        for item in items[:MAX_POLICIES]:
            meta = item.get("metadata") or {}
            latest = (item.get("status") or {}).get("latestRef") or {}
            name, tag = latest.get("name"), latest.get("tag")
            if isinstance(name, str) and isinstance(tag, str) and name and tag:
                chosen[f"{meta.get('namespace')}:{meta.get('name')}"] = PolicyImage(name, tag)
        return chosen

    async def _run(
        self, auto: ImageUpdateAutomation, source: _Source, policies: Mapping[str, PolicyImage]
    ) -> PushResult | None:
        outcome = _Outcome()
        if not policies:
            return None

        def edit(work: Path) -> list[str]:
            result = apply_setters(work, auto.update_path, policies)
            for rel, text in result.files.items():
                (work / rel).write_text(text, encoding="utf-8")
            outcome.result = result
            return sorted(result.files)

        def message() -> str:
            template = auto.message_template or DEFAULT_MESSAGE
            if outcome.result is None:  # push_change asks only after an edit
                raise InvalidSource("no update to describe in a commit message")
            return render_message(template, auto, outcome.result)

        try:
            pushed = await push_change(
                self.git,
                source.url,
                source.creds,
                checkout_branch=source.branch,
                push_branch=auto.push_branch or source.branch,
                edit=edit,
                identity=Identity(auto.author_name, auto.author_email),
                message=message,
            )
        except EditError as exc:
            raise Transient(UPDATE_FAILED, str(exc)) from None
        except TemplateError as exc:
            raise Stalled(INVALID_SPEC, f"spec.git.commit.messageTemplate: {exc}") from None
        except AuthError as exc:
            raise Transient(AUTHENTICATION_FAILED, exc.message) from None
        except SourceError as exc:
            raise Transient(GIT_OPERATION_FAILED, exc.message) from None
        return pushed


@dataclass
class _Outcome:
    result: SetterResult | None = None
