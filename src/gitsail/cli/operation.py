"""Asking the controller for work through the API, and watching for the answer.

The CLI does not run the engine or write an Application's status (unless told to with
``--in-process``): it writes a request on the Application, as Argo CD's API server does,
and watches the Application until the controller has answered.

- **Sync**: the ``operation`` field. ``request_operation`` reads the app, refuses when an
  operation is already set ("another operation is already in progress", as Argo CD's
  ``SetAppOperation``), and writes the operation with ``status.operationState`` cleared,
  conditional on the resourceVersion it read (a conflict reads again). The controller runs
  it, records ``status.operationState`` (with the operation copied into it) and clears the
  field. ``operation_view`` reads one version of the app against the operation written:
  picked up yet, the state of *this* operation (a state recorded for an earlier operation is
  never mistaken for it), done.
- **Refresh**: the ``argocd.argoproj.io/refresh`` annotation (``normal`` or ``hard``). The
  controller compares, writes status and then removes the annotation; the refresh is
  answered when the annotation is gone.
- **Waiting**: ``watch_application`` yields every version of one Application after a
  resourceVersion, from a watch (not polling): a stream the server ends is resumed from the
  last version seen (after a dropped connection too, a few times in a row), a 410
  (``Gone``) reads the app again and watches from there.
  ``app_conditions`` evaluates what ``gitsail app wait`` waits for, as ``argocd app wait``.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gitsail.controller.reconciler import REFRESH_ANNOTATION
from gitsail.kube import Conflict, Gone, NotFound, ServerError, WatchEvent
from gitsail.model import Obj, ResourceKey

__all__ = [
    "API_VERSION",
    "COMPLETED",
    "AppConditions",
    "ApplicationApi",
    "ApplicationGone",
    "NoOperation",
    "OperationInProgress",
    "OperationView",
    "WaitTimedOut",
    "app_conditions",
    "check_sync_allowed",
    "follow",
    "initiator",
    "operation_view",
    "refreshed",
    "request_operation",
    "request_refresh",
    "request_termination",
    "retry_strategy",
    "rollback_operation",
    "sync_operation",
    "watch_application",
]

API_VERSION = "argoproj.io/v1alpha1"
KIND = "Application"
COMPLETED = frozenset({"Succeeded", "Failed", "Error"})
_CONFLICT_RETRIES = 10
_WATCH_RETRIES = 3


class ApplicationApi(Protocol):
    """The part of ``gitsail.kube.Kube`` used here (a seam for in-memory fakes)."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
    ) -> Obj: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]: ...


class OperationInProgress(Exception):
    """The Application already has an operation: a second one is refused, as in Argo CD."""

    def __init__(self, namespace: str, name: str, operation: Any) -> None:
        by = _initiated_by(operation)
        super().__init__(
            f"another operation is already in progress on application {namespace}/{name}"
            f"{f' (started by {by})' if by else ''}: wait for it with "
            f"`gitsail app wait {name} -N {namespace} --operation`"
        )


class ApplicationGone(Exception):
    """The Application was deleted (or never existed) while we watched it."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"application {name} not found in namespace {namespace}")


def _initiated_by(operation: Any) -> str:
    if not isinstance(operation, dict):
        return ""
    who = operation.get("initiatedBy") or {}
    if who.get("automated"):
        return "automated sync"
    return str(who.get("username") or "")


# -- the request -----------------------------------------------------------------------


def initiator() -> dict[str, Any]:
    """``initiatedBy`` for an operation written by this CLI: the local user's name."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user database entry (some containers)
        user = ""
    return {"username": user or "gitsail-cli"}


def retry_strategy(
    limit: int, *, duration: str = "5s", max_duration: str = "3m0s", factor: int = 2
) -> dict[str, Any] | None:
    """The ``retry`` of ``argocd app sync --retry-limit N`` (None without a limit)."""
    if limit == 0:
        return None
    return {
        "limit": limit,
        "backoff": {"duration": duration, "maxDuration": max_duration, "factor": factor},
    }


