"""Delivering to other clusters: the control plane (the session's cluster) and two targets.

Clusters are registered as a user would, with ``gitsail cluster add`` (target A through a
ServiceAccount it creates: a bearer token; target B with its context's client certificate),
and everything goes through the REAL in-process controller. A target is "stopped" by
freezing its kube-apiserver (SIGSTOP): connections hang rather than being refused, the
harder case for timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app as cli
from gitsail.dev.chartrepo import ChartRepo
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.argo_cluster import read_cluster_secret
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import (
    AUTOMATED,
    app_status,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.helm.conftest import chart_repo, chart_server
from tests.integration.helm.releases import HR, helm_cli

__all__ = ["chart_repo", "chart_server"]  # fixtures

pytestmark = pytest.mark.integration

V1A1 = "argoproj.io/v1alpha1"
CLUSTER_SECRETS = "argocd.argoproj.io/secret-type=cluster"


def plain_url(remote: str) -> str:
    scheme, _, rest = remote.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def cm(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: {value}\n"


def merged_kubeconfig(path: Path, *clusters: Cluster) -> Path:
    """One kubeconfig with every cluster's context (``gitsail-<name>``), as a user has."""
    docs = [yaml.safe_load(c.kubeconfig.read_text()) for c in clusters]
    merged = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [x for d in docs for x in d["clusters"]],
        "users": [x for d in docs for x in d["users"]],
        "contexts": [x for d in docs for x in d["contexts"]],
        "current-context": docs[0]["current-context"],
    }
    path.write_text(yaml.safe_dump(merged))
    path.chmod(0o600)
    return path


async def run_cli(*args: str) -> str:
    """The CLI as a user runs it (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def register(
    kubeconfig: Path, control: Cluster, namespace: str, target: Cluster, name: str, *extra: str
) -> None:
    await run_cli(
        "cluster", "add", f"gitsail-{target.name}", "--name", name, "--kubeconfig",
        str(kubeconfig), "--control-kubeconfig", str(control.kubeconfig), "-n", namespace,
        "--upsert", *extra,
    )  # fmt: skip


async def list_clusters(control: Cluster, namespace: str, output: str) -> str:
    return await run_cli(
        "cluster", "list", "-o", output, "-n", namespace,
        "--control-kubeconfig", str(control.kubeconfig),
    )  # fmt: skip


@contextlib.contextmanager
def frozen(target: Cluster) -> Iterator[None]:
    """The target's kube-apiserver stopped (SIGSTOP) for the block, continued after."""
    (apiserver,) = [p for p in target.processes if p.role == "kube-apiserver"]
    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)


async def target_get(target: Cluster, kind: str, name: str, namespace: str) -> Obj | None:
    async with Kube(await load_kubeconfig(target.kubeconfig)) as kube:
        return await kube.get("v1", kind, name, namespace)


async def cluster_secret_of(api: Kube, namespace: str, name: str) -> Obj:
    for secret in await api.list("v1", "Secret", namespace, label_selector=CLUSTER_SECRETS):
        if read_cluster_secret(secret).name == name:
            return secret
    raise AssertionError(f"no cluster Secret named {name}")


def condition_types(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c.get("message", "") for c in status.get("conditions") or []}


