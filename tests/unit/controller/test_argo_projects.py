"""The AppProject kind on the controller: it installs the engine's admission and a change
to a project re-queues the Applications that asked about it (not on startup, and not when
it is the ``default`` project created for them, with the spec they were judged with)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from gitsail.controller.argo_projects import appproject
from gitsail.controller.registry import KindContext, ObjectKey
from gitsail.kinds.argo_application import App
from gitsail.model import Obj


def application(name: str, project: str) -> App:
    return App.from_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd", "generation": 1},
            "spec": {
                "project": project,
                "source": {"repoURL": "https://git.example/r.git", "path": "p"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "x"},
            },
        }
    )


async def test_a_project_change_requeues_its_apps() -> None:
    queued: list[tuple[ObjectKey, str]] = []
    projects: dict[str, Obj] = {
        "team": {"metadata": {"name": "team", "namespace": "argocd"}, "spec": {}}
    }

    async def read(key: ObjectKey, fresh: bool) -> Obj | None:
        assert key.kind == "AppProject"
        assert not fresh  # the watch cache
        return projects.get(key.name)

    engine = SimpleNamespace(admission=None)
    ctx: Any = SimpleNamespace(
        kube=None,
        engine=engine,
        settings=SimpleNamespace(control_namespace="argocd"),
        read=read,
        enqueue=lambda key, reason: queued.append((key, reason)),
    )
    kind = appproject(cast(KindContext, ctx))
    assert engine.admission is kind.admission
    assert "not permitted" in await kind.admission.admit(application("a", "team"))
    await kind.admission.admit(application("b", "team"))
    await kind.admission.admit(application("c", "other"))  # missing: refused, remembered
    await kind.admission.admit(application("b", "other"))  # b moved to another project

    await kind.reconcile(projects["team"], frozenset({"startup"}))
    assert queued == []  # every app is queued at startup anyway
    widened = {**projects["team"], "spec": {"sourceRepos": ["*"]}}
    projects["team"] = widened
    # An app's poll reads the widened project before the project's own reconcile runs:
    # the project's other apps must still be re-queued.
    assert "not permitted" not in await kind.admission.admit(application("a", "team"))
    await kind.reconcile(widened, frozenset({"changed"}))
    assert queued == [(ObjectKey("Application", "argocd", "a"), "project:team")]
    queued.clear()
    kind.forget(ObjectKey("AppProject", "argocd", "other"))
    assert [k.name for k, _ in queued] == ["b", "c"]
    assert kind.wakes({"spec": {"a": 1}}, {"spec": {"a": 2}})
    assert not kind.wakes({"spec": {}, "status": {}}, {"spec": {}, "status": {"x": 1}})


async def test_the_default_project_created_for_its_apps_does_not_requeue_them_once() -> None:
    queued: list[tuple[ObjectKey, str]] = []
    projects: dict[str, Obj] = {}
    created: list[Obj] = []

    class Kube:
        async def create(self, obj: Obj) -> Obj:
            created.append(obj)
            return obj

    async def read(key: ObjectKey, fresh: bool) -> Obj | None:
        return projects.get(key.name)

    ctx: Any = SimpleNamespace(
        kube=Kube(),
        engine=SimpleNamespace(admission=None),
        settings=SimpleNamespace(control_namespace="argocd"),
        read=read,
        enqueue=lambda key, reason: queued.append((key, reason)),
    )
    kind = appproject(cast(KindContext, ctx))
    assert await kind.admission.admit(application("a", "default")) == ""
    [made] = created  # judged with the built-in default, which is then created
    projects["default"] = made
    await kind.reconcile(made, frozenset({"added"}))
    assert queued == []  # seen through the watch: exactly what the app was judged with
    await kind.reconcile(made, frozenset({"changed"}))
    assert [k.name for k, _ in queued] == ["a"]  # asked once: a later version re-queues
