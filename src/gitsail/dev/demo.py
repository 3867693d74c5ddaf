"""`make demo`: a dev cluster, a git server with the article's repository, and the controller.

Everything belongs to a dev cluster named ``demo`` (its processes are recorded in the
cluster's state, so ``gitsail demo down`` stops them all):

- a git server serving ``gitops.git``, seeded from ``examples/gitops-repo``: the article's
  layout (``apps/base/myapp``, ``apps/overlays/<env>``) and one Argo CD Application per
  environment under ``clusters/<env>``, automated with prune and self-heal;
- beside them, the article's Flux layout under ``clusters/flux``: the namespaces, a
  ``GitRepository`` (polled every 15 s) and one ``Kustomization`` per environment in
  ``flux-system``, each applying the same overlay into its own namespace
  (``flux-<env>``, never an Application's), with ``dependsOn`` development → staging →
  production and the article's health check;
- the article's Flux Helm example (``clusters/flux/redis.yaml``): a ``HelmRepository``
  pointed at a chart repository the demo serves on loopback (``gitsail dev chart-server``:
  the example charts, redis 16.x/17.x and a pre-release) and the ``HelmRelease`` ``redis``
  (``"17.x"``) in namespace ``redis``, released by the pinned helm;
- the CRDs (Argo CD's and Flux's), the ``argocd`` namespace with ``argocd-cm`` (a 15 s poll
  so changes show up quickly) and ``argocd-secret`` (a webhook secret), and the three
  Applications;
- ``gitsail controller -n argocd -n flux-system -n redis`` reconciling them all, its Flux artifacts
  advertised at its own address (``--artifacts-url``);
- ``gitsail server`` (the API and the web UI) over the same namespaces; the admin's first
  password is read back from ``argocd-initial-admin-secret`` for the banner.

``demo_up`` returns once the Applications are Synced and Healthy and the Kustomizations
and the HelmRelease Ready.

Running it again reuses what is alive; a demo whose processes died is rebuilt.
"""

from __future__ import annotations

import asyncio
import base64
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

__all__ = [
    "DEMO_NAME",
    "ENVIRONMENTS",
    "FLUX_NAMESPACE",
    "Demo",
    "demo_down",
    "demo_up",
    "example_repo",
]

DEMO_NAME = "demo"
REPO = "gitops.git"
ENVIRONMENTS = ("development", "staging", "production")
FLUX_NAMESPACE = "flux-system"
KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/v1"
HELMRELEASE_API = "helm.toolkit.fluxcd.io/v2"
HELM_NAMESPACE = "redis"  # the article's HelmRelease namespace


def example_repo() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"


@dataclass(frozen=True)
class Demo:
    cluster: devcluster.Cluster
    git_url: str
    controller_url: str
    webhook_secret: str
    server_url: str = ""
    admin_password: str = ""


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


async def _configure(
    cluster: devcluster.Cluster, git_url: str, chart_url: str, webhook_secret: str
) -> None:
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
        manifests += _flux_layout(git_url, chart_url)
        for obj in manifests:
            await kube.apply(obj, field_manager="gitsail-demo", force=True)


def _flux_layout(git_url: str, chart_url: str) -> list[dict[str, Any]]:
    """``clusters/flux/*.yaml`` (namespaces first), pointed at the demo's git server and
    chart repository."""
    objects: list[dict[str, Any]] = []
    for path in sorted((example_repo() / "clusters" / "flux").glob("*.yaml")):
        text = path.read_text().replace("CHART_REPO_URL", chart_url).replace("REPO_URL", git_url)
        objects += [obj for obj in yaml.safe_load_all(text) if obj]
    return sorted(objects, key=lambda obj: obj["kind"] != "Namespace")


