"""The registry of kinds: keys by kind, owners of managed objects, dependencies, and the
controller driving registered kinds (in-memory cluster, no wall-clock waits)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from gitsail.controller import manager
from gitsail.controller.manager import Controller, ControllerOptions, flux_kinds
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.controller.registry import (
    DependencyIndex,
    KindAPI,
    KindContext,
    KindDefaults,
    KindReconciler,
    KindRegistry,
    ObjectKey,
    kstatus_ready,
    owner_keys,
)
from gitsail.kinds.status import Stalled, Transient
from gitsail.kube import Kube, NotFoundKind, WatchEvent
from gitsail.kube.written import WrittenVersions
from gitsail.model import Obj
from gitsail.sync.ownership import ArgoTracking, FluxLabels
from tests.unit.controller import fake_flux_kind

NS = "argocd"


def widget(name: str, *, generation: int = 1, **extra: Any) -> Obj:
    return {
        "apiVersion": "example.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": NS, "generation": generation},
        "spec": {"size": 1},
        **extra,
    }


def ready(obj: Obj, status: str = "True", *, manager_name: str = "gitsail") -> Obj:
    generation = obj["metadata"]["generation"]
    return {
        **obj,
        "metadata": {
            **obj["metadata"],
            "managedFields": [{"manager": manager_name, "operation": "Update", "time": status}],
        },
        "status": {
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": status, "reason": "Succeeded"}],
        },
    }


def configmap(**meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", **meta}}


# -- keys and owners ---------------------------------------------------------------------


def test_an_object_key_names_its_kind_first() -> None:
    key = ObjectKey.of(widget("w"))
    assert key == ObjectKey("Widget", NS, "w")
    assert str(key) == "Widget argocd/w"
    assert ObjectKey("Kustomization", NS, "w") != ObjectKey("GitRepository", NS, "w")


def test_owner_marks_map_to_the_objects_that_own_them() -> None:
    argo = ArgoTracking("web").mark(configmap(namespace="shop"))
    outside = ArgoTracking("team-a_web").mark(configmap(namespace="shop"))
    flux = FluxLabels("apps", "flux-system").mark(configmap(namespace="shop"))
    assert owner_keys(argo, NS) == [ObjectKey("Application", NS, "web")]
    assert owner_keys(outside, NS) == [ObjectKey("Application", "team-a", "web")]
    assert owner_keys(flux, NS) == [ObjectKey("Kustomization", "flux-system", "apps")]
    both = FluxLabels("apps", "flux-system").mark(argo)
    assert owner_keys(both, NS) == [
        ObjectKey("Application", NS, "web"),
        ObjectKey("Kustomization", "flux-system", "apps"),
    ]


def test_a_copied_tracking_id_wakes_no_application() -> None:
    original = ArgoTracking("web").mark(configmap(namespace="shop"))
    copy = {**original, "metadata": {**original["metadata"], "name": "copy"}}
    assert owner_keys(copy, NS) == []


def test_kstatus_ready_needs_ready_true_for_the_current_generation() -> None:
    assert kstatus_ready(ready(widget("w")))
    assert not kstatus_ready(ready(widget("w"), "False"))
    assert not kstatus_ready(widget("w"))
    stale = ready(widget("w"))
    stale["metadata"]["generation"] = 2  # a new spec not looked at yet
    assert not kstatus_ready(stale)


# -- the dependency index ----------------------------------------------------------------

A, B, C = (ObjectKey("Kustomization", "flux-system", n) for n in "abc")
APP = ObjectKey("Application", NS, "db")


def test_the_index_answers_who_waits_for_whom_across_kinds() -> None:
    index = DependencyIndex()
    index.declare(B, [A, APP])
    index.declare(C, [A])
    assert index.waiting_for(A) == {B, C}
    assert index.waiting_for(APP) == {B}
    assert index.waiting_for(B) == frozenset()
    assert index.dependencies(B) == {A, APP}


def test_a_new_declaration_replaces_the_old_one_and_forget_drops_it() -> None:
    index = DependencyIndex()
    index.declare(B, [A, APP])
    index.declare(B, [APP])  # dependsOn edited: A removed
    assert index.waiting_for(A) == frozenset()
    assert index.waiting_for(APP) == {B}
    index.declare(B, [B])  # waiting for itself is waiting for nothing
    assert len(index) == 0
    index.declare(C, [A])
    index.forget(C)
    assert index.waiting_for(A) == frozenset()
    assert len(index) == 0


# -- the registry ------------------------------------------------------------------------


class Widgets(KindDefaults):
    """A fake kind: records what the controller asks of it."""

    api = KindAPI("example.dev/v1", "Widget")

    def __init__(self, ctx: KindContext | None = None) -> None:
        self.ctx = ctx
        self.calls: list[tuple[str, frozenset[str]]] = []
        self.finalized: list[str] = []
        self.forgotten: list[ObjectKey] = []
        self.outcome: float | Exception | None = 60.0
        self.called = asyncio.Event()

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        self.calls.append((obj["metadata"]["name"], reasons))
        self.called.set()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def finalize(self, obj: Obj) -> float | None:
        self.finalized.append(obj["metadata"]["name"])
        return None

    def forget(self, key: ObjectKey) -> None:
        self.forgotten.append(key)

    async def next_call(self) -> tuple[str, frozenset[str]]:
        await asyncio.wait_for(self.called.wait(), 2)
        self.called.clear()
        return self.calls[-1]


class Kustomizations(Widgets):
    api = KindAPI("kustomize.toolkit.fluxcd.io/v1", "Kustomization")


def test_a_fake_kind_is_a_kind_reconciler_and_one_kind_has_one_reconciler() -> None:
    assert isinstance(Widgets(), KindReconciler)
    registry = KindRegistry([Widgets()])
    assert registry.kinds == ("Widget",)
    with pytest.raises(ValueError, match="two reconcilers for the kind 'Widget'"):
        registry.register(Widgets())


def test_managed_objects_map_to_the_registered_kinds_that_own_them() -> None:
    registry = KindRegistry([Kustomizations()])
    flux = FluxLabels("apps", "flux-system").mark(ArgoTracking("web").mark(configmap()))
    # The Application owner is not registered here: only the Kustomization is named.
    assert registry.keys_for_managed(flux) == [ObjectKey("Kustomization", "flux-system", "apps")]


def test_only_a_transition_to_ready_wakes_the_dependents() -> None:
    registry = KindRegistry([Widgets()])
    a, b = ObjectKey("Widget", NS, "a"), ObjectKey("Widget", NS, "b")
    registry.depends_on(b, [a])
    assert registry.became_ready(a, widget("a"), ready(widget("a"))) == {b}
    assert registry.became_ready(a, None, ready(widget("a"))) == {b}
    assert registry.became_ready(a, ready(widget("a")), ready(widget("a"))) == frozenset()
    assert registry.became_ready(a, widget("a"), ready(widget("a"), "False")) == frozenset()
    registry.forget(b)
    assert registry.became_ready(a, widget("a"), ready(widget("a"))) == frozenset()


# -- the controller with registered kinds -------------------------------------------------


class FakeCluster:
    """Lists and watches from memory; ``emit`` changes an object and tells its watchers."""

    def __init__(self, *objects: Obj, unserved: tuple[str, ...] = ()) -> None:
        self.objects = {ObjectKey.of(o): o for o in objects}
        self.unserved = unserved
        self.streams: dict[tuple[str, str], asyncio.Queue[WatchEvent]] = {}
        self.written = WrittenVersions()  # the real record (Kube.written): pure logic

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.objects.get(ObjectKey(kind, namespace or "", name))

    async def list_with_version(
        self, api_version: str, kind: str, namespace: str | None = None, *_: Any
    ) -> tuple[list[Obj], str]:
        if kind in self.unserved:
            raise NotFoundKind(api_version, kind)
        return [o for k, o in self.objects.items() if k.kind == kind], "1"

    async def watch(
        self, api_version: str, kind: str, namespace: str | None = None, **_: Any
    ) -> AsyncIterator[WatchEvent]:
        stream = self.streams.setdefault((kind, namespace or ""), asyncio.Queue())
        while True:
            yield await stream.get()

    def emit(self, type: str, obj: Obj) -> None:
        key = ObjectKey.of(obj)
        if type == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.streams[(key.kind, key.namespace)].put_nowait(WatchEvent(type, obj))  # type: ignore[arg-type]


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[ObjectKey, str]] = []
        self.urgent: list[bool] = []
        self.depth = 0

    def add(self, key: ObjectKey, reason: str = "", *, urgent: bool = False) -> None:
        self.added.append((key, reason))
        self.urgent.append(urgent)


def controller(cluster: FakeCluster, *kinds: Any, flux: bool = False) -> Controller:
    options = ControllerOptions(namespaces=(NS,), leader_elect=False, flux=flux, identity="t")
    return Controller(cast(Kube, cluster), options, kinds=list(kinds))


async def test_a_registered_kind_is_watched_and_reconciled_by_kind_namespace_and_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    widgets = Widgets()
    cluster = FakeCluster(widget("w1"), unserved=("Kustomization",))
    ctl = controller(cluster, lambda ctx: widgets, Kustomizations)
    with caplog.at_level(logging.WARNING):
        await ctl._lead()
    try:
        assert ctl.registry.kinds == (
            "Application",
            "Widget",
            "Kustomization",
            "ApplicationSet",
            "AppProject",
            "Alert",
        )
        assert isinstance(ctl.reconciler, AppReconciler)
        # One watch cache per served kind; a kind without CRDs is said and skipped.
        assert set(ctl.kind_caches) == {
            ("Application", NS),
            ("Widget", NS),
            ("ApplicationSet", NS),
            ("AppProject", NS),
            ("Alert", NS),
        }
        assert "Kustomization" in caplog.text
        assert "Install" in caplog.text
        assert await widgets.next_call() == ("w1", frozenset({"startup"}))
        cluster.emit("MODIFIED", {**widget("w1", generation=2), "spec": {"size": 2}})
        assert await widgets.next_call() == ("w1", frozenset({"widget:modified"}))
    finally:
        await ctl._step_down()


async def test_own_status_writes_do_not_wake_an_object_but_readiness_wakes_dependents() -> None:
    widgets = Widgets()
    ctl = controller(FakeCluster())
    ctl.registry.register(widgets)
    ctl.queue = RecordingQueue()  # type: ignore[assignment]
    a, b = ObjectKey("Widget", NS, "a"), ObjectKey("Widget", NS, "b")
    ctl.registry.depends_on(b, [a])
    ctl._on_kind_event(widgets, WatchEvent("ADDED", widget("a")))
    ctl._on_kind_event(widgets, WatchEvent("MODIFIED", ready(widget("a"))))  # our status write
    ctl._on_kind_event(widgets, WatchEvent("MODIFIED", ready(widget("a"))))  # nothing new
    theirs = ready(widget("a"), "False", manager_name="kubectl")
    ctl._on_kind_event(widgets, WatchEvent("MODIFIED", theirs))  # someone else's write
    ctl._on_kind_event(widgets, WatchEvent("DELETED", theirs))
    assert ctl.queue.added == [  # type: ignore[attr-defined]
        (a, "widget:added"),
        (b, "ready:Widget argocd/a"),
        (a, "widget:modified"),
        (a, "widget:deleted"),
    ]


async def test_a_managed_object_wakes_each_registered_owner_in_watched_namespaces() -> None:
    ctl = controller(FakeCluster())
    ctl.registry.register(Kustomizations())
    ctl.queue = RecordingQueue()  # type: ignore[assignment]
    owned = FluxLabels("apps", NS).mark(configmap(namespace="shop"))
    elsewhere = FluxLabels("apps", "other").mark(configmap(namespace="shop"))
    ctl._on_managed_event(WatchEvent("MODIFIED", owned), "changed")
    ctl._on_managed_event(WatchEvent("MODIFIED", elsewhere), "changed")
    assert ctl.queue.added == [  # type: ignore[attr-defined]
        (ObjectKey("Kustomization", NS, "apps"), "changed:ConfigMap/c")
    ]
    # A managed object's change (health, drift) goes to the urgent lane.
    assert ctl.queue.urgent == [True]  # type: ignore[attr-defined]


async def test_typed_failures_say_what_happens_next() -> None:
    widgets = Widgets()
    ctl = controller(FakeCluster(widget("w")))
    ctl.registry.register(widgets)
    key = ObjectKey("Widget", NS, "w")
    widgets.outcome = Stalled("BuildFailed", "kustomization.yaml: no such file")
    assert await ctl._reconcile(key, frozenset({"startup"})) is None  # wait for a change
    widgets.outcome = Transient("DependencyNotReady", "waiting for a", retry_after=7)
    assert await ctl._reconcile(key, frozenset({"startup"})) == 7
    widgets.outcome = Transient("ServerDown", "apiserver unavailable")
    assert await ctl._reconcile(key, frozenset({"startup"})) == 10  # 2nd in a row: 5 s x 2
    assert await ctl._reconcile(key, frozenset({"startup"})) == 20
    widgets.outcome = 30.0
    assert await ctl._reconcile(key, frozenset({"startup"})) == 30.0
    widgets.outcome = Transient("ServerDown", "apiserver unavailable")
    assert await ctl._reconcile(key, frozenset({"startup"})) == 5  # a success started over


async def test_objects_being_deleted_are_finalized_and_gone_ones_forgotten() -> None:
    widgets = Widgets()
    deleting = widget("d")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ctl = controller(FakeCluster(deleting))
    ctl.registry.register(widgets)
    gone = ObjectKey("Widget", NS, "gone")
    ctl.registry.depends_on(gone, [ObjectKey("Widget", NS, "d")])
    assert await ctl._reconcile(ObjectKey("Widget", NS, "d"), frozenset({"startup"})) is None
    assert widgets.finalized == ["d"]
    assert widgets.calls == []
    assert await ctl._reconcile(gone, frozenset({"widget:deleted"})) is None
    assert widgets.forgotten == [gone]
    assert ctl.registry.dependencies.waiting_for(ObjectKey("Widget", NS, "d")) == frozenset()


# -- the Flux registration seam -------------------------------------------------------------


def test_flux_kinds_are_registered_only_when_their_modules_exist(
    caplog: pytest.LogCaptureFixture,
) -> None:
    here = "tests.unit.controller.fake_flux_kind"
    table = [
        ("gitsail.controller.no_such_flux_module", "KustomizationReconciler"),
        (here, "FakeGitRepositoryReconciler"),
        (here, "NOT_A_FACTORY"),
        (here, "Missing"),
    ]
    with caplog.at_level(logging.WARNING):
        assert flux_kinds(table) == [fake_flux_kind.FakeGitRepositoryReconciler]
    assert "has no NOT_A_FACTORY" in caplog.text
    assert "has no Missing" in caplog.text


async def test_the_flux_option_registers_the_flux_kinds_after_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        manager,
        "FLUX_KINDS",
        (("tests.unit.controller.fake_flux_kind", "FakeGitRepositoryReconciler"),),
    )
    fake_flux_kind.BUILT.clear()
    ctl = controller(FakeCluster(), Widgets, flux=True)
    await ctl._lead()
    try:
        assert ctl.registry.kinds == (
            "Application",
            "Widget",
            "ApplicationSet",
            "AppProject",
            "Alert",
            "GitRepository",
        )
        (ctx,) = fake_flux_kind.BUILT
        assert ctx.registry is ctl.registry  # so it can declare dependencies
    finally:
        await ctl._step_down()
    off = controller(FakeCluster(), flux=False)
    await off._lead()
    try:
        assert off.registry.kinds == (
            "Application",
            "ApplicationSet",
            "AppProject",
            "Alert",  # notifications: Argo CD's need no Flux
        )
    finally:
        await off._step_down()


def test_the_argo_kind_owns_tracked_objects_and_is_ready_when_synced_and_healthy() -> None:
    ctl = controller(FakeCluster())
    argo = AppReconciler(
        ctl.engine,
        settings=ReconcileSettings(control_namespace="gitops"),
        metrics=ctl.metrics,
        events=ctl.events,
        get_application=None,
    )
    tracked = FluxLabels("apps", "flux-system").mark(ArgoTracking("web").mark(configmap()))
    assert argo.keys_for_managed(tracked) == [ObjectKey("Application", "gitops", "web")]
    app: Obj = {"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}
    assert argo.ready(app)
    assert not argo.ready({"status": {**app["status"], "health": {"status": "Progressing"}}})
    assert not argo.ready({"status": {**app["status"], "sync": {"status": "OutOfSync"}}})
