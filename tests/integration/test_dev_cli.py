"""`gitsail dev up|status|kubeconfig|down` as a user runs them, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitsail import toolchain

pytestmark = pytest.mark.integration


def gitsail(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"gitsail {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
    return proc


def kubectl(kubeconfig: str, *args: str) -> str:
    proc = subprocess.run(
        [str(toolchain.find_binary("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def status_of(name: str) -> dict[str, Any] | None:
    rows = json.loads(gitsail("dev", "status", "-o", "json").stdout)
    return next((r for r in rows if r["name"] == name), None)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def cluster_name() -> Iterator[str]:
    name = f"cli-{os.getpid()}"
    yield name
    gitsail("dev", "down", "--name", name, check=False)


def test_up_workload_down_leaves_no_process_or_port_behind(cluster_name: str) -> None:
    out = gitsail("dev", "up", "--name", cluster_name, "--nodes", "2").stdout
    assert "is ready" in out
    assert "export KUBECONFIG=" in out

    kubeconfig = (
        gitsail("dev", "kubeconfig", "--name", cluster_name).stdout.strip().splitlines()[-1]
    )
    assert Path(kubeconfig).is_file()
    row = status_of(cluster_name)
    assert row is not None
    assert row["state"] == "running"
    assert row["nodes"] == 2
    pids = [p["pid"] for p in row["processes"]]
    roles = {p["role"] for p in row["processes"]}
    assert roles == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

    kubectl(
        kubeconfig, "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"
    )
    kubectl(kubeconfig, "wait", "--for=condition=Available", "deployment/web", "--timeout=90s")
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-l", "app=web", "-o", "json"))
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running", "Running"]
    assert {p["spec"]["nodeName"] for p in pods["items"]} <= {"kwok-node-0", "kwok-node-1"}

    kubectl(kubeconfig, "create", "job", "once", "--image=registry.invalid/job:1")
    kubectl(kubeconfig, "wait", "--for=condition=Complete", "job/once", "--timeout=90s")

    state = json.loads(Path(kubeconfig).with_name("state.json").read_text())
    ports = list(state["ports"].values())
    gitsail("dev", "down", "--name", cluster_name)
    assert status_of(cluster_name) is None
    assert not Path(kubeconfig).exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"pid {pid} still runs"
    for port in ports:
        assert not port_open(port), f"port {port} still listening"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def test_stale_cluster_is_detected_and_replaced(cluster_name: str) -> None:
    gitsail("dev", "up", "--name", cluster_name)
    row = status_of(cluster_name)
    assert row is not None
    for proc in row["processes"]:
        os.killpg(proc["pid"], signal.SIGKILL)

    def stale() -> bool:
        current = status_of(cluster_name)
        return current is not None and current["state"] == "stale"

    assert stale()
    out = gitsail("dev", "up", "--name", cluster_name).stdout
    assert "is ready" in out
    row = status_of(cluster_name)
    assert row is not None
    assert row["state"] == "running"
    kubeconfig = row["kubeconfig"]
    assert "kwok-node-0" in kubectl(kubeconfig, "get", "nodes")


def test_up_again_reuses_a_running_cluster(cluster_name: str) -> None:
    gitsail("dev", "up", "--name", cluster_name)
    before = status_of(cluster_name)
    out = gitsail("dev", "up", "--name", cluster_name).stdout
    after = status_of(cluster_name)
    assert before is not None
    assert after is not None
    assert "is ready" in out
    assert [p["pid"] for p in before["processes"]] == [p["pid"] for p in after["processes"]]


def test_kubeconfig_of_unknown_cluster_fails_clearly() -> None:
    proc = gitsail("dev", "kubeconfig", "--name", "no-such-cluster", check=False)
    assert proc.returncode == 1
    assert "no cluster named no-such-cluster" in proc.stderr
