"""Faults in the parts gitsail depends on: the apiserver, etcd, the git server, helm and
kustomize, and the controller itself.

In each, nothing is deleted that should not be (an object outside the app and the app's own
objects survive), the operation completes or fails cleanly once the fault is gone, and the
controller keeps answering its liveness probe while the fault lasts. The controller runs as a
real ``gitsail controller`` process so it can be killed like a pod.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube
from gitsail.toolchain import find_binary
from tests.faults.conftest import (
    PROBE_BUDGET,
    paused,
    probe_seconds,
    restart,
    wait_api_ready,
)
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    app_status,
    create_app,
    eventually,
)
from tests.integration.controller_process import ControllerProcess
from tests.integration.helpers import StallingServer

pytestmark = pytest.mark.integration

GATE_LABEL = "gitsail-fault"


def gated_deployment(name: str, gate: str, wave: int) -> str:
    """A Deployment whose pod can only be scheduled on a node labelled ``gitsail-fault=gate``:
    the sync waits on it until the test opens the gate."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{argocd.argoproj.io/sync-wave: "{wave}"}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{{GATE_LABEL}: "{gate}"}}
      containers: [{{name: c, image: registry.invalid/{name}:1}}]
"""


def wave_configmap(name: str, wave: int, **data: str) -> str:
    text = configmap(name, **data)
    return text.replace(
        f"metadata:\n  name: {name}",
        f"metadata:\n  name: {name}\n  annotations:\n    argocd.argoproj.io/sync-wave: '{wave}'",
    )


async def open_gate(api: Kube, gate: str) -> None:
    node = "kwok-node-0"
    await api.merge_patch("v1", "Node", node, {"metadata": {"labels": {GATE_LABEL: gate}}})


async def bystander(api: Kube, namespace: str) -> None:
    """An object in the app's namespace that gitsail does not own: it must survive."""
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bystander", "namespace": namespace},
            "data": {"keep": "me"},
        }
    )


async def assert_present(api: Kube, namespace: str, *names: str) -> None:
    for name in names:
        assert await api.get("v1", "ConfigMap", name, namespace) is not None, name


async def uids(api: Kube, namespace: str, *names: str) -> dict[str, str]:
    """The uid of each ConfigMap named: what must survive the fault, not be replaced."""
    found = {}
    for name in names:
        live = await api.get("v1", "ConfigMap", name, namespace)
        assert live is not None, name
        found[name] = str(live["metadata"]["uid"])
    return found


async def assert_survived(api: Kube, namespace: str, seen: dict[str, str]) -> None:
    """Each object of ``seen`` is still the very object seen before the fault: neither
    deleted (and created again by a later sync) nor being deleted."""
    for name, uid in seen.items():
        live = await api.get("v1", "ConfigMap", name, namespace)
        assert live is not None, f"{name} was deleted"
        assert live["metadata"]["uid"] == uid, f"{name} was deleted and created again"
        assert "deletionTimestamp" not in live["metadata"], f"{name} is being deleted"


async def operation_phase(api: Kube, namespace: str, app: str) -> str:
    status = await app_status(api, namespace, app)
    return str((status.get("operationState") or {}).get("phase", ""))


async def waiting_in_wave_zero(api: Kube, ns: str, app: str) -> bool:
    first = await api.get("v1", "ConfigMap", "before", ns)
    gate = await api.get("apps/v1", "Deployment", "gate", ns)
    later = await api.get("v1", "ConfigMap", "after", ns)
    running = await operation_phase(api, ns, app) == "Running"
    return first is not None and gate is not None and later is None and running


def wave_repo(git_repo: Workdir, gate: str) -> None:
    git_repo.commit_and_push(
        {
            "app/before.yaml": wave_configmap("before", 0, v="1"),
            "app/gate.yaml": gated_deployment("gate", gate, 0),
            "app/after.yaml": wave_configmap("after", 1, v="1"),
        },
        "waves",
    )


async def converged(api: Kube, ns: str, app: str) -> bool:
    status = await app_status(api, ns, app)
    after = await api.get("v1", "ConfigMap", "after", ns)
    return (
        after is not None
        and (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("operationState") or {}).get("phase") == "Succeeded"
    )


