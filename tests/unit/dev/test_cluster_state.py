import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitsail.dev import cluster as devcluster
from gitsail.dev.cluster import Cluster, ClusterError, ProcessRecord


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GITSAIL_STATE_DIR", str(tmp_path))
    return tmp_path


def test_process_record_is_alive_only_for_the_same_executable() -> None:
    me = ProcessRecord("self", os.getpid(), sys.executable, "")
    assert me.alive()
    impostor = ProcessRecord("self", os.getpid(), "/usr/bin/etcd", "")
    assert not impostor.alive()


def test_exited_process_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not ProcessRecord("x", proc.pid, sys.executable, "").alive()


def test_cluster_with_a_dead_process_is_not_alive(state_dir: Path) -> None:
    directory = devcluster.cluster_dir("c1")
    directory.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    cluster = Cluster(
        name="c1",
        directory=directory,
        ports={"apiserver": 1},
        nodes=1,
        processes=[
            ProcessRecord("live", os.getpid(), sys.executable, ""),
            ProcessRecord("dead", proc.pid, sys.executable, ""),
        ],
    )
    cluster.save()
    loaded = devcluster.load("c1")
    assert loaded is not None
    assert loaded.ports == {"apiserver": 1}
    assert not loaded.alive()
    assert [c.name for c in devcluster.list_clusters()] == ["c1"]


def test_down_of_a_stale_cluster_removes_its_state(state_dir: Path) -> None:
    directory = devcluster.cluster_dir("stale")
    directory.mkdir(parents=True)
    Cluster(name="stale", directory=directory, ports={}, nodes=0).save()
    assert devcluster.down("stale")
    assert not directory.exists()
    assert not devcluster.down("stale")


@pytest.mark.parametrize("name", ["", "../x", "a b", "a/b"])
def test_cluster_names_cannot_escape_the_state_directory(name: str) -> None:
    with pytest.raises(ClusterError):
        devcluster.cluster_dir(name)


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = devcluster.free_ports(5)
    assert len(set(ports)) == 5
    assert all(1024 < p < 65536 for p in ports)
