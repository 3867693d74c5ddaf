"""The delivery driver over in-memory fakes: the control plane and the target cluster are
separate clients, and a failed comparison says whether retrying can help."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from gitsail.app.engine import AppEngine, Comparison, ComparisonError
from gitsail.app.model import Delivery, SourceRef, SyncPolicy
from gitsail.app.targets import Target, TargetUnavailable
from gitsail.errors import Stalled, Transient
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered
from gitsail.source import FetchError, GitSource, PathNotFound
from gitsail.sync.inventory import Inventory, InventoryEntry
from gitsail.sync.ownership import ArgoTracking


class FakeKube:
    """A cluster of plain dicts keyed by (kind, namespace, name); every call is recorded."""

    def __init__(self, name: str, objects: list[Obj] = ()) -> None:  # type: ignore[assignment]
        self.name = name
        self.calls: list[tuple[str, str]] = []  # (verb, kind)
        self.objects = {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objects
        }

    async def get(self, _api: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        self.calls.append(("get", kind))
        return self.objects.get((kind, namespace or "", name))

    async def list(self, _api: str, kind: str, _ns: str | None, **_kw: Any) -> list[Obj]:
        self.calls.append(("list", kind))
        return [o for (k, _, _), o in self.objects.items() if k == kind]

    async def merge_patch(
        self, _api: str, kind: str, name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        self.calls.append(("patch", kind))
        current = self.objects.get((kind, namespace or "", name), {})
        merged = {**current, **{k: v for k, v in patch.items() if k != "status"}}
        merged["status"] = {**(current.get("status") or {}), **(patch.get("status") or {})}
        self.objects[(kind, namespace or "", name)] = merged
        return merged

    async def delete(
        self,
        _api: str,
        kind: str,
        name: str,
        namespace: str | None,
        **_kw: Any,
    ) -> bool:
        self.calls.append(("delete", kind))
        return self.objects.pop((kind, namespace or "", name), None) is not None


def _application() -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "generation": 1},
        "spec": {
            "source": {"repoURL": "https://git.example/r.git", "path": "web"},
            "destination": {"namespace": "prod"},
        },
        "status": {
            "resources": [
                {
                    "group": "",
                    "version": "v1",
                    "kind": "ConfigMap",
                    "namespace": "prod",
                    "name": "cfg",
                },
            ]
        },
    }


def _live_config_map(owner: ArgoTracking) -> Obj:
    return owner.mark(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "prod", "uid": "u1", "resourceVersion": "7"},
        }
    )


def _engine(control: FakeKube, target: FakeKube | None = None, **kw: Any) -> AppEngine:
    return AppEngine(cast(Kube, control), cast(Kube, target) if target else None, **kw)


async def test_status_goes_to_the_control_plane_and_objects_to_the_target() -> None:
    app_obj = _application()
    control = FakeKube("control", [app_obj])
    app = App.from_application(app_obj)
    target = FakeKube("target", [_live_config_map(ArgoTracking("web"))])
    engine = _engine(control, target)

    owned = await engine.owned_objects(app)
    assert [o["metadata"]["name"] for _, o in owned] == ["cfg"]
    assert await engine.delete_resources(app) == [ResourceKey("", "ConfigMap", "prod", "cfg")]
    await engine.write_status(app, None, error="fetch failed")
    await engine.clear_operation(app)

    assert {kind for _, kind in target.calls} == {"ConfigMap"}
    assert {kind for _, kind in control.calls} == {"Application"}
    assert control.objects[("Application", "argocd", "web")]["status"]["sync"] == {
        "status": "Unknown"
    }


async def test_without_a_target_the_control_plane_is_the_target() -> None:
    control = FakeKube("control", [_live_config_map(ArgoTracking("web"))])
    engine = _engine(control)
    assert engine.cluster is engine.control
    owned = await engine.owned_objects(App.from_application(_application()))
    assert len(owned) == 1


async def test_an_object_that_lost_the_mark_is_neither_listed_nor_deleted() -> None:
    unmarked = _live_config_map(ArgoTracking("other-app"))
    target = FakeKube("target", [unmarked])
    engine = _engine(FakeKube("control"), target)
    app = App.from_application(_application())
    assert await engine.owned_objects(app) == []
    assert await engine.delete_resources(app) == []
    assert ("ConfigMap", "prod", "cfg") in target.objects


class FailingGit:
    async def fetch(self, url: str, *_a: Any, **_kw: Any) -> Artifact:
        raise FetchError(f"fetch of {url} failed: connection refused", url=url)


class FixedGit:
    async def fetch(self, url: str, revision: str, path: str, *_a: Any, **_kw: Any) -> Artifact:
        return Artifact(url, "c0ffee", revision, Path("/nonexistent"), path, "sha256:0")


def _delivery(**changes: Any) -> Delivery:
    fields: dict[str, Any] = {
        "api_version": "example.dev/v1",
        "kind": "Delivery",
        "namespace": "team",
        "name": "web",
        "generation": 1,
        "source": SourceRef(url="https://git.example/r.git"),
        "render": None,
        "render_problem": "spec.source.plugin: config management plugins are not supported",
        "destination_server": "",
        "destination_namespace": "prod",
        "policy": SyncPolicy(),
        "owner": ArgoTracking("team_web"),
        "inventory": Inventory(
            (InventoryEntry(ResourceKey("", "ConfigMap", "prod", "cfg"), "v1"),)
        ),
    }
    return Delivery(**{**fields, **changes})


async def test_a_failed_fetch_is_transient() -> None:
    engine = _engine(FakeKube("control"), git=cast(GitSource, FailingGit()))
    with pytest.raises(ComparisonError) as caught:
        await engine.compare(_delivery())
    error = caught.value
    assert error.transient
    assert (error.reason, error.revision) == ("FetchFailed", "")
    assert isinstance(error.typed(), Transient)


class MissingPathGit:
    async def fetch(self, url: str, *_a: Any, **_kw: Any) -> Artifact:
        raise PathNotFound(f"path web does not exist in {url} at c0ffee", url=url)


async def test_a_path_missing_from_the_source_is_stalled() -> None:
    engine = _engine(FakeKube("control"), git=cast(GitSource, MissingPathGit()))
    with pytest.raises(ComparisonError) as caught:
        await engine.compare(_delivery())
    assert not caught.value.transient
    assert caught.value.reason == "PathNotFound"
    assert isinstance(caught.value.typed(), Stalled)


async def test_unusable_render_options_are_stalled_at_the_fetched_revision() -> None:
    engine = _engine(FakeKube("control"), git=cast(GitSource, FixedGit()))
    with pytest.raises(ComparisonError) as caught:
        await engine.compare(_delivery())
    error = caught.value
    assert not error.transient
    assert (error.reason, error.revision) == ("RenderFailed", "c0ffee")
    assert "plugins are not supported" in str(error)
    assert isinstance(error.typed(), Stalled)


async def test_another_destination_cluster_is_refused_before_any_fetch() -> None:
    engine = _engine(FakeKube("control"), git=cast(GitSource, FailingGit()))
    with pytest.raises(ComparisonError, match="is not registered") as caught:
        await engine.compare(_delivery(destination_server="https://prod-eu.example:6443"))
    assert not caught.value.transient
    with pytest.raises(ComparisonError, match="prod-eu is not registered"):
        await engine.compare(_delivery(destination_name="prod-eu"))


class FakeTargets:
    """Destinations by server: a Target, or TargetUnavailable for the ones listed down."""

    def __init__(self, targets: dict[str, Target], down: dict[str, bool]) -> None:
        self.targets = targets
        self.down = down  # server -> transient
        self.asked: list[tuple[str, str]] = []

    async def resolve(self, app: Delivery) -> Target:
        self.asked.append((app.destination_server, app.destination_name))
        key = app.destination_server or app.destination_name
        if key in self.down:
            raise TargetUnavailable(f"{key} is down", transient=self.down[key], reason="X")
        return self.targets[key]


async def test_each_entry_point_runs_on_the_destinations_cluster() -> None:
    app_obj = _application()
    app_obj["spec"]["destination"] = {"name": "east", "namespace": "prod"}
    app = App.from_application(app_obj)
    control = FakeKube("control", [app_obj])
    east = FakeKube("east", [_live_config_map(ArgoTracking("web"))])
    targets = FakeTargets({"east": Target("east", "https://east", cast(Kube, east))}, {})
    engine = _engine(control, targets=targets)

    owned = await engine.owned_objects(app)
    assert [o["metadata"]["name"] for _, o in owned] == ["cfg"]
    assert await engine.delete_resources(app) == [ResourceKey("", "ConfigMap", "prod", "cfg")]
    assert {kind for _, kind in east.calls} == {"ConfigMap"}
    assert not [c for c in control.calls if c[1] == "ConfigMap"]
    assert targets.asked == [("", "east"), ("", "east")]


async def test_an_unavailable_destination_is_a_comparison_error_that_keeps_its_kind() -> None:
    targets = FakeTargets({}, {"https://down": True, "gone": False})
    engine = _engine(FakeKube("control"), git=cast(GitSource, FailingGit()), targets=targets)
    with pytest.raises(ComparisonError, match="https://down is down") as caught:
        await engine.compare(_delivery(destination_server="https://down"))
    assert caught.value.transient
    with pytest.raises(ComparisonError, match="gone is down") as caught:
        await engine.owned_objects(_delivery(destination_name="gone"))
    assert not caught.value.transient


def test_a_target_limited_to_namespaces_refuses_others_and_cluster_kinds() -> None:
    kube = cast(Kube, FakeKube("t"))
    limited = Target("t", "https://t", kube, namespaces=("a", "b"), cluster_resources=False)
    assert limited.allows("a") == ""
    assert "namespace 'c' for cluster https://t is not managed" in limited.allows("c")
    assert "cluster level resources are not permitted" in limited.allows("")
    with_cluster = Target("t", "https://t", kube, namespaces=("a",), cluster_resources=True)
    assert with_cluster.allows("") == ""
    assert Target("t", "https://t", kube).allows("anything") == ""


async def test_a_record_without_a_kind_adapter_cannot_have_its_status_written() -> None:
    engine = _engine(FakeKube("control"))
    with pytest.raises(TypeError, match="no kind adapter"):
        await engine.write_status(_delivery(), None, error="x")


class DryRunKube(FakeKube):
    async def apply(self, obj: Obj, **kw: Any) -> Obj:
        assert kw.get("dry_run"), "the comparison only dry-runs"
        self.calls.append(("dry-run", obj["kind"]))
        return {**obj, "metadata": {**obj["metadata"], "uid": "u1"}}


async def test_a_comparison_dry_runs_once_per_object_version_and_never_a_create() -> None:
    target = DryRunKube("target")
    engine = _engine(FakeKube("control"), target)
    manifest = ArgoTracking("web").mark(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "prod"}}
    )
    assert await engine._dry_run(manifest, None) is manifest  # diffs as missing; no request
    current = _live_config_map(ArgoTracking("web"))
    first = await engine._dry_run(manifest, current)
    again = await engine._dry_run(manifest, current)
    assert first == again
    assert first["metadata"]["uid"] == "u1"
    newer = {**current, "metadata": {**current["metadata"], "resourceVersion": "8"}}
    await engine._dry_run(manifest, newer)
    assert target.calls == [("dry-run", "ConfigMap"), ("dry-run", "ConfigMap")]


class SyncKube(FakeKube):
    """A target a sync with nothing to do can run against (discovery only)."""

    async def discover(self) -> None:
        self.calls.append(("discover", ""))


def _empty_comparison(app: App, revision: str) -> Comparison:
    return Comparison(
        app=app,
        artifact=Artifact("https://git.example/r.git", revision, "HEAD", Path("/r"), "web", ""),
        rendered=Rendered((), "directory", "k"),
        desired=(),
        hooks=(),
        diffs=(),
        live={},
        owned_live=(),
        health={},
    )


@pytest.mark.parametrize(("compared_at", "compares"), [("a" * 40, 1), ("b" * 40, 2)])
async def test_a_sync_uses_the_callers_comparison_only_of_the_revision_it_syncs(
    compared_at: str, compares: int
) -> None:
    control = FakeKube("control", [_application()])
    engine = _engine(control, SyncKube("target"))
    app = App.from_application(_application())
    made: list[str | None] = []

    async def compare(_app: Any, *, revision: str | None = None) -> Comparison:
        made.append(revision)
        return _empty_comparison(app, "a" * 40)

    engine.compare = compare  # type: ignore[method-assign]
    outcome = await engine.sync(
        app, revision="a" * 40, compared=_empty_comparison(app, compared_at)
    )
    assert outcome.result.phase == "Succeeded"
    # The one comparison left is the record of the state after the sync.
    assert made == [*(["a" * 40] if compares == 2 else []), None]


class MovingGit:
    """Answers the revision it is set to."""

    revision = "c0ffee"

    async def fetch(self, url: str, revision: str, path: str, *_a: Any, **_kw: Any) -> Artifact:
        return Artifact(url, self.revision, revision, Path("/nonexistent"), path, "sha256:0")


class DiscoveredKube(FakeKube):
    mapper = object()  # one discovery, as ``Kube.mapper`` holds it


async def test_the_comparison_stamp_moves_with_the_commit_the_objects_and_the_settings() -> None:
    live = _live_config_map(ArgoTracking("team_web"))
    target = DiscoveredKube("target", [live])
    git = MovingGit()
    engine = _engine(FakeKube("control"), target, git=cast(GitSource, git))
    objects = [("v1", "ConfigMap", "prod", "cfg")]
    first = await engine.comparison_stamp(_delivery(), objects)
    assert first is not None
    assert await engine.comparison_stamp(_delivery(), objects) == first
    live["metadata"]["resourceVersion"] = "8"  # someone changed the object
    moved = await engine.comparison_stamp(_delivery(), objects)
    assert moved != first
    git.revision = "beef"  # a new commit
    assert await engine.comparison_stamp(_delivery(), objects) != moved
    newer = await engine.comparison_stamp(_delivery(), objects)

    async def load() -> str:
        return "changed"

    engine._settings_cache["argocd-cm"] = (0.0, "before")  # due, and reads another value
    engine._settings_loaders["argocd-cm"] = load
    assert await engine.comparison_stamp(_delivery(), objects) != newer
    assert (
        await engine.comparison_stamp(_delivery(destination_server="https://elsewhere"), objects)
        is None
    )  # a destination it cannot reach: cannot tell
