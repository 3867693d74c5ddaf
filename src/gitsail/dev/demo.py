"""`make demo`: the dev cluster plus a git server holding the article's GitOps repository.

The demo is a dev cluster named ``demo`` and, beside it in the same state directory, a
detached git server (``python -m gitsail dev git-server``) serving ``gitops.git``, seeded
from ``examples/gitops-repo`` on first start. Running it again reuses what is alive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from gitsail.dev import cluster as devcluster
from gitsail.dev.cluster import ProcessRecord
from gitsail.dev.gitserver import Workdir, init_bare

__all__ = ["DEMO_NAME", "Demo", "demo_down", "demo_up", "example_repo"]

DEMO_NAME = "demo"
REPO = "gitops.git"


def example_repo() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"


@dataclass(frozen=True)
class Demo:
    cluster: devcluster.Cluster
    git_url: str
    git_server: ProcessRecord


def _git_state(cluster: devcluster.Cluster) -> Path:
    return cluster.directory / "git-server.json"


def _start_git_server(cluster: devcluster.Cluster, root: Path) -> tuple[ProcessRecord, int]:
    (port,) = devcluster.free_ports(1)
    log = cluster.directory / "logs" / "git-server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitsail",
                "dev",
                "git-server",
                "--root",
                str(root),
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # /proc/<pid>/cmdline starts with the interpreter path as exec'd.
    record = ProcessRecord("git-server", proc.pid, sys.executable, str(log))
    devcluster.wait_for(
        "the demo git server",
        lambda: (
            httpx.get(
                f"http://127.0.0.1:{port}/{REPO}/info/refs?service=git-upload-pack", timeout=2
            ).status_code
            == 200
        ),
        timeout=30,
        watch=[record],
    )
    _git_state(cluster).write_text(json.dumps({"port": port}))
    return record, port


def demo_up(*, nodes: int = 2, progress: devcluster.Progress = lambda _m: None) -> Demo:
    """Start (or reuse) the demo cluster and its git server; seed the repository once."""
    cluster = devcluster.up(DEMO_NAME, nodes=nodes, progress=progress)
    state = _git_state(cluster)
    running = next((p for p in cluster.processes if p.role == "git-server"), None)
    if running is not None and state.is_file():
        port = json.loads(state.read_text())["port"]
        return Demo(cluster, f"http://127.0.0.1:{port}/{REPO}", running)
    root = cluster.directory / "git"
    init_bare(root / REPO)
    progress("starting the git server")
    record, port = _start_git_server(cluster, root)
    cluster.processes.append(record)
    cluster.save()
    url = f"http://127.0.0.1:{port}/{REPO}"
    progress("pushing the example repository")
    work = Workdir(url)
    try:
        work.copy_tree(example_repo())
        for app in (work.path / "clusters").glob("*/*.yaml"):
            app.write_text(app.read_text().replace("REPO_URL", url))
        work.commit("Example GitOps repository: base + development/staging/production")
        work.push()
    finally:
        work.close()
    return Demo(cluster, url, record)


def demo_down() -> bool:
    """Stop the demo cluster and its git server (one of its recorded processes)."""
    return devcluster.down(DEMO_NAME)
