"""The ApplicationSet reconciler: parameter sets in, Applications created, updated, deleted.

One pass:

1. parse the set (a malformed spec: conditions say so, nothing is touched);
2. generate every parameter set and render every Application
   (``argo_applicationset_generators``, ``argo_applicationset.render_applications``). Any
   failure — git unreachable, a bad file, a missing key under ``missingkey=error``, an
   invalid or duplicate name — keeps every existing Application: **safer than Argo CD**,
   which may delete what a broken generator no longer lists;
3. apply the Applications with server-side apply under the field manager
   ``gitsail-applicationset`` (``create-only``: only the missing ones), each owned by the
   set (``ownerReferences``, ``controller: true``). An Application of the same name that the
   set does not own is left alone and named in the conditions;
4. delete the set's Applications no parameter set makes any more, only under
   ``applicationsSync: create-delete`` or ``sync``, and only when they are at most
   ``Policy.appset_delete_share`` of the set's Applications (**safer than Argo CD**: a
   result that would delete more deletes none, until a result within the share returns).
   With ``preserveResourcesOnDeletion`` the Application's
   ``resources-finalizer.argocd.argoproj.io`` is removed first, so its workloads stay;
5. ONE status patch: ``conditions`` as Argo CD writes them (``ErrorOccurred``,
   ``ParametersGenerated``, ``ResourcesUpToDate``) and ``status.resources`` (one entry per
   generated Application with its sync and health status).

The pass returns when to run again: the shortest ``requeueAfterSeconds`` of its git
generators (Argo's default 180 s), so a new commit is seen; cluster Secret changes wake the
set through the controller's watch (``controller/argo_kinds.py``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gitsail.kinds.argo_applicationset import (
    API_VERSION,
    KIND,
    RESOURCES_FINALIZER,
    AppSet,
    RenderError,
    parse_applicationset,
    render_applications,
)
from gitsail.kinds.argo_applicationset_generators import (
    Cluster,
    GeneratorError,
    Sources,
    cluster_from_secret,
    generate,
)
from gitsail.kinds.argo_applicationset_rollout import (
    plan,
    sync_operation,
    without_automated_sync,
)
from gitsail.kinds.errors import SpecError
from gitsail.kinds.status import Condition, put_condition
from gitsail.kube import KubeError, NotFound
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.credentials import match_credentials

__all__ = [
    "FIELD_MANAGER",
    "ApplicationSetReconciler",
    "ClusterSources",
    "PassResult",
    "owned_by",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "gitsail-applicationset"
APPLICATION = "Application"
CLUSTER_SECRETS = "argocd.argoproj.io/secret-type=cluster"
REPO_SECRETS = "argocd.argoproj.io/secret-type in (repository,repo-creds)"
ERROR_RETRY = 60.0  # a failed generator is tried again after this long (or its requeue)

# Condition types and reasons, as Argo CD writes them.
ERROR_OCCURRED = "ErrorOccurred"
PARAMETERS_GENERATED = "ParametersGenerated"
RESOURCES_UP_TO_DATE = "ResourcesUpToDate"
UP_TO_DATE = "ApplicationSetUpToDate"
GENERATION_ERROR = "ApplicationGenerationFromParamsError"
SPEC_ERROR = "ApplicationSetSpecInvalid"  # gitsail's: a spec that cannot be read
VALIDATION_ERROR = "ApplicationValidationError"
APPLY_ERROR = "ApplicationApplyError"
DELETE_ERROR = "DeleteApplicationError"
DELETION_WITHHELD = "DeletionWithheld"  # gitsail's: over Policy.appset_delete_share
ROLLOUT_PROGRESSING = "RolloutProgressing"
ROLLOUT_RETRY = 10.0  # a RollingSync in progress looks at its Applications this often


class ControlPlane(Protocol):
    """The control plane as the reconciler uses it (``gitsail.kube.Kube`` has it)."""

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]: ...

    async def apply(
        self,
        obj: Obj,
        field_manager: str = "gitsail",
        force: bool = False,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> Obj: ...

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

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = "Foreground",
        dry_run: bool = False,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> bool: ...


class GitCheckouts(Protocol):
    """``gitsail.source.GitSource`` as generators use it."""

    async def fetch(self, repo_url: str, revision: str, path: str, creds: Any = None) -> Any: ...


class ClusterSources:
    """Generators' ``Sources`` on a live control plane: cluster Secrets of the control
    namespace (from ``cluster_secrets`` — the controller's watch — or a list) and checkouts
    through the engine's shared ``GitSource`` with Argo CD's repository credentials."""

    def __init__(
        self,
        kube: ControlPlane,
        git: GitCheckouts,
        control_namespace: str,
        cluster_secrets: Callable[[], Awaitable[list[Obj]]] | None = None,
    ) -> None:
        self.kube = kube
        self.git = git
        self.control_namespace = control_namespace
        self.cluster_secrets = cluster_secrets

    async def clusters(self) -> list[Cluster]:
        if self.cluster_secrets is not None:
            secrets = await self.cluster_secrets()
        else:
            secrets = await self.kube.list(
                "v1", "Secret", self.control_namespace, label_selector=CLUSTER_SECRETS
            )
        found = [cluster_from_secret(s) for s in sorted(secrets, key=_name)]
        return [c for c in found if c is not None]

    async def checkout(self, repo_url: str, revision: str) -> Path:
        secrets = await self.kube.list(
            "v1", "Secret", self.control_namespace, label_selector=REPO_SECRETS
        )
        artifact = await self.git.fetch(
            repo_url, revision, ".", match_credentials(repo_url, secrets)
        )
        return Path(artifact.root)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def owned_by(app: Obj, appset_uid: str) -> bool:
    """Whether ``app`` names the set (by uid) as its controlling owner."""
    for ref in (app.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("uid") == appset_uid:
            return True
    return False


@dataclass(frozen=True)
class PassResult:
    """What one pass did (for tests and logs)."""

    applied: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    withheld: tuple[str, ...] = ()  # would have been deleted, over the share
    error: str = ""
    applications: tuple[str, ...] = ()  # the set's Applications after the pass


class ApplicationSetReconciler:
    api_version = API_VERSION
    kind = KIND

    def __init__(
        self,
        kube: ControlPlane,
        sources: Sources,
        *,
        policy: Policy = DEFAULT_POLICY,
        field_manager: str = FIELD_MANAGER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.sources = sources
        self.policy = policy
        self.field_manager = field_manager
        self.clock = clock
        self.last: dict[tuple[str, str], PassResult] = {}

    async def reconcile(self, obj: Obj, reasons: frozenset[str] = frozenset()) -> float | None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        status = dict(obj.get("status") or {})
        conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            appset = parse_applicationset(obj)
        except SpecError as exc:
            conditions = _failed(conditions, SPEC_ERROR, str(exc), now)
            await self._write(obj, status, {**status, "conditions": conditions})
            self.last[key] = PassResult(error=str(exc))
            return None
        existing = await self.kube.list(API_VERSION, APPLICATION, appset.namespace)
        owned = {_name(a): a for a in existing if owned_by(a, appset.uid)}
        others = {_name(a) for a in existing if not owned_by(a, appset.uid)}
        try:
            generated = await generate(appset, self.sources, self.policy)
            desired = render_applications(appset, generated.sets)
        except (GeneratorError, RenderError) as exc:
            reason = VALIDATION_ERROR if isinstance(exc, RenderError) else GENERATION_ERROR
            message = f"{exc}; every existing Application is kept"
            conditions = _failed(conditions, reason, message, now)
            new = {**status, "conditions": conditions, "resources": _resources(owned.values())}
            await self._write(obj, status, new)
            self.last[key] = PassResult(error=message)
            log.warning("%s: %s", appset.subject, message)
            return ERROR_RETRY
        errors: list[str] = []
        applied: list[str] = []
        current: dict[str, Obj] = {}
        for app in desired:
            name = app["metadata"]["name"]
            if name in others:
                errors.append(f"{name} exists and is not owned by this ApplicationSet: left alone")
                continue
            if name in owned and not appset.may_update:
                current[name] = owned[name]
                continue
            if appset.rolling is not None:
                app = without_automated_sync(app)  # the set syncs them, step by step
            try:
                current[name] = await self.kube.apply(app, self.field_manager, force=True)
            except KubeError as exc:
                errors.append(f"{name}: {exc}")
                if name in owned:
                    current[name] = owned[name]
                continue
            applied.append(name)
        gone = sorted(set(owned) - {a["metadata"]["name"] for a in desired})
        deleted: list[str] = []
        withheld: list[str] = []
        if gone and appset.may_delete:
            share = len(gone) / len(owned)
            if share > self.policy.appset_delete_share:
                withheld = gone
            else:
                for name in gone:
                    try:
                        await self._delete(appset, owned[name])
                    except KubeError as exc:
                        errors.append(f"deleting {name}: {exc}")
                        current[name] = owned[name]
                        continue
                    deleted.append(name)
        elif gone:
            current.update({n: owned[n] for n in gone})  # kept by the policy: still the set's
        conditions = self._conditions(conditions, appset, errors, withheld, len(owned), now)
        new = {**status, "conditions": conditions, "resources": _resources(current.values())}
        requeue = generated.requeue_after
        if appset.rolling is not None:
            by_name = {a["metadata"]["name"]: a for a in desired}
            apps = [current[n] for n in by_name if n in current]
            rollout = plan(appset.rolling, apps, status.get("applicationStatus") or [], now)
            for name in rollout.sync:
                try:
                    await self.kube.merge_patch(
                        API_VERSION,
                        APPLICATION,
                        name,
                        sync_operation(by_name[name]),
                        appset.namespace,
                        field_manager=self.field_manager,
                    )
                except KubeError as exc:
                    log.warning("%s: cannot sync %s: %s", appset.subject, name, exc)
            new["applicationStatus"] = list(rollout.statuses)
            progressing = Condition(
                ROLLOUT_PROGRESSING,
                "False" if rollout.done else "True",
                "ApplicationSetRolloutComplete" if rollout.done else "ApplicationSetModified",
                "Complete" if rollout.done else f"syncing step by step ({len(rollout.sync)} now)",
            )
            new["conditions"] = put_condition(new["conditions"], progressing, now)
            if not rollout.done:
                requeue = ROLLOUT_RETRY if requeue is None else min(requeue, ROLLOUT_RETRY)
        else:
            new.pop("applicationStatus", None)
        await self._write(obj, status, new)
        self.last[key] = PassResult(
            tuple(applied),
            tuple(deleted),
            tuple(withheld),
            "; ".join(errors),
            tuple(sorted(current)),
        )
        return requeue

    async def finalize(self, obj: Obj) -> float | None:
        # The apps go with the set by their owner references (garbage collection).
        return None

    async def _delete(self, appset: AppSet, app: Obj) -> None:
        meta = app.get("metadata") or {}
        name = str(meta.get("name"))
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        if appset.preserve_resources and any(f.startswith(RESOURCES_FINALIZER) for f in finalizers):
            kept = [f for f in finalizers if not f.startswith(RESOURCES_FINALIZER)]
            patch: dict[str, Any] = {
                "metadata": {
                    "finalizers": kept or None,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            app = await self.kube.merge_patch(
                API_VERSION,
                APPLICATION,
                name,
                patch,
                appset.namespace,
                field_manager=self.field_manager,
            )
            meta = app.get("metadata") or {}
        await self.kube.delete(
            API_VERSION,
            APPLICATION,
            name,
            appset.namespace,
            propagation="Background",
            preconditions={"uid": str(meta.get("uid") or "")},
        )

    def _conditions(
        self,
        conditions: list[dict[str, Any]],
        appset: AppSet,
        errors: list[str],
        withheld: list[str],
        owned: int,
        now: str,
    ) -> list[dict[str, Any]]:
        conditions = put_condition(
            conditions,
            Condition(
                PARAMETERS_GENERATED,
                "True",
                PARAMETERS_GENERATED,
                "Successfully generated parameter sets for all Applications",
            ),
            now,
        )
        if withheld:
            share = self.policy.appset_delete_share
            message = (
                f"{len(withheld)} of {owned} Applications ({', '.join(withheld)}) are no longer "
                f"generated; deleting more than {share:.0%} of the set at once is withheld "
                "(GITSAIL_APPSET_DELETE_SHARE) until a result within that share returns"
            )
            errors = [*errors, message]
        if errors:
            reason = DELETION_WITHHELD if withheld and len(errors) == 1 else APPLY_ERROR
            message = "; ".join(errors)
            conditions = put_condition(
                conditions, Condition(ERROR_OCCURRED, "True", reason, message), now
            )
            return put_condition(
                conditions, Condition(RESOURCES_UP_TO_DATE, "False", reason, message), now
            )
        ok = "All applications have been generated successfully"
        conditions = put_condition(
            conditions, Condition(ERROR_OCCURRED, "False", UP_TO_DATE, ok), now
        )
        return put_condition(
            conditions, Condition(RESOURCES_UP_TO_DATE, "True", UP_TO_DATE, ok), now
        )

    async def _write(self, obj: Obj, current: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if dict(current) == dict(new):
            return
        patch: dict[str, Any] = {k: v for k, v in new.items() if current.get(k) != v}
        for key in current:
            if key not in new:
                patch[key] = None
        meta = obj.get("metadata") or {}
        with contextlib.suppress(NotFound):  # deleted meanwhile
            await self.kube.merge_patch(
                API_VERSION,
                KIND,
                str(meta.get("name")),
                {"status": patch},
                namespace=str(meta.get("namespace")),
                subresource="status",
                field_manager=self.field_manager,
            )


def _failed(
    conditions: list[dict[str, Any]], reason: str, message: str, now: str
) -> list[dict[str, Any]]:
    conditions = put_condition(conditions, Condition(ERROR_OCCURRED, "True", reason, message), now)
    conditions = put_condition(
        conditions, Condition(PARAMETERS_GENERATED, "False", reason, message), now
    )
    return put_condition(conditions, Condition(RESOURCES_UP_TO_DATE, "False", reason, message), now)


def _resources(apps: Any) -> list[dict[str, Any]]:
    """``status.resources``: the set's Applications with their sync and health status."""
    out = []
    for app in sorted(apps, key=_name):
        status = app.get("status") or {}
        entry: dict[str, Any] = {
            "group": "argoproj.io",
            "version": "v1alpha1",
            "kind": APPLICATION,
            "namespace": str((app.get("metadata") or {}).get("namespace") or ""),
            "name": _name(app),
            "status": str((status.get("sync") or {}).get("status") or "Unknown"),
        }
        health = (status.get("health") or {}).get("status")
        if health:
            entry["health"] = {"status": str(health)}
        out.append(entry)
    return out
