"""Asking the controller through the API: the request written, and reading the answer from
a watch, against an in-memory fake of the Application API."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gitsail.cli.operation import (
    ApplicationGone,
    OperationInProgress,
    WaitTimedOut,
    app_conditions,
    check_sync_allowed,
    follow,
    operation_view,
    refreshed,
    request_operation,
    request_refresh,
    retry_strategy,
    sync_operation,
    watch_application,
)
from gitsail.kube import Conflict, Gone, ServerError, WatchEvent
from gitsail.model import Obj, ResourceKey


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


@dataclass
class FakeApi:
    """One Application; versions counted; watches replay the versions after a resourceVersion.

    ``streams`` scripts what each watch call does: a list of events/exceptions to replay
    (then the stream ends), or None to follow live writes until cancelled.
    """

    app: Obj | None
    version: int = 1
    history: list[WatchEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    streams: list[list[WatchEvent | Exception] | None] = field(default_factory=list)
    watched_from: list[str | None] = field(default_factory=list)
    before_patch: list[Obj] = field(default_factory=list)  # writes "by someone else" first

    def __post_init__(self) -> None:
        if self.app is not None:
            self.app["metadata"]["resourceVersion"] = str(self.version)

    def write(self, patch: Obj, etype: str = "MODIFIED") -> Obj:
        assert self.app is not None
        self.version += 1
        self.app = merge(self.app, patch)
        self.app["metadata"]["resourceVersion"] = str(self.version)
        self.history.append(WatchEvent(etype, copy.deepcopy(self.app)))  # type: ignore[arg-type]
        self.changed.set()
        return copy.deepcopy(self.app)

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return copy.deepcopy(self.app)

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
    ) -> Obj:
        if self.before_patch:
            self.write(self.before_patch.pop(0))
        assert self.app is not None
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected and expected != self.app["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        patch = copy.deepcopy(patch)
        (patch.get("metadata") or {}).pop("resourceVersion", None)
        return self.write(patch)

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(resource_version)
        script = self.streams.pop(0) if self.streams else None
        if script is not None:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item
            return
        sent = int(resource_version or 0)
        while True:
            for event in self.history:
                if int(event.resource_version) > sent:
                    sent = int(event.resource_version)
                    yield event
            self.changed.clear()
            await self.changed.wait()


def application(**spec: Any) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example/r.git", "targetRevision": "main"}}
        | spec,
        "status": {},
    }


# -- the operation written -------------------------------------------------------------


def test_sync_operation_has_argo_cds_shape_with_the_apps_policy_as_default() -> None:
    app = application(
        syncPolicy={"syncOptions": ["CreateNamespace=true"], "retry": {"limit": 2}},
    )
    op = sync_operation(app, prune=True, initiated_by={"username": "ada"})
    assert op == {
        "sync": {
            "revision": "main",
            "prune": True,
            "dryRun": False,
            "syncOptions": ["CreateNamespace=true"],
        },
        "initiatedBy": {"username": "ada"},
        "retry": {"limit": 2},
    }


def test_sync_operation_request_replaces_revision_resources_options_and_retry() -> None:
    app = application(syncPolicy={"syncOptions": ["Validate=false"], "retry": {"limit": 2}})
    op = sync_operation(
        app,
        revision="v2",
        dry_run=True,
        resources=[ResourceKey("apps", "Deployment", "shop", "web")],
        sync_options=[],
        retry=retry_strategy(3),
        initiated_by={"username": "ada"},
    )
    assert op["sync"] == {
        "revision": "v2",
        "prune": False,
        "dryRun": True,
        "resources": [{"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"}],
    }
    assert op["retry"] == {
        "limit": 3,
        "backoff": {"duration": "5s", "maxDuration": "3m0s", "factor": 2},
    }


def test_sync_operation_names_the_local_user_by_default() -> None:
    who = sync_operation(application())["initiatedBy"]
    assert set(who) == {"username"}
    assert who["username"]


def test_no_retry_strategy_without_a_limit() -> None:
    assert retry_strategy(0) is None
    assert retry_strategy(-1) == {
        "limit": -1,
        "backoff": {"duration": "5s", "maxDuration": "3m0s", "factor": 2},
    }


def test_sync_to_another_revision_is_refused_while_auto_sync_is_on() -> None:
    app = application(syncPolicy={"automated": {}})
    assert check_sync_allowed(app, "v2", dry_run=False) == (
        "Cannot sync to v2: auto-sync currently set to main"
    )
    assert check_sync_allowed(app, "v2", dry_run=True) == ""
    assert check_sync_allowed(app, "main", dry_run=False) == ""
    assert check_sync_allowed(application(), "v2", dry_run=False) == ""


# -- writing it ------------------------------------------------------------------------


async def test_request_writes_the_operation_and_clears_the_last_state() -> None:
    app = application()
    app["status"] = {"operationState": {"phase": "Succeeded", "operation": {"sync": {}}}}
    api = FakeApi(app)
    op = sync_operation(app, initiated_by={"username": "ada"})
    written = await request_operation(api, "argocd", "shop", op)
    assert written["operation"] == op
    assert "operationState" not in written["status"]


async def test_a_second_operation_is_refused_and_nothing_changes() -> None:
    app = application()
    app["operation"] = {"sync": {"revision": "main"}, "initiatedBy": {"username": "bob"}}
    api = FakeApi(app)
    with pytest.raises(OperationInProgress, match="another operation is already in progress"):
        await request_operation(api, "argocd", "shop", sync_operation(app))
    assert api.version == 1
    assert api.app is not None
    assert api.app["operation"]["initiatedBy"] == {"username": "bob"}


async def test_an_operation_set_between_read_and_write_is_not_overwritten() -> None:
    api = FakeApi(application())
    # Someone else (an automated sync) writes its operation just before our write.
    api.before_patch.append({"operation": {"sync": {}, "initiatedBy": {"automated": True}}})
    with pytest.raises(OperationInProgress, match="started by automated sync"):
        await request_operation(api, "argocd", "shop", sync_operation(application()))
    assert api.app is not None
    assert api.app["operation"]["initiatedBy"] == {"automated": True}


async def test_a_conflicting_unrelated_write_is_read_again_and_the_request_goes_through() -> None:
    api = FakeApi(application())
    api.before_patch.append({"metadata": {"labels": {"team": "a"}}})
    op = sync_operation(application(), initiated_by={"username": "ada"})
    written = await request_operation(api, "argocd", "shop", op)
    assert written["operation"] == op
    assert written["metadata"]["labels"] == {"team": "a"}


async def test_request_for_a_missing_app_says_so() -> None:
    with pytest.raises(ApplicationGone, match="application shop not found in namespace argocd"):
        await request_operation(FakeApi(None), "argocd", "shop", {"sync": {}})


# -- reading the answer ----------------------------------------------------------------


def test_operation_view_follows_this_operation_only() -> None:
    api = FakeApi(application())
    earlier = {"phase": "Succeeded", "operation": {"sync": {"revision": "old"}}}
    written = api.write({"operation": {"sync": {"revision": "main"}}})
    ours = written["operation"]

    view = operation_view(written, written)
    assert (view.picked_up, view.state, view.done) == (False, None, False)

    stale = api.write({"status": {"operationState": earlier}})
    assert not operation_view(stale, written).picked_up

    running = api.write(
        {
            "status": {
                "operationState": {"phase": "Running", "message": "sync started", "operation": ours}
            }
        }
    )
    view = operation_view(running, written)
    assert (view.picked_up, view.done, view.phase) == (True, False, "Running")

    finished = api.write(
        {
            "operation": None,
            "status": {
                "operationState": {
                    "phase": "Failed",
                    "message": "one or more objects failed to apply",
                    "syncResult": {"resources": [{"kind": "ConfigMap", "name": "a"}]},
                }
            },
        }
    )
    view = operation_view(finished, written)
    assert view.done
    assert view.phase == "Failed"
    assert view.resources == [{"kind": "ConfigMap", "name": "a"}]


def test_a_retry_in_between_is_not_the_end() -> None:
    written = {"operation": {"sync": {}}, "status": {}}
    retrying = {
        "operation": {"sync": {}},
        "status": {
            "operationState": {"phase": "Running", "finishedAt": "t", "operation": {"sync": {}}}
        },
    }
    assert not operation_view(retrying, written).done


def test_app_conditions_as_argocd_app_wait_reads_them() -> None:
    status: dict[str, Any] = {
        "sync": {"status": "Synced"},
        "health": {"status": "Healthy"},
        "reconciledAt": "2026-01-01T00:00:05Z",
        "operationState": {"phase": "Succeeded", "finishedAt": "2026-01-01T00:00:04Z"},
    }
    done = app_conditions({"status": status})
    assert done.holds(sync=True, health=True, operation=True)
    assert str(done) == "sync Synced, health Healthy"

    requested = app_conditions({"operation": {"sync": {}}, "status": status})
    assert not requested.holds(sync=False, health=False, operation=True)
    assert requested.holds(sync=True, health=True, operation=False)

    not_compared_since = app_conditions(
        {"status": {**status, "reconciledAt": "2026-01-01T00:00:03Z"}}
    )
    assert not_compared_since.operation_in_progress

    degraded = app_conditions({"status": {**status, "health": {"status": "Degraded"}}})
    assert not degraded.holds(sync=False, health=True, operation=False)
    assert app_conditions({}).sync == "Unknown"


def test_refreshed_once_the_annotation_is_gone() -> None:
    ann = {"argocd.argoproj.io/refresh": "normal"}
    assert not refreshed({"metadata": {"annotations": ann}})
    assert refreshed({"metadata": {"annotations": {}}})


async def test_request_refresh_sets_the_annotation() -> None:
    api = FakeApi(application())
    written = await request_refresh(api, "argocd", "shop", hard=True)
    assert written["metadata"]["annotations"] == {"argocd.argoproj.io/refresh": "hard"}


# -- watching --------------------------------------------------------------------------


async def test_watch_resumes_from_the_last_version_after_the_stream_ends() -> None:
    api = FakeApi(application())
    v2 = api.write({"metadata": {"labels": {"a": "1"}}})
    v3 = api.write({"metadata": {"labels": {"a": "2"}}})
    api.streams = [
        [
            WatchEvent("MODIFIED", v2),
            WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "3"}}),
        ]
    ]
    versions = watch_application(api, "argocd", "shop", "1")
    assert await anext(versions) == v2
    api.write({"metadata": {"labels": {"a": "3"}}})
    # The stream ended after the bookmark: the next watch starts from it, so the version
    # the bookmark stood for (3) is not sent again and the next one (4) is.
    assert (await anext(versions))["metadata"]["resourceVersion"] == "4"
    assert v3["metadata"]["resourceVersion"] == "3"
    assert api.watched_from == ["1", "3"]


async def test_watch_reads_the_app_again_after_gone() -> None:
    api = FakeApi(application())
    api.write({"metadata": {"labels": {"a": "1"}}})
    api.streams = [[Gone(410, "Expired", "too old resource version")]]
    versions = watch_application(api, "argocd", "shop", "1")
    again = await anext(versions)
    assert again["metadata"]["resourceVersion"] == "2"
    api.write({"metadata": {"labels": {"a": "2"}}})
    assert (await anext(versions))["metadata"]["resourceVersion"] == "3"
    assert api.watched_from == ["1", "2"]


async def test_watch_ends_with_an_error_when_the_app_is_deleted() -> None:
    api = FakeApi(application())
    api.streams = [[WatchEvent("DELETED", copy.deepcopy(api.app))]]  # type: ignore[arg-type]
    with pytest.raises(ApplicationGone):
        await anext(watch_application(api, "argocd", "shop", "1"))


async def test_follow_returns_the_first_version_where_the_condition_holds() -> None:
    api = FakeApi(application())
    written = api.write({"operation": {"sync": {}}})
    seen: list[str] = []

    async def controller() -> None:
        api.write({"status": {"operationState": {"phase": "Running", "operation": {"sync": {}}}}})
        api.write({"operation": None, "status": {"operationState": {"phase": "Succeeded"}}})

    task = asyncio.create_task(controller())
    final = await follow(
        watch_application(api, "argocd", "shop", "2"),
        written,
        lambda obj: operation_view(obj, written).done,
        seen=lambda obj: seen.append(operation_view(obj, written).phase),
        give_up_after=10,
    )
    await task
    assert operation_view(final, written).phase == "Succeeded"
    assert seen == ["", "Running", "Succeeded"]


async def test_follow_hints_once_when_nothing_picks_the_request_up_and_waits_on() -> None:
    api = FakeApi(application())
    written = api.write({"operation": {"sync": {}}})
    hints: list[str] = []

    def hint() -> None:
        hints.append("is the controller running?")
        # A controller starts only now, after the hint.
        api.write({"operation": None, "status": {"operationState": {"phase": "Succeeded"}}})

    final = await follow(
        watch_application(api, "argocd", "shop", "2"),
        written,
        lambda obj: operation_view(obj, written).done,
        picked_up=lambda obj: operation_view(obj, written).picked_up,
        hint_after=0.01,
        hint=hint,
        give_up_after=10,
    )
    assert hints == ["is the controller running?"]
    assert operation_view(final, written).done


async def test_follow_gives_no_hint_once_picked_up() -> None:
    api = FakeApi(application())
    written = api.write({"operation": {"sync": {}}})
    api.write({"status": {"operationState": {"phase": "Running", "operation": {"sync": {}}}}})
    hints: list[str] = []
    with pytest.raises(WaitTimedOut) as timed_out:
        await follow(
            watch_application(api, "argocd", "shop", "2"),
            written,
            lambda obj: operation_view(obj, written).done,
            picked_up=lambda obj: operation_view(obj, written).picked_up,
            hint_after=0.05,
            hint=lambda: hints.append("hint"),
            give_up_after=0.2,
        )
    assert hints == []
    assert operation_view(timed_out.value.last, written).phase == "Running"


async def test_follow_returns_at_once_when_the_condition_already_holds() -> None:
    api = FakeApi(application())
    app = api.write({"status": {"sync": {"status": "Synced"}}})
    assert await follow(api.watch("", ""), app, lambda _obj: True) == app  # type: ignore[arg-type]
    assert api.watched_from == []


async def test_watch_survives_a_dropped_connection_but_not_a_dead_server() -> None:
    api = FakeApi(application())
    v2 = api.write({"metadata": {"labels": {"a": "1"}}})
    dropped = ServerError(0, "ConnectionError", "connection reset")
    api.streams = [
        [dropped],
        [WatchEvent("MODIFIED", v2)],
        [dropped],
        [dropped],
        [dropped],
        [dropped],
    ]
    versions = watch_application(api, "argocd", "shop", "1", pause=0)
    assert await anext(versions) == v2
    with pytest.raises(ServerError):
        await anext(versions)
    assert api.watched_from == ["1", "1", "2", "2", "2", "2"]


def test_rollback_operation_carries_the_history_entrys_source_at_its_revision() -> None:
    from gitsail.cli.operation import rollback_operation

    app = {
        "spec": {
            "source": {"repoURL": "https://git/r.git", "path": "now", "targetRevision": "main"},
            "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
        }
    }
    entry = {
        "id": 0,
        "revision": "abc123",
        "source": {
            "repoURL": "https://git/r.git",
            "path": "then",
            "targetRevision": "main",
            "helm": {"valueFiles": ["prod.yaml"]},
        },
    }
    op = rollback_operation(app, entry, prune=True, initiated_by={"username": "u"})
    assert op["sync"]["revision"] == "abc123"
    assert op["sync"]["source"] == {
        "repoURL": "https://git/r.git",
        "path": "then",
        "targetRevision": "abc123",
        "helm": {"valueFiles": ["prod.yaml"]},
    }
    assert op["sync"]["prune"] is True
    assert op["sync"]["syncOptions"] == ["CreateNamespace=true"]
    assert op["initiatedBy"] == {"username": "u"}
    # An entry without a source (old entries, multi-source apps): the revision only.
    bare = rollback_operation(app, {"id": 1, "revision": "def456"})
    assert bare["sync"]["revision"] == "def456"
    assert "source" not in bare["sync"]
