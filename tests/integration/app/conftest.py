"""Fixtures for Application pipeline tests: CRDs once, an engine per test, repos with creds."""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import AppEngine
from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.conftest import GIT_USER

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"


@pytest.fixture(scope="session")
async def crds(cluster: Cluster) -> None:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await install_crds(kube)


@pytest.fixture
async def kube_client(cluster: Cluster, crds: None) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        yield kube


@pytest.fixture
async def engine(kube_client: Kube, namespace: str, tmp_path: Path) -> AppEngine:
    """An engine whose control namespace (where Applications live) is the test's namespace."""
    from gitsail.source import GitSource, HelmRepoSource

    return AppEngine(
        kube_client,
        control_namespace=namespace,
        git=GitSource(tmp_path / "source-cache"),
        helm_repos=HelmRepoSource(tmp_path / "source-cache"),
    )


@pytest.fixture
async def repo_secret(kube_client: Kube, namespace: str, git_server: GitServer) -> Obj:
    """An Argo CD repo-creds Secret granting access to every repo on the test git server."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "loopback-git",
            "namespace": namespace,
            "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
        },
        "data": {
            "url": b64(git_server.base_url),
            "username": b64(GIT_USER[0]),
            "password": b64(GIT_USER[1]),
        },
    }
    return await kube_client.create(secret)


@pytest.fixture
def article_repo(git_repo: Workdir) -> Workdir:
    """The article's layout (apps/base/myapp + overlays per environment), pushed."""
    shutil.copytree(EXAMPLES / "apps", git_repo.path / "apps")
    git_repo.commit("article layout")
    git_repo.push()
    return git_repo


def public_url(work: Workdir) -> str:
    """The repo URL as an Application names it: no credentials in it."""
    scheme, rest = work.remote.split("://", 1)
    return f"{scheme}://{rest.split('@', 1)[-1]}"


ApplicationFactory = Callable[..., Any]


@pytest.fixture
def make_app(kube_client: Kube, namespace: str) -> ApplicationFactory:
    async def create(name: str, source: dict[str, Any], **spec: Any) -> App:
        destination = spec.pop(
            "destination", {"server": "https://kubernetes.default.svc", "namespace": namespace}
        )
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": "default", "source": source, "destination": destination, **spec},
        }
        return App.from_application(await kube_client.create(body))

    return create


async def reload(engine: AppEngine, app: App) -> App:
    obj = await engine.get_application(app.name, app.namespace)
    assert obj is not None
    return App.from_application(obj)


def manifests_text(*docs: str) -> str:
    return "\n---\n".join(d.strip() for d in docs) + "\n"


def configmap(name: str, **data: str) -> str:
    lines = ["apiVersion: v1", "kind: ConfigMap", f"metadata:\n  name: {name}", "data:"]
    lines += [f"  {k}: {v!r}" for k, v in data.items()]
    return "\n".join(lines)