def sync_operation(
    app: Obj,
    *,
    revision: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    resources: Sequence[ResourceKey] = (),
    sync_options: Sequence[str] | None = None,
    retry: dict[str, Any] | None = None,
    initiated_by: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``operation`` Argo CD's API server writes for a sync request on ``app``.

    Sync options and the retry strategy default to the app's ``syncPolicy`` (the request's
    own replace them); ``revision`` defaults to ``spec.source.targetRevision``. Argo CD
    resolves the revision to a commit before writing; here the controller resolves it.
    """
    spec = app.get("spec") or {}
    policy = spec.get("syncPolicy") or {}
    source = spec.get("source") or {}
    sync: dict[str, Any] = {
        "revision": revision or str(source.get("targetRevision") or "HEAD"),
        "prune": prune,
        "dryRun": dry_run,
    }
    options = list(sync_options) if sync_options is not None else policy.get("syncOptions")
    if options:
        sync["syncOptions"] = list(options)
    if resources:
        sync["resources"] = [
            {"group": k.group, "kind": k.kind, "namespace": k.namespace, "name": k.name}
            for k in resources
        ]
    operation: dict[str, Any] = {
        "sync": sync,
        "initiatedBy": initiated_by or initiator(),
    }
    retry = retry if retry is not None else policy.get("retry")
    if retry:
        operation["retry"] = retry
    return operation


def rollback_operation(
    app: Obj,
    entry: dict[str, Any],
    *,
    prune: bool = False,
    dry_run: bool = False,
    initiated_by: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``operation`` of a rollback to the history ``entry``, as Argo CD writes it.

    The sync carries the entry's revision and the entry's own ``source`` (repository,
    path or chart, Helm/Kustomize options as recorded) pinned at that revision, so the
    controller renders what was deployed then, not the current spec. An entry without a
    source (a multi-source app's ``sources``, or an old entry) syncs its revision with
    the app's current source.
    """
    revision = str(entry.get("revision") or "")
    operation = sync_operation(
        app, revision=revision, prune=prune, dry_run=dry_run, initiated_by=initiated_by
    )
    source = entry.get("source")
    if isinstance(source, dict) and source:
        operation["sync"]["source"] = {**source, "targetRevision": operation["sync"]["revision"]}
    return operation


def check_sync_allowed(app: Obj, revision: str | None, dry_run: bool) -> str:
    """Argo CD's refusals before a sync is requested; an empty string when allowed."""
    meta = app.get("metadata") or {}
    spec = app.get("spec") or {}
    if meta.get("deletionTimestamp"):
        return "application is deleting"
    automated = (spec.get("syncPolicy") or {}).get("automated")
    target = str((spec.get("source") or {}).get("targetRevision") or "")
    if automated is not None and not dry_run and revision and revision != (target or "HEAD"):
        return f"Cannot sync to {revision}: auto-sync currently set to {target or 'HEAD'}"
    return ""


async def request_operation(
    kube: ApplicationApi, namespace: str, name: str, operation: dict[str, Any]
) -> Obj:
    """Write ``operation`` on the Application; the Application as written.

    Refused with OperationInProgress when one is already there. The write carries the
    resourceVersion read, so an operation set in between is never overwritten.
    """
    for _ in range(_CONFLICT_RETRIES):
        app = await kube.get(API_VERSION, KIND, name, namespace)
        if app is None:
            raise ApplicationGone(namespace, name)
        if app.get("operation"):
            raise OperationInProgress(namespace, name, app["operation"])
        version = (app.get("metadata") or {}).get("resourceVersion")
        try:
            return await kube.merge_patch(
                API_VERSION,
                KIND,
                name,
                {
                    "metadata": {"resourceVersion": version},
                    "operation": operation,
                    "status": {"operationState": None},
                },
                namespace=namespace,
            )
        except NotFound:
            raise ApplicationGone(namespace, name) from None
        except Conflict:
            continue  # changed since we read it: read again
    raise Conflict(
        409,
        "Conflict",
        f"application {namespace}/{name} kept changing; the operation was not written",
    )


class NoOperation(Exception):
    """Nothing to terminate (Argo CD's words)."""

    def __init__(self) -> None:
        super().__init__("Unable to terminate operation. No operation is in progress")