async def test_apps_on_each_cluster_heal_drift_and_outlive_a_stopped_target(
    api: Kube,
    control_ns: str,
    target_ns: str,
    cluster: Cluster,
    target_clusters: tuple[Cluster, Cluster],
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    a, b = target_clusters
    kubeconfig = merged_kubeconfig(tmp_path / "kubeconfig", cluster, a, b)
    # A: a ServiceAccount's bearer token; B: the context's own client certificate.
    await register(
        kubeconfig, cluster, control_ns, a, "target-a", "--service-account", "gitsail-e2e"
    )
    await register(kubeconfig, cluster, control_ns, b, "target-b")
    secret_a = read_cluster_secret(await cluster_secret_of(api, control_ns, "target-a"))
    secret_b = read_cluster_secret(await cluster_secret_of(api, control_ns, "target-b"))
    assert secret_a.config.auth_kind == "token"
    assert secret_b.config.auth_kind == "cert"

    git_repo.commit_and_push({"app/cm.yaml": cm("shared", "one")}, "one")
    repo = plain_url(git_repo.remote)
    ns = control_ns
    await create_app(api, ns, "home", repo, syncPolicy=AUTOMATED)
    await create_app(
        api, ns, "east", repo, syncPolicy=AUTOMATED,
        destination={"server": a.server, "namespace": target_ns},
    )  # fmt: skip
    await create_app(
        api, ns, "west", repo, syncPolicy=AUTOMATED,
        destination={"name": "target-b", "namespace": target_ns},
    )  # fmt: skip
    running = await start_controller(api, ns, tmp_path)
    try:
        where = {"home": cluster, "east": a, "west": b}

        async def delivered(value: str) -> bool:
            for target in where.values():
                found = await target_get(target, "ConfigMap", "shared", target_ns)
                if ((found or {}).get("data") or {}).get("v") != value:
                    return False
            return True

        await eventually(lambda: delivered("one"), timeout=90, what="the ConfigMap everywhere")
        for name in where:
            status = await app_status(api, ns, name)
            assert status["sync"]["status"] == "Synced", (name, status)

        # Drift on a target is healed from that target's own watch.
        async with Kube(await load_kubeconfig(a.kubeconfig)) as kube_a:
            await kube_a.merge_patch(
                "v1", "ConfigMap", "shared", {"data": {"v": "edited"}}, target_ns
            )

            async def healed() -> bool:
                live = await kube_a.get("v1", "ConfigMap", "shared", target_ns)
                return ((live or {}).get("data") or {}).get("v") == "one"

            await eventually(healed, timeout=60, what="drift on target A healed")

        listed = json.loads(await list_clusters(cluster, ns, "json"))
        rows = {r["name"]: r for r in listed}
        assert set(rows) == {"in-cluster", "target-a", "target-b"}
        for name in ("target-a", "target-b"):

            async def successful(name: str = name) -> bool:
                secret = await cluster_secret_of(api, ns, name)
                notes = secret["metadata"].get("annotations") or {}
                return notes.get("status.gitsail.io/connection-state") == "Successful"

            await eventually(successful, timeout=30, what=f"{name} Successful")
        listed = json.loads(await list_clusters(cluster, ns, "json"))
        rows = {r["name"]: r for r in listed}
        assert rows["target-a"]["status"] == "Successful"
        assert rows["target-a"]["version"].startswith("v1.")
        assert [rows[n]["apps"] for n in ("in-cluster", "target-a", "target-b")] == [1, 1, 1]
        printed = await list_clusters(cluster, ns, "yaml")
        token = secret_a.config.token or ""
        key = base64.b64encode(secret_b.config.client_key_data or b"").decode()
        assert token
        assert token not in printed
        assert key[:40] not in printed

        with frozen(b):
            # B's app reports the outage; the others keep delivering new commits.
            async def west_reports() -> str:
                status = await app_status(api, ns, "west")
                message = condition_types(status).get("ComparisonError", "")
                return message if "unreachable" in message else ""

            message = await eventually(west_reports, timeout=90, what="west's ComparisonError")
            assert "target-b" in message
            assert token not in message
            git_repo.commit_and_push({"app/cm.yaml": cm("shared", "two")}, "two")
            for name in ("home", "east"):
                await api.merge_patch(
                    V1A1,
                    "Application",
                    name,
                    {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
                    ns,
                )

            async def others_follow() -> bool:
                for target in (cluster, a):
                    found = await target_get(target, "ConfigMap", "shared", target_ns)
                    if ((found or {}).get("data") or {}).get("v") != "two":
                        return False
                return True

            await eventually(others_follow, timeout=60, what="home and east at 'two'")
            secret = await cluster_secret_of(api, ns, "target-b")
            notes = secret["metadata"].get("annotations") or {}
            assert notes.get("status.gitsail.io/connection-state") == "Failed"
            listed = json.loads(await list_clusters(cluster, ns, "json"))
            assert {r["name"]: r["status"] for r in listed}["target-b"] == "Failed"

        # B answers again: its app recovers by itself and catches up.
        async def west_recovered() -> bool:
            found = await target_get(b, "ConfigMap", "shared", target_ns)
            status = await app_status(api, ns, "west")
            return ((found or {}).get("data") or {}).get("v") == "two" and (
                "ComparisonError" not in condition_types(status)
            )

        await eventually(west_recovered, timeout=120, what="west recovered and at 'two'")
    finally:
        await stop_controller(running)
        for name in ("home", "east", "west"):
            with contextlib.suppress(Exception):
                await api.merge_patch(
                    V1A1, "Application", name, {"metadata": {"finalizers": None}}, ns
                )


ARTICLE = """\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: myapp
  namespace: argocd
spec:
  generators:
  - list:
      elements:
      - cluster: development
        url: https://kubernetes.default.svc
      - cluster: staging
        url: STAGING_URL
      - cluster: production
        url: PRODUCTION_URL
  template:
    metadata:
      name: 'myapp-{{cluster}}'
    spec:
      project: default
      source:
        repoURL: REPO
        targetRevision: HEAD
        path: 'overlays/{{cluster}}'
      destination:
        server: '{{url}}'
        namespace: myapp
"""


async def test_the_article_set_delivers_each_environment_to_its_own_cluster(
    api: Kube,
    control_ns: str,
    target_ns: str,
    cluster: Cluster,
    target_clusters: tuple[Cluster, Cluster],
    git_server: GitServer,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    a, b = target_clusters
    kubeconfig = merged_kubeconfig(tmp_path / "kubeconfig", cluster, a, b)
    await register(kubeconfig, cluster, control_ns, a, "staging")
    await register(kubeconfig, cluster, control_ns, b, "production")
    envs = {"development": cluster, "staging": a, "production": b}
    git_repo.commit_and_push(
        {f"overlays/{env}/cm.yaml": cm(f"myapp-{env}", env) for env in envs}, "overlays"
    )
    text = (
        ARTICLE.replace("STAGING_URL", a.server)
        .replace("PRODUCTION_URL", b.server)
        .replace("REPO", plain_url(git_repo.remote))
    )
    obj = yaml.safe_load(text)
    # The test's namespace stands for both `argocd` and `myapp` (isolation on a shared
    # control plane); everything else is the article's.
    obj["metadata"]["namespace"] = control_ns
    obj["spec"]["template"]["spec"]["destination"]["namespace"] = target_ns
    running = await start_controller(api, control_ns, tmp_path)
    try:
        await api.create(obj)

        async def made() -> list[str] | None:
            apps = await api.list(V1A1, "Application", control_ns)
            names = sorted(x["metadata"]["name"] for x in apps)
            return names if len(names) == 3 else None

        names = await eventually(made, what="three Applications")
        assert names == ["myapp-development", "myapp-production", "myapp-staging"]
        for env in envs:
            await api.merge_patch(
                V1A1,
                "Application",
                f"myapp-{env}",
                {"operation": {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "t"}}},
                control_ns,
            )
        for env, target in envs.items():

            async def delivered(env: str = env, target: Cluster = target) -> Obj | None:
                return await target_get(target, "ConfigMap", f"myapp-{env}", target_ns)

            found = await eventually(delivered, timeout=90, what=f"myapp-{env} on its cluster")
            assert found["data"] == {"v": env}
            for other in envs:  # each environment only on its own cluster
                if other != env:
                    assert (
                        await target_get(target, "ConfigMap", f"myapp-{other}", target_ns) is None
                    )
    finally:
        await stop_controller(running)
        for env in envs:
            with contextlib.suppress(Exception):
                await api.merge_patch(
                    V1A1,
                    "Application",
                    f"myapp-{env}",
                    {"metadata": {"finalizers": None}},
                    control_ns,
                )


async def test_a_flux_kustomization_with_kube_config_delivers_to_a_target(
    api: Kube,
    control_ns: str,
    target_ns: str,
    target_clusters: tuple[Cluster, Cluster],
    git_server: GitServer,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    a, _ = target_clusters
    git_repo.commit_and_push({"deploy/cm.yaml": cm("from-flux", "flux")}, "flux")
    user, password = GIT_USER
    ns = control_ns
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-auth", "namespace": ns},
            "stringData": {"username": user, "password": password},
        }
    )
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "target-a-kubeconfig", "namespace": ns},
            "stringData": {"value": a.kubeconfig.read_text()},
        }
    )
    name = git_repo.remote.rstrip("/").rsplit("/", 1)[-1]
    await api.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "myapp", "namespace": ns},
            "spec": {
                "interval": "1m",
                "url": git_server.url(name),
                "ref": {"branch": "main"},
                "secretRef": {"name": "git-auth"},
            },
        }
    )
    await api.create(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "remote", "namespace": ns},
            "spec": {
                "interval": "10m",
                "prune": True,
                "path": "deploy",
                "targetNamespace": target_ns,
                "sourceRef": {"kind": "GitRepository", "name": "myapp"},
                "kubeConfig": {"secretRef": {"name": "target-a-kubeconfig"}},
                "timeout": "60s",
            },
        }
    )
    running = await start_controller(api, ns, tmp_path)
    try:

        async def applied() -> Obj | None:
            return await target_get(a, "ConfigMap", "from-flux", target_ns)

        found = await eventually(applied, timeout=90, what="the ConfigMap on target A")
        labels = found["metadata"]["labels"]
        assert labels["kustomize.toolkit.fluxcd.io/name"] == "remote"

        async def ready() -> dict[str, Any] | None:
            obj = await api.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "remote", ns)
            for c in ((obj or {}).get("status") or {}).get("conditions") or []:
                if c["type"] == "Ready" and c["status"] == "True":
                    return dict(c)
            return None

        await eventually(ready, timeout=60, what="Kustomization Ready")
        # Not on the control plane: the kubeconfig's cluster got it.
        assert await api.get("v1", "ConfigMap", "from-flux", target_ns) is None
    finally:
        await stop_controller(running)
        with contextlib.suppress(Exception):
            await api.merge_patch(
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                "remote",
                {"metadata": {"finalizers": None}},
                ns,
            )


