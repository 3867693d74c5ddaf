"""The engine's AppProject admission over fakes: Argo CD's messages, the default project
made when missing, the engine refusing before any fetch, and the status it leaves."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, cast

import pytest

from gitsail.app.admission import INVALID_SPEC
from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.kinds.argo_application import App
from gitsail.kinds.argo_appproject_admission import (
    SYNC_WINDOW_CONDITION,
    ProjectAdmission,
    retype_error,
    window_blocked,
    window_conditions,
)
from gitsail.kube import Kube, NotFoundKind
from gitsail.kube.discovery import ResourceInfo
from gitsail.model import Obj
from gitsail.source import GitSource

CLUSTER_SCOPED = {"Namespace", "ClusterRole"}


class FakeKube:
    def __init__(self) -> None:
        self.created: list[Obj] = []

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        if kind == "Widget":
            raise NotFoundKind(api_version, kind)
        group, _, version = api_version.rpartition("/")
        return ResourceInfo(
            group,
            version,
            kind,
            kind.lower() + "s",
            kind not in CLUSTER_SCOPED,
            frozenset(),
            frozenset(),
        )

    async def get(
        self, _api: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return {"metadata": {"name": name}} if kind == "Namespace" and name == "exists" else None

    async def create(self, obj: Obj, **_kw: Any) -> Obj:
        self.created.append(obj)
        return obj


def appproject(name: str = "team", **spec: Any) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": spec,
    }


def application(
    project: str = "team",
    namespace: str = "argocd",
    dest_ns: str = "web",
    sync_options: list[str] | None = None,
) -> App:
    return App.from_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "web", "namespace": namespace, "generation": 1},
            "spec": {
                "project": project,
                "source": {"repoURL": "https://git.example/team/web.git", "path": "web"},
                "destination": {
                    "server": "https://kubernetes.default.svc",
                    "namespace": dest_ns,
                },
                "syncPolicy": {"syncOptions": sync_options or []},
            },
        }
    )


TEAM = {
    "sourceRepos": ["https://git.example/team/*"],
    "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "web"}],
}


def admission(
    projects: dict[str, Obj] | None, kube: FakeKube | None = None, **kw: Any
) -> ProjectAdmission:
    async def read(name: str) -> Obj | None:
        if projects is None:
            raise NotFoundKind("argoproj.io/v1alpha1", "AppProject")
        return projects.get(name)

    return ProjectAdmission(cast(Kube, kube or FakeKube()), "argocd", read, **kw)


def obj(api: str, kind: str, name: str, namespace: str = "") -> Obj:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta}


async def test_a_permitted_app_and_its_objects_are_admitted() -> None:
    a = admission({"team": appproject(**TEAM)})
    app = application()
    assert await a.admit(app) == ""
    assert await a.admit_objects(app, [obj("v1", "ConfigMap", "c", "web")]) == ""
    assert a.apps_of("team") == [("argocd", "web")]


async def test_a_refused_repository_is_named_without_its_password() -> None:
    a = admission({"team": appproject(**{**TEAM, "sourceRepos": ["https://git.example/other/*"]})})
    app = application()
    url = "https://alice:hunter2@git.example/team/web.git"
    app = dataclasses.replace(app, source=dataclasses.replace(app.source, url=url))
    assert await a.admit(app) == (
        "application repo https://git.example/team/web.git is not permitted in project 'team'"
    )


async def test_repo_destination_and_source_namespace_are_refused_in_argo_cd_words() -> None:
    a = admission({"team": appproject(**{**TEAM, "sourceRepos": ["https://git.example/other/*"]})})
    assert await a.admit(application()) == (
        "application repo https://git.example/team/web.git is not permitted in project 'team'"
    )
    b = admission({"team": appproject(**TEAM)})
    assert await b.admit(application(dest_ns="kube-system")) == (
        "application destination server 'https://kubernetes.default.svc' and namespace "
        "'kube-system' do not match any of the allowed destinations in project 'team'"
    )
    assert await b.admit(application(namespace="tenant")) == (
        "application 'web' in namespace 'tenant' is not permitted to use project 'team'"
    )
    c = admission({"team": appproject(**TEAM, sourceNamespaces=["ten*"])})
    assert await c.admit(application(namespace="tenant")) == ""


async def test_cluster_kinds_and_object_namespaces_are_checked_before_any_dry_run() -> None:
    a = admission({"team": appproject(**TEAM)})
    app = application()
    assert await a.admit_objects(app, [obj("v1", "Namespace", "x")]) == (
        "resource :Namespace is not permitted in project team"
    )
    role = obj("rbac.authorization.k8s.io/v1", "ClusterRole", "r")
    assert "rbac.authorization.k8s.io:ClusterRole" in await a.admit_objects(app, [role])
    assert await a.admit_objects(app, [obj("v1", "ConfigMap", "c", "kube-system")]) == (
        "namespace kube-system is not permitted in project 'team'"
    )
    # A kind not served yet takes its scope from a CRD of the same app.
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}},
    }
    widened = admission(
        {
            "team": appproject(
                **TEAM, clusterResourceWhitelist=[{"group": "apiextensions.k8s.io", "kind": "*"}]
            )
        }
    )
    assert await widened.admit_objects(app, [crd, obj("example.com/v1", "Widget", "w")]) == (
        "resource example.com:Widget is not permitted in project team"
    )


async def test_a_missing_project_refuses_and_a_missing_default_is_made() -> None:
    kube = FakeKube()
    a = admission({}, kube)
    assert await a.admit(application("nope")) == (
        "Application referencing project nope which does not exist"
    )
    assert await a.admit(application("default")) == ""
    assert await a.admit_objects(application("default"), [obj("v1", "Namespace", "x")]) == ""
    assert [o["metadata"]["name"] for o in kube.created][:1] == ["default"]
    assert kube.created[0]["spec"]["clusterResourceWhitelist"] == [{"group": "*", "kind": "*"}]


async def test_without_the_crd_only_the_default_project_exists() -> None:
    kube = FakeKube()
    a = admission(None, kube)
    assert await a.admit(application("default")) == ""
    assert "does not exist" in await a.admit(application("team"))
    assert kube.created == []


async def test_an_invalid_project_refuses_its_apps() -> None:
    a = admission({"team": appproject(sourceRepos="*")})
    assert (await a.admit(application())).startswith("project team is invalid: AppProject")


def clock(text: str) -> Any:
    return lambda: dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


async def test_sync_windows_refuse_automated_and_manual_syncs() -> None:
    deny = {"kind": "deny", "schedule": "0 22 * * *", "duration": "1h", "applications": ["web"]}
    a = admission({"team": appproject(**TEAM, syncWindows=[deny])}, now=clock("2026-12-02T22:05"))
    assert "active deny window" in await a.sync_refused(application(), automated=True)
    assert (await a.sync_refused(application(), automated=False)).startswith(
        "Cannot sync: Blocked by sync window"
    )
    manual = admission(
        {"team": appproject(**TEAM, syncWindows=[{**deny, "manualSync": True}])},
        now=clock("2026-12-02T22:05"),
    )
    assert await manual.sync_refused(application(), automated=False) == ""
    assert await manual.sync_refused(application(), automated=True) != ""
    later = admission(
        {"team": appproject(**TEAM, syncWindows=[deny])}, now=clock("2026-12-02T23:05")
    )
    assert await later.sync_refused(application(), automated=True) == ""


class ExplodingGit(GitSource):
    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fetched although the project refuses the repo")


async def test_the_engine_refuses_before_fetching() -> None:
    a = admission({"team": appproject(sourceRepos=["https://elsewhere/*"])})
    engine = AppEngine(cast(Kube, FakeKube()), git=ExplodingGit(), admission=a)
    with pytest.raises(ComparisonError) as caught:
        await engine.compare(application())
    assert caught.value.reason == INVALID_SPEC
    assert "is not permitted in project 'team'" in caught.value.message


def test_status_conditions() -> None:
    status = {"conditions": [{"type": "ComparisonError", "message": "m"}], "sync": {}}
    assert retype_error(status, INVALID_SPEC)["conditions"][0]["type"] == INVALID_SPEC
    assert retype_error(status, "RenderFailed") is status
    old = {
        "status": {
            "conditions": [
                {"type": "ComparisonError", "message": "old"},
                {"type": "SharedResourceWarning", "message": "s"},
                {"type": SYNC_WINDOW_CONDITION, "message": "blocked", "lastTransitionTime": "t0"},
            ]
        }
    }
    assert window_blocked(old["status"])
    assert not window_blocked({"conditions": [{"type": "SharedResourceWarning"}]})
    same = window_conditions(old, "blocked", "t1")["conditions"]
    assert [c["type"] for c in same] == ["SharedResourceWarning", SYNC_WINDOW_CONDITION]
    assert same[-1]["lastTransitionTime"] == "t0"  # unchanged while it holds
    assert window_conditions(old, "other", "t1")["conditions"][-1]["lastTransitionTime"] == "t1"


async def test_a_project_is_parsed_once_per_version() -> None:
    project = appproject(**TEAM)
    project["metadata"].update(uid="u1", resourceVersion="1")
    projects = {"team": project}
    a = admission(projects)
    assert await a.admit(application()) == ""
    project["spec"] = {}  # same version: the parsed project is reused
    assert await a.admit(application()) == ""
    project["metadata"]["resourceVersion"] = "2"
    assert "is not permitted" in await a.admit(application())


async def test_create_namespace_needs_the_namespace_kind_when_the_namespace_is_missing() -> None:
    team = {**TEAM, "destinations": [{"server": "*", "namespace": "*"}]}
    a = admission({"team": appproject(**team)})
    creating = application(sync_options=["CreateNamespace=true"])
    assert await a.admit_objects(creating, []) == (
        "resource :Namespace is not permitted in project team"
    )
    existing = application(dest_ns="exists", sync_options=["CreateNamespace=true"])
    assert await a.admit_objects(existing, []) == ""
    assert await a.admit_objects(application(), []) == ""
    wide = {**team, "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}]}
    assert await admission({"team": appproject(**wide)}).admit_objects(creating, []) == ""
