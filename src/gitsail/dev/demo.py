"""`make demo`: a dev cluster, a git server with the article's repository, and the controller.

Everything belongs to a dev cluster named ``demo`` (its processes are recorded in the
cluster's state, so ``gitsail demo down`` stops them all):

- a git server serving ``gitops.git``, seeded from ``examples/gitops-repo``: the article's
  layout (``apps/base/myapp``, ``apps/overlays/<env>``) and one Argo CD Application per
  environment under ``clusters/<env>``, automated with prune and self-heal;
- the CRDs, the ``argocd`` namespace with ``argocd-cm`` (a 15 s poll so changes show up
  quickly) and ``argocd-secret`` (a webhook secret), and the three Applications;
- ``gitsail controller`` reconciling them.

Running it again reuses what is alive; a demo whose processes died is rebuilt.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gitsail.app.install import install_crds
from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import Workdir, init_bare
from gitsail.kube import Kube, load_kubeconfig

__all__ = ["DEMO_NAME", "ENVIRONMENTS", "Demo", "demo_down", "demo_up", "example_repo"]

DEMO_NAME = "demo"
REPO = "gitops.git"
ENVIRONMENTS = ("development", "staging", "production")


def example_repo() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"


@dataclass(frozen=True)
class Demo:
    cluster: devcluster.Cluster
    git_url: str
    controller_url: str
    webhook_secret: str


def _state_file(cluster: devcluster.Cluster) -> Path:
    return cluster.directory / "demo.json"


def _wait_http(url: str, what: str, record: devcluster.ProcessRecord) -> None:
    devcluster.wait_for(
        what, lambda: httpx.get(url, timeout=2).status_code == 200, timeout=60, watch=[record]
    )


def _seed_repository(url: str) -> None:
    work = Workdir(url)
    try:
        work.copy_tree(example_repo())
        for app in (work.path / "clusters").glob("*/*.yaml"):
            app.write_text(app.read_text().replace("REPO_URL", url))
        work.commit("Example GitOps repository: base + development/staging/production")
        work.push()
    finally:
        work.close()


async def _configure(cluster: devcluster.Cluster, git_url: str, webhook_secret: str) -> None:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        await install_crds(kube)
        manifests: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": "argocd"},
                "data": {"timeout.reconciliation": "15s", "timeout.reconciliation.jitter": "5s"},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": "argocd"},
                "stringData": {"webhook.github.secret": webhook_secret},
            },
        ]
        for env in ENVIRONMENTS:
            text = (example_repo() / "clusters" / env / "myapp.yaml").read_text()
            manifests.append(yaml.safe_load(text.replace("REPO_URL", git_url)))
        for obj in manifests:
            await kube.apply(obj, field_manager="gitsail-demo", force=True)


async def _app_states(cluster: devcluster.Cluster) -> dict[str, str]:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        apps = await kube.list("argoproj.io/v1alpha1", "Application", "argocd")
    states = {}
    for app in apps:
        status = app.get("status") or {}
        sync = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        states[app["metadata"]["name"]] = f"{sync}/{health}"
    return states


def demo_up(*, nodes: int = 2, progress: devcluster.Progress = lambda _m: None) -> Demo:
    """Start (or reuse) the demo and wait until its apps are Synced and Healthy."""
    cluster = devcluster.up(DEMO_NAME, nodes=nodes, progress=progress)
    state_file = _state_file(cluster)
    roles = {p.role for p in cluster.processes}
    if state_file.is_file() and {"git-server", "controller"} <= roles:
        state = json.loads(state_file.read_text())
        return Demo(cluster, state["git_url"], state["controller_url"], state["webhook_secret"])

    progress("starting the git server")
    git_port, controller_port = devcluster.free_ports(2)
    root = cluster.directory / "git"
    init_bare(root / REPO)
    git_server = devcluster.spawn(
        cluster,
        "git-server",
        [
            sys.executable,
            "-m",
            "gitsail",
            "dev",
            "git-server",
            "--root",
            str(root),
            "--port",
            str(git_port),
        ],
    )
    git_url = f"http://127.0.0.1:{git_port}/{REPO}"
    _wait_http(f"{git_url}/info/refs?service=git-upload-pack", "the demo git server", git_server)
    progress("pushing the example repository")
    _seed_repository(git_url)

    progress("installing CRDs and the Applications")
    webhook_secret = secrets.token_hex(16)
    asyncio.run(_configure(cluster, git_url, webhook_secret))

    progress("starting the controller")
    controller = devcluster.spawn(
        cluster,
        "controller",
        [
            sys.executable,
            "-m",
            "gitsail",
            "controller",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            "argocd",
            "--listen",
            f"127.0.0.1:{controller_port}",
        ],
    )
    controller_url = f"http://127.0.0.1:{controller_port}"
    _wait_http(f"{controller_url}/healthz", "the controller", controller)
    state_file.write_text(
        json.dumps(
            {"git_url": git_url, "controller_url": controller_url, "webhook_secret": webhook_secret}
        )
    )
    deadline = time.monotonic() + 180
    while True:
        states = asyncio.run(_app_states(cluster))
        progress("syncing: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        if len(states) == len(ENVIRONMENTS) and all(v == "Synced/Healthy" for v in states.values()):
            break
        if not controller.alive():
            raise devcluster.ClusterError(f"the controller exited; see {controller.log}")
        if time.monotonic() > deadline:
            raise devcluster.ClusterError(
                f"apps not Synced/Healthy after 180s ({states}); see {controller.log}"
            )
        time.sleep(1)
    return Demo(cluster, git_url, controller_url, webhook_secret)


def demo_down() -> bool:
    """Stop the demo cluster, its git server and its controller."""
    return devcluster.down(DEMO_NAME)
