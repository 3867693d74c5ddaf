"""AppProject ``orphanedResources`` on the real cluster: objects of an app's destination
namespace that nothing tracks are counted in Argo CD's ``OrphanedResourceWarning`` (shown
by ``gitsail app get``) and listed by ``gitsail app resources --orphaned``; ignore entries,
what Kubernetes derives and what an app tracks are left out; the orphans are never touched;
the warning goes once they are gone."""

from __future__ import annotations

import json

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.app.conftest import configmap, public_url
from tests.integration.appproject.test_appproject import (
    IN_CLUSTER,
    PROJ,
    condition,
    gitsail,
    make_project,
)
from tests.integration.controller.conftest import (
    AUTOMATED,
    RunningController,
    create_app,
    eventually,
)

pytestmark = pytest.mark.integration

WARNING = "OrphanedResourceWarning"


async def test_orphaned_resources_are_warned_about_listed_and_never_touched(
    cluster: Cluster,
    api: Kube,
    running: RunningController,
    git_repo: Workdir,
    control_ns: str,
    other_ns: str,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("managed", v="1")}, "v1")
    repo = public_url(git_repo)

    def obj(kind: str, name: str, **rest: object) -> Obj:
        meta = {"name": name, "namespace": other_ns}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, **rest}

    strays = [
        obj("ConfigMap", "stray", data={"a": "1"}),
        obj("Secret", "stray-secret", stringData={"k": "hush-value"}),
        obj("ConfigMap", "ignored-cm"),
        obj("ConfigMap", "derived"),  # given an owner below: Kubernetes derived it
    ]
    made = {stray["metadata"]["name"]: await api.create(stray) for stray in strays}
    owner = made["stray"]["metadata"]
    await api.merge_patch(
        "v1",
        "ConfigMap",
        "derived",
        {"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "stray", "uid": owner["uid"]}
        ]}},
        other_ns,
    )  # fmt: skip
    before = {
        name: (await api.get("v1", obj["kind"], name, other_ns))["metadata"]["resourceVersion"]
        for name, obj in made.items()
    }
    await make_project(
        api,
        control_ns,
        "watched",
        sourceRepos=["*"],
        destinations=[{"server": IN_CLUSTER, "namespace": other_ns}],
        orphanedResources={"warn": True, "ignore": [{"kind": "ConfigMap", "name": "ignored-*"}]},
    )
    await create_app(
        api,
        control_ns,
        "tidy",
        repo,
        project="watched",
        syncPolicy=AUTOMATED,
        destination={"server": IN_CLUSTER, "namespace": other_ns},
    )
    await eventually(
        lambda: api.get("v1", "ConfigMap", "managed", other_ns),
        timeout=120,  # a loaded shared machine
        what="the app synced",
    )

    async def warned() -> str:
        return await condition(api, control_ns, "tidy", WARNING)

    assert await eventually(warned, timeout=120, what="the orphan warning") == (
        "Application has 2 orphaned resources"
    )

    code, out = await gitsail(
        cluster, "app", "resources", "tidy", "--orphaned", "-N", control_ns, "-o", "json"
    )
    assert code == 0, out
    rows = json.loads(out)
    assert [(r["kind"], r["name"], r["namespace"], r["orphaned"]) for r in rows] == [
        ("ConfigMap", "stray", other_ns, True),
        ("Secret", "stray-secret", other_ns, True),
    ]
    assert "hush-value" not in out
    code, out = await gitsail(cluster, "app", "resources", "tidy", "-N", control_ns, "-o", "yaml")
    assert code == 0, out
    assert "name: managed" in out
    assert "stray" not in out
    code, out = await gitsail(cluster, "app", "get", "tidy", "-N", control_ns)
    assert code == 0, out
    assert "OrphanedResourceWarning: Application has 2 orphaned resources" in out

    # Never touched: neither changed nor deleted by syncs and looks.
    for name, obj in made.items():
        live = await api.get("v1", obj["kind"], name, other_ns)
        assert live is not None, name
        assert live["metadata"]["resourceVersion"] == before[name], name

    # Gone (one deleted, one adopted into the ignore list): the warning is cleared.
    await api.delete("v1", "ConfigMap", "stray", other_ns)
    await api.merge_patch(
        *PROJ,
        "watched",
        {"spec": {"orphanedResources": {"ignore": [
            {"kind": "ConfigMap", "name": "ignored-*"}, {"kind": "Secret"}
        ]}}},
        control_ns,
    )  # fmt: skip

    async def cleared() -> bool:
        return await condition(api, control_ns, "tidy", WARNING) == ""

    await eventually(cleared, timeout=120, what="the orphan warning cleared")
    code, out = await gitsail(
        cluster, "app", "resources", "tidy", "--orphaned", "-N", control_ns, "-o", "json"
    )
    assert code == 0, out
    assert json.loads(out) == []


async def test_resources_orphaned_refuses_a_project_without_orphaned_resources(
    cluster: Cluster, api: Kube, git_repo: Workdir, control_ns: str, crds_installed: None
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("x", v="1")}, "v1")
    await create_app(api, control_ns, "plain", public_url(git_repo))
    code, out = await gitsail(cluster, "app", "resources", "plain", "--orphaned", "-N", control_ns)
    assert code != 0
    assert "does not monitor orphaned resources" in out