async def test_apiserver_restarted_mid_sync(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    controller_process: Callable[[], ControllerProcess],
) -> None:
    ns = control_ns
    await bystander(api, ns)
    wave_repo(git_repo, ns)
    controller = controller_process()
    await create_app(api, ns, "waves", public_url(git_repo), syncPolicy=AUTOMATED)
    await eventually(lambda: waiting_in_wave_zero(api, ns, "waves"), what="sync in wave 0")
    seen = await uids(api, ns, "bystander", "before")

    await asyncio.to_thread(restart, cluster, "kube-apiserver")
    assert await probe_seconds(controller.url) < PROBE_BUDGET
    await asyncio.to_thread(wait_api_ready, cluster)
    assert await probe_seconds(controller.url) < PROBE_BUDGET

    await open_gate(api, ns)
    await eventually(lambda: converged(api, ns, "waves"), timeout=120, what="sync completed")
    await assert_survived(api, ns, seen)
    await assert_present(api, ns, "after")


async def test_etcd_paused_for_ten_seconds(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    controller_process: Callable[[], ControllerProcess],
) -> None:
    ns = control_ns
    await bystander(api, ns)
    git_repo.commit_and_push(
        {"app/a.yaml": configmap("a", v="1"), "app/b.yaml": configmap("b")}, "v1"
    )
    controller = controller_process()
    await create_app(api, ns, "steady", public_url(git_repo), syncPolicy=AUTOMATED)

    async def a_is(value: str) -> bool:
        cm = await api.get("v1", "ConfigMap", "a", ns)
        return cm is not None and cm["data"]["v"] == value

    await eventually(lambda: a_is("1"), what="initial sync")
    seen = await uids(api, ns, "bystander", "a", "b")
    git_repo.commit_and_push(
        {"app/a.yaml": configmap("a", v="2"), "app/c.yaml": configmap("c")}, "v2"
    )

    loop = asyncio.get_running_loop()
    with paused(cluster, "etcd"):
        deadline = loop.time() + 10
        while loop.time() < deadline:
            assert await probe_seconds(controller.url) < PROBE_BUDGET
            await asyncio.sleep(1)  # probe cadence while the fault lasts, not a wait for state

    await eventually(lambda: a_is("2"), timeout=120, what="sync after etcd resumed")
    await assert_survived(api, ns, seen)
    await assert_present(api, ns, "c")


@pytest.fixture
def private_git(tmp_path: Path) -> Iterator[GitServer]:
    server = GitServer(tmp_path / "git").start()
    yield server
    server.stop()