async def request_termination(kube: ApplicationApi, namespace: str, name: str) -> tuple[Obj, str]:
    """Stop the Application's operation, as Argo CD's ``terminate-op``: a running one gets
    ``status.operationState.phase: Terminating`` (the controller, or a CLI running the sync,
    stops before its next step); one not started yet is withdrawn. Each write carries the
    resourceVersion read, so a change in between is read again, never overwritten.

    Returns the Application as written and ``terminating``, ``withdrawn`` or ``already``
    (a termination was asked for before). NoOperation when there is nothing to stop.
    """
    for _ in range(_CONFLICT_RETRIES):
        app = await kube.get(API_VERSION, KIND, name, namespace)
        if app is None:
            raise ApplicationGone(namespace, name)
        phase = ((app.get("status") or {}).get("operationState") or {}).get("phase")
        version = (app.get("metadata") or {}).get("resourceVersion")
        if phase == "Terminating":
            return app, "already"
        patch: dict[str, Any] = {"metadata": {"resourceVersion": version}}
        if phase == "Running":
            patch["status"] = {"operationState": {"phase": "Terminating"}}
            what = "terminating"
        elif app.get("operation"):
            patch["operation"] = None
            what = "withdrawn"
        else:
            raise NoOperation
        try:
            return await kube.merge_patch(API_VERSION, KIND, name, patch, namespace=namespace), what
        except NotFound:
            raise ApplicationGone(namespace, name) from None
        except Conflict:
            continue  # changed since we read it (maybe started): read again
    raise Conflict(409, "Conflict", f"application {namespace}/{name} kept changing; not terminated")


@dataclass(frozen=True)
class OperationView:
    """One version of the Application, read against the operation we wrote."""

    picked_up: bool  # the controller has started it (or already cleared it)
    state: dict[str, Any] | None  # status.operationState of this very operation
    done: bool  # the controller is finished with it

    @property
    def phase(self) -> str:
        return str((self.state or {}).get("phase") or "")

    @property
    def message(self) -> str:
        return str((self.state or {}).get("message") or "")

    @property
    def resources(self) -> list[dict[str, Any]]:
        result = (self.state or {}).get("syncResult") or {}
        return [r for r in result.get("resources") or [] if isinstance(r, dict)]


def operation_view(app: Obj, written: Obj) -> OperationView:
    """Where the operation set in ``written`` stands in ``app`` (a later version).

    The operation as stored (``written["operation"]``) is what the controller copies into
    ``operationState.operation``; a state that was already there when it was written
    belongs to an earlier operation. The controller clears the field once the operation is
    over (after its retries), so done means the field no longer holds ours.
    """
    ours = written.get("operation")
    before = (written.get("status") or {}).get("operationState")
    state = (app.get("status") or {}).get("operationState")
    if not isinstance(state, dict) or state.get("operation") != ours or state == before:
        state = None
    field_is_ours = app.get("operation") == ours
    done = not field_is_ours
    return OperationView(picked_up=state is not None or done, state=state, done=done)


# -- refresh ---------------------------------------------------------------------------


async def request_refresh(
    kube: ApplicationApi, namespace: str, name: str, *, hard: bool = False
) -> Obj:
    """Ask the controller to compare the app now (``argocd.argoproj.io/refresh``)."""
    try:
        return await kube.merge_patch(
            API_VERSION,
            KIND,
            name,
            {"metadata": {"annotations": {REFRESH_ANNOTATION: "hard" if hard else "normal"}}},
            namespace=namespace,
        )
    except NotFound:
        raise ApplicationGone(namespace, name) from None


def refreshed(app: Obj) -> bool:
    """Whether the controller has answered a refresh request (it removes the annotation
    after it has compared and written status, as Argo CD's controller does)."""
    return REFRESH_ANNOTATION not in ((app.get("metadata") or {}).get("annotations") or {})


# -- waiting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppConditions:
    """What ``gitsail app wait`` sees in one version of the app."""

    sync: str
    health: str
    operation_in_progress: bool

    def holds(self, *, sync: bool, health: bool, operation: bool) -> bool:
        return (
            (not sync or self.sync == "Synced")
            and (not health or self.health == "Healthy")
            and (not operation or not self.operation_in_progress)
        )

    def __str__(self) -> str:
        busy = ", operation in progress" if self.operation_in_progress else ""
        return f"sync {self.sync}, health {self.health}{busy}"