async def test_a_helmrelease_with_kube_config_is_released_on_the_target(
    api: Kube,
    control_ns: str,
    target_ns: str,
    cluster: Cluster,
    target_clusters: tuple[Cluster, Cluster],
    chart_repo: ChartRepo,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    _, b = target_clusters
    ns = control_ns
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "target-b-kubeconfig", "namespace": ns},
            "stringData": {"value.yaml": b.kubeconfig.read_text()},
        }
    )
    await api.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": "charts", "namespace": ns},
            "spec": {"interval": "1h", "url": chart_repo.url},
        }
    )
    await api.create(
        {
            "apiVersion": HR,
            "kind": "HelmRelease",
            "metadata": {"name": "redis", "namespace": ns},
            "spec": {
                "interval": "1h",
                "chart": {
                    "spec": {
                        "chart": "redis",
                        "version": "17.x",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
                "values": {"architecture": "standalone"},
                "kubeConfig": {"secretRef": {"name": "target-b-kubeconfig"}},
            },
        }
    )
    running = await start_controller(api, ns, tmp_path)
    try:

        async def released() -> Obj | None:
            obj = await api.get(HR, "HelmRelease", "redis", ns)
            ready = [
                c
                for c in ((obj or {}).get("status") or {}).get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            ]
            return obj if ready else None

        await eventually(released, timeout=120, what="redis released on target B")
        home = tmp_path / "helm-home"
        on_b = helm_cli(b.kubeconfig, "list", f"--namespace={ns}", "-o", "json", home=home)
        assert on_b.returncode == 0, on_b.stderr
        assert [r["name"] for r in json.loads(on_b.stdout)] == ["redis"]
        here = helm_cli(cluster.kubeconfig, "list", f"--namespace={ns}", "-o", "json", home=home)
        assert json.loads(here.stdout) == []  # not on the control plane
    finally:
        await stop_controller(running)
        with contextlib.suppress(Exception):
            await api.merge_patch(
                HR, "HelmRelease", "redis", {"metadata": {"finalizers": None}}, ns
            )
