"""AppProjects enforced by the controller on the real cluster: a repo, a destination or a
cluster-scoped kind outside the project is refused with Argo CD's InvalidSpecError and its
reason before anything is applied; a project change re-queues its apps; a deny sync window
blocks automated syncs (shown by `gitsail app get`) and manual ones without manualSync."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    RunningController,
    app_status,
    create_app,
    eventually,
)

pytestmark = pytest.mark.integration

PROJ = ("argoproj.io/v1alpha1", "AppProject")
IN_CLUSTER = "https://kubernetes.default.svc"


async def make_project(api: Kube, namespace: str, name: str, **spec: Any) -> None:
    await api.create(
        {
            "apiVersion": PROJ[0],
            "kind": PROJ[1],
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


async def condition(api: Kube, namespace: str, app: str, ctype: str) -> str:
    """The message of the app's condition of type ``ctype`` ("" while there is none)."""
    for c in (await app_status(api, namespace, app)).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("message") or "")
    return ""


async def gitsail(cluster: Cluster, *args: str) -> tuple[int, str]:
    """The CLI in a subprocess (piped: plain, full-width output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitsail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
        },
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def test_repo_destination_and_cluster_kind_outside_the_project_are_refused(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str, other_ns: str
) -> None:
    made_ns = f"{control_ns[:50]}-made"
    git_repo.commit_and_push(
        {
            "ok/cm.yaml": configmap("allowed-cm", v="1"),
            "dest/cm.yaml": configmap("dest-cm", v="1"),
            "cluster/ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {made_ns}\n",
            "cluster/cm.yaml": configmap("cluster-cm", v="1"),
        },
        "v1",
    )
    repo = public_url(git_repo)
    await make_project(
        api,
        control_ns,
        "team",
        sourceRepos=[repo],
        destinations=[{"server": IN_CLUSTER, "namespace": control_ns}],
    )
    await make_project(
        api,
        control_ns,
        "narrow",
        sourceRepos=["https://elsewhere.invalid/*"],
        destinations=[{"server": "*", "namespace": "*"}],
    )
    await create_app(api, control_ns, "allowed", repo, "ok", project="team", syncPolicy=AUTOMATED)
    await create_app(api, control_ns, "repo", repo, "ok", project="narrow", syncPolicy=AUTOMATED)
    await create_app(
        api,
        control_ns,
        "dest",
        repo,
        "dest",
        project="team",
        syncPolicy=AUTOMATED,
        destination={"server": IN_CLUSTER, "namespace": other_ns},
    )
    await create_app(api, control_ns, "kind", repo, "cluster", project="team", syncPolicy=AUTOMATED)
    await create_app(api, control_ns, "ghost", repo, "ok", project="nope", syncPolicy=AUTOMATED)

    # The permitted app syncs normally.
    await eventually(
        lambda: api.get("v1", "ConfigMap", "allowed-cm", control_ns), what="the allowed app synced"
    )
    expected = {
        "repo": f"application repo {repo} is not permitted in project 'narrow'",
        "dest": (
            f"application destination server '{IN_CLUSTER}' and namespace '{other_ns}' do not "
            "match any of the allowed destinations in project 'team'"
        ),
        "kind": "resource :Namespace is not permitted in project team",
        "ghost": "Application referencing project nope which does not exist",
    }
    for app, message in expected.items():

        async def refused(app: str = app) -> str:
            return await condition(api, control_ns, app, "InvalidSpecError")

        assert await eventually(refused, what=f"{app} refused") == message
        status = await app_status(api, control_ns, app)
        assert status["sync"]["status"] == "Unknown"
        assert "operationState" not in status  # no sync was even started
    # Nothing of the refused apps was applied: not the ConfigMap next to the Namespace.
    assert await api.get("v1", "ConfigMap", "dest-cm", other_ns) is None
    assert await api.get("v1", "ConfigMap", "cluster-cm", control_ns) is None
    assert await api.get("v1", "Namespace", made_ns, None) is None

    # Widening the project re-queues its apps at once: the Namespace is now permitted.
    try:
        await api.merge_patch(
            *PROJ,
            "team",
            {"spec": {"clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}]}},
            control_ns,
        )
        await eventually(
            lambda: api.get("v1", "ConfigMap", "cluster-cm", control_ns),
            timeout=30,  # well under the 30 s resync + backoff: the project change woke it
            what="the kind app synced after the project was widened",
        )

        async def admitted() -> bool:
            return await condition(api, control_ns, "kind", "InvalidSpecError") == ""

        await eventually(admitted, what="the InvalidSpecError condition cleared")
    finally:
        await api.delete("v1", "Namespace", made_ns, None)


async def test_a_deny_window_blocks_automated_and_manual_syncs_and_shows_in_app_get(
    cluster: Cluster, api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("windowed", v="1")}, "v1")
    repo = public_url(git_repo)
    always = {"kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["*"]}
    await make_project(
        api,
        control_ns,
        "frozen",
        sourceRepos=["*"],
        destinations=[{"server": "*", "namespace": "*"}],
        syncWindows=[always],
    )
    await create_app(api, control_ns, "held", repo, project="frozen", syncPolicy=AUTOMATED)

    async def blocked() -> str:
        return await condition(api, control_ns, "held", "SyncWindowBlocked")

    assert "active deny window (deny * * * * * for 1h)" in await eventually(
        blocked, what="the sync window condition"
    )
    status = await app_status(api, control_ns, "held")
    assert status["sync"]["status"] == "OutOfSync"
    assert await api.get("v1", "ConfigMap", "windowed", control_ns) is None

    code, out = await gitsail(cluster, "app", "get", "held", "-N", control_ns)
    assert code == 0, out
    assert "SyncWindowBlocked" in out
    assert "active deny window" in out

    code, out = await gitsail(
        cluster, "proj", "windows", "list", "frozen", "-n", control_ns, "-o", "json"
    )
    assert code == 0, out
    (row,) = json.loads(out)
    assert (row["status"], row["kind"], row["manualSync"]) == ("Active", "deny", "Disabled")

    # A manual sync is refused too (no manualSync on the window), and applies nothing.
    code, out = await gitsail(cluster, "app", "sync", "held", "-N", control_ns, "--timeout", "60")
    assert code != 0, out
    state = (await app_status(api, control_ns, "held"))["operationState"]
    assert state["phase"] == "Failed"
    assert state["message"].startswith("Cannot sync: Blocked by sync window")
    assert await api.get("v1", "ConfigMap", "windowed", control_ns) is None

    # The window goes: the project change wakes the app, which syncs and drops the condition.
    await api.merge_patch(*PROJ, "frozen", {"spec": {"syncWindows": None}}, control_ns)
    await eventually(
        lambda: api.get("v1", "ConfigMap", "windowed", control_ns),
        timeout=30,
        what="the automated sync once the window is gone",
    )

    async def cleared() -> bool:
        return await blocked() == ""

    await eventually(cleared, what="the sync window condition cleared")


async def test_proj_cli_lists_and_shows_projects(
    cluster: Cluster, api: Kube, crds_installed: None, control_ns: str
) -> None:
    await make_project(
        api,
        control_ns,
        "team",
        description="the team's apps",
        sourceRepos=["https://git.example/team/*", "!https://git.example/team/secret"],
        destinations=[{"server": IN_CLUSTER, "namespace": "team-*"}],
        namespaceResourceBlacklist=[{"group": "", "kind": "ResourceQuota"}],
    )
    code, out = await gitsail(cluster, "proj", "list", "-n", control_ns)
    assert code == 0, out
    assert "team" in out
    assert "https://git.example/team/*" in out  # piped: full width, nothing cut
    code, out = await gitsail(cluster, "proj", "get", "team", "-n", control_ns)
    assert code == 0, out
    assert '""/ResourceQuota' in out
    code, out = await gitsail(cluster, "proj", "get", "team", "-n", control_ns, "-o", "yaml")
    assert code == 0, out
    assert "description: the team's apps" in out
    code, out = await gitsail(cluster, "proj", "get", "missing", "-n", control_ns)
    assert code == 1
    assert "not found" in out


async def test_manual_sync_runs_in_a_deny_window_with_manual_sync(
    cluster: Cluster, api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("by-hand", v="1")}, "v1")
    window = {
        "kind": "deny",
        "schedule": "* * * * *",
        "duration": "2h",
        "namespaces": [control_ns],
        "manualSync": True,
    }
    await make_project(
        api,
        control_ns,
        "handheld",
        sourceRepos=["*"],
        destinations=[{"server": "*", "namespace": control_ns}],
        syncWindows=[window],
    )
    await create_app(
        api, control_ns, "manual", public_url(git_repo), project="handheld", syncPolicy=AUTOMATED
    )

    async def blocked() -> str:
        return await condition(api, control_ns, "manual", "SyncWindowBlocked")

    await eventually(blocked, what="the automated sync held")
    assert await api.get("v1", "ConfigMap", "by-hand", control_ns) is None
    code, out = await gitsail(cluster, "app", "sync", "manual", "-N", control_ns, "--timeout", "90")
    assert code == 0, out
    cm = await api.get("v1", "ConfigMap", "by-hand", control_ns)
    assert cm is not None
    assert cm["data"]["v"] == "1"

    async def cleared() -> bool:
        return await blocked() == ""

    await eventually(cleared, what="the condition dropped once synced")
