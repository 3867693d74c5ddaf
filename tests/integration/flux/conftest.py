"""Fixtures for Flux kinds against the real control plane: the Flux CRDs installed, an async
``gitsail.kube.Kube``, a git server without credentials (the article's public repository),
and the sshd of the source tests (for SSH Secrets).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube, load_kubeconfig
from tests.integration.source.conftest import ssh_repo, sshd

__all__ = ["ssh_repo", "sshd"]  # re-exported fixtures


@pytest.fixture
async def flux_kube(cluster: Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await install_crds(kube, families=["flux"])
        yield kube


@pytest.fixture(scope="session")
def public_git_server() -> Iterator[GitServer]:
    root = Path(tempfile.mkdtemp(prefix="gitsail-public-git-"))
    with GitServer(root) as server:
        yield server
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def public_repo(
    public_git_server: GitServer, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Workdir]]:
    """A repository anyone may clone (its URL) and a work tree pushing to it."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:60]
    public_git_server.create_repo(name)
    work = Workdir(public_git_server.url(name))
    yield public_git_server.url(name), work
    work.close()
