"""`gitsail app sync|get --refresh|wait` asking a running controller through the API, as
`argocd app …` does: the CLI writes the request, the controller does the work and records
it, the CLI watches for the answer."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    RunningController,
    app_status,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)

pytestmark = pytest.mark.integration

APP = ("argoproj.io/v1alpha1", "Application")


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


async def gitsail(cluster: Cluster, *args: str) -> Run:
    """The CLI in a subprocess, awaited without blocking the in-process controller."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitsail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(Path.home()),
        },
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def test_sync_through_the_controller_prints_progress_and_succeeds(
    cluster: Cluster, api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("via-ctl", v="1")}, "v1")
    await create_app(api, control_ns, "manual", public_url(git_repo))

    dry = await gitsail(cluster, "app", "sync", "manual", "-N", control_ns, "--dry-run")
    assert dry.code == 0, dry
    assert await api.get("v1", "ConfigMap", "via-ctl", control_ns) is None

    run = await gitsail(cluster, "app", "sync", "manual", "-N", control_ns, "--timeout", "120")
    assert run.code == 0, run
    lines = run.out.splitlines()
    # Piped: plain lines, the resource as the controller recorded it, then the outcome.
    assert any(
        line.split()[:4] == ["Sync", "ConfigMap", f"{control_ns}/via-ctl", "Synced"]
        for line in lines
    ), run
    assert any(line.startswith("Succeeded:") for line in lines), run
    assert await api.get("v1", "ConfigMap", "via-ctl", control_ns) is not None

    app = await api.get(*APP, "manual", control_ns)
    assert app is not None
    assert "operation" not in app  # the controller cleared the request it ran
    state = app["status"]["operationState"]
    assert state["phase"] == "Succeeded"
    who = state["operation"]["initiatedBy"]
    assert set(who) == {"username"}
    assert who["username"]
    assert state["operation"]["sync"] == {"revision": "main", "prune": False, "dryRun": False}
    assert [h["initiatedBy"] for h in app["status"]["history"]] == [who]

    again = await gitsail(
        cluster, "app", "sync", "manual", "-N", control_ns, "--prune", "-o", "json"
    )
    assert again.code == 0, again
    printed = json.loads(again.out)
    assert printed["phase"] == "Succeeded"
    assert printed["operation"]["sync"]["prune"] is True


async def test_a_failing_sync_exits_non_zero_with_the_controllers_message(
    cluster: Cluster, api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/bad.yaml": "kind: [\n"}, "bad")
    await create_app(api, control_ns, "broken", public_url(git_repo))
    run = await gitsail(cluster, "app", "sync", "broken", "-N", control_ns, "--timeout", "120")
    assert run.code == 1, run
    assert "bad.yaml" in run.err, run
    assert "sync of broken error" in run.err, run
    status = await app_status(api, control_ns, "broken")
    assert status["operationState"]["phase"] == "Error"


async def test_async_request_a_refused_second_one_and_wait_once_a_controller_runs(
    cluster: Cluster,
    api: Kube,
    git_repo: Workdir,
    control_ns: str,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("later", v="1")}, "v1")
    await create_app(api, control_ns, "queued", public_url(git_repo))

    requested = await gitsail(cluster, "app", "sync", "queued", "-N", control_ns, "--async")
    assert requested.code == 0, requested
    assert "requested" in requested.out
    app = await api.get(*APP, "queued", control_ns)
    assert app is not None
    assert app["operation"]["sync"]["revision"] == "main"
    assert "operationState" not in (app.get("status") or {})  # nothing ran it: no controller

    second = await gitsail(cluster, "app", "sync", "queued", "-N", control_ns, "--prune")
    assert second.code == 1, second
    assert "another operation is already in progress" in second.err
    app = await api.get(*APP, "queued", control_ns)
    assert app is not None
    assert app["operation"]["sync"]["prune"] is False  # the first request stands

    controller = await start_controller(api, control_ns, tmp_path)
    try:
        waited = await gitsail(
            cluster,
            "app",
            "wait",
            "queued",
            "-N",
            control_ns,
            "--operation",
            "--sync",
            "--timeout",
            "120",
        )
    finally:
        await stop_controller(controller)
    assert waited.code == 0, waited
    assert "sync Synced" in waited.out
    assert await api.get("v1", "ConfigMap", "later", control_ns) is not None


async def test_without_a_controller_the_cli_hints_and_waits_until_its_timeout(
    cluster: Cluster, api: Kube, git_repo: Workdir, control_ns: str, crds_installed: None
) -> None:
    await create_app(api, control_ns, "orphan", public_url(git_repo))
    run = await gitsail(
        cluster, "app", "sync", "orphan", "-N", control_ns, "--hint-after", "1", "--timeout", "4"
    )
    assert run.code == 1, run
    err = " ".join(run.err.split())
    assert "is the controller running" in err
    assert "--in-process" in err
    assert "timed out after 4s" in err
    assert "not started" in err


async def test_get_refresh_waits_until_the_controller_has_compared_again(
    cluster: Cluster, api: Kube, running: RunningController, git_repo: Workdir, control_ns: str
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("r", v="1")}, "v1")
    await create_app(api, control_ns, "fresh", public_url(git_repo))

    async def compared() -> str:
        return str(
            ((await app_status(api, control_ns, "fresh")).get("sync") or {}).get("revision") or ""
        )

    first = await eventually(compared, what="first comparison")
    sha = git_repo.commit_and_push({"app/cm.yaml": configmap("r", v="2")}, "v2")
    assert sha != first
    # The controller polls every 30 s here; --refresh gets the new commit compared now.
    run = await gitsail(
        cluster,
        "app",
        "get",
        "fresh",
        "-N",
        control_ns,
        "--refresh",
        "-o",
        "json",
        "--timeout",
        "60",
    )
    assert run.code == 0, run
    got = json.loads(run.out)
    assert "argocd.argoproj.io/refresh" not in (got["metadata"].get("annotations") or {})
    assert got["status"]["sync"]["revision"] == sha
    assert got["status"]["sync"]["status"] == "OutOfSync"


async def test_get_refresh_in_process_needs_no_controller(
    cluster: Cluster, api: Kube, git_repo: Workdir, control_ns: str, crds_installed: None
) -> None:
    sha = git_repo.commit_and_push({"app/cm.yaml": configmap("here", v="1")}, "v1")
    await create_app(api, control_ns, "alone", public_url(git_repo))
    run = await gitsail(
        cluster, "app", "get", "alone", "-N", control_ns, "--refresh", "--in-process", "-o", "json"
    )
    assert run.code == 0, run
    got = json.loads(run.out)
    assert got["status"]["sync"] == {
        **got["status"]["sync"],
        "status": "OutOfSync",
        "revision": sha,
    }
    synced = await gitsail(cluster, "app", "sync", "alone", "-N", control_ns, "--in-process")
    assert synced.code == 0, synced
    assert await api.get("v1", "ConfigMap", "here", control_ns) is not None