def app_conditions(app: Obj) -> AppConditions:
    """Sync, health and whether an operation is in progress, as ``argocd app wait`` reads
    them: an operation is in progress while the field is set, while its state has no
    ``finishedAt``, or until the app was compared again after it finished."""
    status = app.get("status") or {}
    state = status.get("operationState") or {}
    in_progress = bool(app.get("operation"))
    if state and not in_progress:
        finished = str(state.get("finishedAt") or "")
        reconciled = str(status.get("reconciledAt") or "")
        # RFC 3339 UTC timestamps of the same form compare as strings.
        in_progress = state.get("phase") not in COMPLETED or not finished or reconciled < finished
    return AppConditions(
        sync=str((status.get("sync") or {}).get("status") or "Unknown"),
        health=str((status.get("health") or {}).get("status") or "Unknown"),
        operation_in_progress=in_progress,
    )


async def watch_application(
    kube: ApplicationApi,
    namespace: str,
    name: str,
    resource_version: str,
    *,
    pause: float = 0.5,
) -> AsyncIterator[Obj]:
    """Every version of the Application after ``resource_version``, as they are written.

    Raises ApplicationGone when it is deleted. After a dropped watch it waits ``pause``
    seconds, doubling, before watching again.
    """
    version = resource_version
    selector = f"metadata.name={name}"
    broken = 0  # consecutive watches that failed before sending anything
    while True:
        try:
            async for event in kube.watch(
                API_VERSION,
                KIND,
                namespace,
                resource_version=version,
                field_selector=selector,
                timeout_seconds=240,
            ):
                broken = 0
                version = event.resource_version or version
                if event.type == "BOOKMARK":
                    continue
                if event.type == "DELETED":
                    raise ApplicationGone(namespace, name)
                yield event.object
        except ServerError:
            # A dropped connection or a 5xx: watch again from where we were, a few times.
            broken += 1
            if broken > _WATCH_RETRIES:
                raise
            await asyncio.sleep(min(pause * 2 ** (broken - 1), 5.0))
        except Gone:
            # Our version is older than the server remembers: read the app and go on.
            app = await kube.get(API_VERSION, KIND, name, namespace)
            if app is None:
                raise ApplicationGone(namespace, name) from None
            version = str((app.get("metadata") or {}).get("resourceVersion") or "")
            yield app


class WaitTimedOut(Exception):
    """The wait ended before the condition held; ``last`` is the app as last seen."""

    def __init__(self, last: Obj) -> None:
        super().__init__("timed out")
        self.last = last


async def follow(
    versions: AsyncIterator[Obj],
    first: Obj,
    until: Callable[[Obj], bool],
    *,
    seen: Callable[[Obj], None] = lambda _obj: None,
    picked_up: Callable[[Obj], bool] = lambda _obj: True,
    hint_after: float = 0.0,
    hint: Callable[[], None] = lambda: None,
    give_up_after: float = 0.0,
) -> Obj:
    """The first version (``first``, then each of ``versions``) for which ``until`` holds.

    Every version is shown to ``seen``. When nothing has ``picked_up`` the request after
    ``hint_after`` seconds (0: never), ``hint`` is called once and the wait goes on.
    Raises WaitTimedOut after ``give_up_after`` seconds (0: no limit).
    """
    last = first
    seen(first)
    if until(first):
        return first
    loop = asyncio.get_running_loop()
    pending = None
    if hint_after > 0 and not picked_up(first):
        pending = loop.call_later(hint_after, hint)
    try:
        async with asyncio.timeout(give_up_after if give_up_after > 0 else None):
            async for obj in versions:
                last = obj
                seen(obj)
                if pending is not None and picked_up(obj):
                    pending.cancel()
                    pending = None
                if until(obj):
                    return obj
    except TimeoutError:
        raise WaitTimedOut(last) from None
    finally:
        if pending is not None:
            pending.cancel()
    raise WaitTimedOut(last)  # the stream ended (watch_application never ends on its own)