async def test_git_server_down_and_slow(
    api: Kube,
    control_ns: str,
    private_git: GitServer,
    tmp_path: Path,
    controller_process: Callable[[], ControllerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = control_ns
    await bystander(api, ns)
    private_git.create_repo("down")
    work = Workdir(private_git.url("down"))
    work.commit_and_push({"app/a.yaml": configmap("a", v="1"), "app/b.yaml": configmap("b")}, "v1")
    stalling = StallingServer()
    monkeypatch.setenv("GITSAIL_GIT_TIMEOUT", "5")
    controller = controller_process()
    try:
        await create_app(api, ns, "down", private_git.url("down"), syncPolicy=AUTOMATED)
        await create_app(
            api, ns, "slow", f"http://127.0.0.1:{stalling.port}/slow.git", syncPolicy=AUTOMATED
        )

        async def a_is(value: str) -> bool:
            cm = await api.get("v1", "ConfigMap", "a", ns)
            return cm is not None and cm["data"]["v"] == value

        await eventually(lambda: a_is("1"), what="initial sync")
        seen = await uids(api, ns, "bystander", "a", "b")

        async def comparison_error(app: str) -> bool:
            status = await app_status(api, ns, app)
            return any(c.get("type") == "ComparisonError" for c in status.get("conditions") or [])

        # A hanging server costs its app a timeout, not the controller its liveness.
        await eventually(lambda: comparison_error("slow"), timeout=90, what="slow app error")
        assert await probe_seconds(controller.url) < PROBE_BUDGET

        port = private_git.port
        private_git.stop()
        await api.merge_patch(
            "argoproj.io/v1alpha1",
            "Application",
            "down",
            {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}},
            namespace=ns,
        )
        await eventually(lambda: comparison_error("down"), timeout=90, what="fetch error")
        assert await probe_seconds(controller.url) < PROBE_BUDGET
        await assert_survived(api, ns, seen)

        back = GitServer(private_git.root, port=port).start()
        try:
            work.commit_and_push({"app/a.yaml": configmap("a", v="2")}, "v2")
            await eventually(lambda: a_is("2"), timeout=120, what="sync after git returned")
            await assert_survived(api, ns, seen)
        finally:
            back.stop()
    finally:
        stalling.close()


def _wrapper(tmp_path: Path, tool: str) -> tuple[Path, Path]:
    """A stand-in for the pinned tool that hangs while a marker file exists."""
    marker = tmp_path / f"{tool}.hang"
    script = tmp_path / f"{tool}-wrapper"
    real = find_binary(tool)
    script.write_text(f'#!/bin/sh\nif [ -e "{marker}" ]; then sleep 300; fi\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script, marker


def _processes_running(path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


CHART = {
    "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "charts/web/values.yaml": "value: '1'\n",
    "charts/web/templates/a.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
        "data: {v: {{ .Values.value | quote }}}\n"
    ),
    "charts/web/templates/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
}
KUSTOMIZE = {
    "app/kustomization.yaml": "resources: [a.yaml, b.yaml]\n",
    "app/a.yaml": configmap("a", v="1"),
    "app/b.yaml": configmap("b"),
}


@pytest.mark.parametrize("tool", ["kustomize", "helm"])
async def test_renderer_killed_mid_render(
    tool: str,
    api: Kube,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    controller_process: Callable[[], ControllerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = control_ns
    await bystander(api, ns)
    wrapper, marker = _wrapper(tmp_path, tool)
    monkeypatch.setenv(f"GITSAIL_BIN_{tool.upper()}", str(wrapper))
    files, path = (KUSTOMIZE, "app") if tool == "kustomize" else (CHART, "charts/web")
    git_repo.commit_and_push(files, "v1")
    controller = controller_process()
    await create_app(api, ns, "tool", public_url(git_repo), path=path, syncPolicy=AUTOMATED)

    async def a_is(value: str) -> bool:
        cm = await api.get("v1", "ConfigMap", "a", ns)
        return cm is not None and cm["data"]["v"] == value

    await eventually(lambda: a_is("1"), what="initial sync")
    seen = await uids(api, ns, "bystander", "a", "b")

    marker.touch()
    change: dict[str, Any] = (
        {"app/a.yaml": configmap("a", v="2")}
        if tool == "kustomize"
        else {"charts/web/values.yaml": "value: '2'\n"}
    )
    git_repo.commit_and_push(change, "v2")
    await api.merge_patch(
        "argoproj.io/v1alpha1",
        "Application",
        "tool",
        {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
        namespace=ns,
    )

    async def hanging() -> list[int]:
        return _processes_running(wrapper)

    pids = await eventually(hanging, timeout=90, what=f"{tool} render in progress")
    for pid in pids:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
    marker.unlink()
    assert await probe_seconds(controller.url) < PROBE_BUDGET
    # The killed render never reaches the sync stage: nothing is pruned, and the next
    # reconcile renders the new commit.
    await assert_survived(api, ns, seen)
    await eventually(lambda: a_is("2"), timeout=120, what="render after the kill")
    await assert_survived(api, ns, seen)


async def test_controller_sigkilled_between_waves(
    api: Kube,
    control_ns: str,
    git_repo: Workdir,
    controller_process: Callable[[], ControllerProcess],
) -> None:
    ns = control_ns
    await bystander(api, ns)
    wave_repo(git_repo, ns + "-k")
    first = controller_process()
    await create_app(api, ns, "waves", public_url(git_repo), syncPolicy=AUTOMATED)
    await eventually(lambda: waiting_in_wave_zero(api, ns, "waves"), what="sync in wave 0")
    seen = await uids(api, ns, "bystander", "before")

    first.kill()
    await open_gate(api, ns + "-k")
    second = controller_process()
    assert await probe_seconds(second.url) < PROBE_BUDGET
    await eventually(lambda: converged(api, ns, "waves"), timeout=120, what="sync resumed")
    assert await probe_seconds(second.url) < PROBE_BUDGET
    await assert_survived(api, ns, seen)
    await assert_present(api, ns, "after")