async def _states(cluster: devcluster.Cluster) -> dict[str, str]:
    """``sync/health`` of each Application, ``Ready``'s status of each Kustomization."""
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        apps = await kube.list("argoproj.io/v1alpha1", "Application", "argocd")
        kustomizations = await kube.list(KUSTOMIZATION_API, "Kustomization", FLUX_NAMESPACE)
        releases = await kube.list(HELMRELEASE_API, "HelmRelease", HELM_NAMESPACE)
    states = {}
    for app in apps:
        status = app.get("status") or {}
        sync = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        states[app["metadata"]["name"]] = f"{sync}/{health}"
    for obj in [*kustomizations, *releases]:
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
        states[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = (
            "Ready" if ready.get("status") == "True" else str(ready.get("reason") or "Unknown")
        )
    return states


def _all_ready(states: dict[str, str]) -> bool:
    wanted = (
        {f"myapp-{env}" for env in ENVIRONMENTS}
        | {f"{FLUX_NAMESPACE}/myapp-{env}" for env in ENVIRONMENTS}
        | {f"{HELM_NAMESPACE}/redis"}
    )
    return wanted <= set(states) and all(v in ("Synced/Healthy", "Ready") for v in states.values())


def demo_up(
    *,
    nodes: int = 2,
    progress: devcluster.Progress = lambda _m: None,
    name: str = DEMO_NAME,
) -> Demo:
    """Start (or reuse) the demo and wait until its apps are Synced and Healthy and its
    Kustomizations Ready. ``name``: the dev cluster's (tests run their own)."""
    cluster = devcluster.up(name, nodes=nodes, progress=progress)
    state_file = _state_file(cluster)
    roles = {p.role for p in cluster.processes}
    if state_file.is_file() and {"git-server", "chart-server", "controller", "server"} <= roles:
        state = json.loads(state_file.read_text())
        return Demo(
            cluster,
            state["git_url"],
            state["controller_url"],
            state["webhook_secret"],
            state.get("server_url", ""),
            asyncio.run(_admin_password(cluster)),
        )

    progress("starting the git server")
    git_port, chart_port, controller_port, server_port = devcluster.free_ports(4)
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

    progress("starting the chart repository")
    chart_server = devcluster.spawn(
        cluster,
        "chart-server",
        [
            sys.executable,
            "-m",
            "gitsail",
            "dev",
            "chart-server",
            "--root",
            str(cluster.directory / "charts"),
            "--port",
            str(chart_port),
        ],
    )
    chart_url = f"http://127.0.0.1:{chart_port}/charts"
    _wait_http(f"{chart_url}/index.yaml", "the demo chart repository", chart_server)

    progress("installing CRDs and the Applications")
    webhook_secret = secrets.token_hex(16)
    asyncio.run(_configure(cluster, git_url, chart_url, webhook_secret))

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
            "--namespace",
            FLUX_NAMESPACE,
            "--namespace",
            HELM_NAMESPACE,
            "--listen",
            f"127.0.0.1:{controller_port}",
            "--artifacts-url",
            f"http://127.0.0.1:{controller_port}",
        ],
    )
    controller_url = f"http://127.0.0.1:{controller_port}"
    _wait_http(f"{controller_url}/healthz", "the controller", controller)
    progress("starting the API and web UI server")
    server = devcluster.spawn(
        cluster,
        "server",
        [sys.executable, "-m", "gitsail", "server", "--kubeconfig", str(cluster.kubeconfig),
         "-n", "argocd", "-n", FLUX_NAMESPACE, "-n", HELM_NAMESPACE,
         "--listen", f"127.0.0.1:{server_port}"],
    )  # fmt: skip
    server_url = f"http://127.0.0.1:{server_port}"
    _wait_http(f"{server_url}/healthz", "the API and web UI server", server)
    state_file.write_text(
        json.dumps(
            {
                "git_url": git_url,
                "controller_url": controller_url,
                "webhook_secret": webhook_secret,
                "server_url": server_url,
            }
        )
    )
    deadline = time.monotonic() + 180
    while True:
        states = asyncio.run(_states(cluster))
        progress("syncing: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        if _all_ready(states):
            break
        if not controller.alive():
            raise devcluster.ClusterError(f"the controller exited; see {controller.log}")
        if time.monotonic() > deadline:
            raise devcluster.ClusterError(
                f"apps not Synced/Healthy or Kustomizations not Ready after 180s ({states}); "
                f"see {controller.log}"
            )
        time.sleep(1)
    password = asyncio.run(_admin_password(cluster))
    return Demo(cluster, git_url, controller_url, webhook_secret, server_url, password)


async def _admin_password(cluster: devcluster.Cluster) -> str:
    """The admin's first password (``argocd-initial-admin-secret``), "" once it is deleted."""
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        secret = await kube.get("v1", "Secret", "argocd-initial-admin-secret", "argocd")
    encoded = str(((secret or {}).get("data") or {}).get("password") or "")
    return base64.b64decode(encoded).decode() if encoded else ""


def demo_down(name: str = DEMO_NAME) -> bool:
    """Stop the demo cluster, its git server and its controller."""
    return devcluster.down(name)
