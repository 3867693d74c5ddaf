"""Two target clusters beside the control plane, started once per session.

``target_clusters`` starts two private dev clusters (``pytest-<pid>-ta`` and ``-tb``, one
fake node each, in parallel) and removes them at the end of the session; clusters left by
a killed session are removed first. Set ``GITSAIL_TEST_TARGET_CLUSTERS=a-name,b-name`` to
use (and keep) two named dev clusters instead, e.g. ``clusters-a,clusters-b`` started with
``gitsail dev up --name``: repeated local runs then start in a second.

Each test gets its own namespace on both targets (``target_ns``: the control namespace's
name, so an Application's destination namespace is the same everywhere), removed after it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gitsail.dev import cluster as devcluster
from gitsail.kube import Kube, KubeError, load_kubeconfig
from tests.integration.controller.conftest import api, control_ns, crds_installed

__all__ = ["api", "control_ns", "crds_installed", "target_clusters", "target_ns"]


def _remove_orphans() -> None:
    for c in devcluster.list_clusters():
        match = re.fullmatch(r"pytest-(\d+)-t[ab]", c.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            devcluster.down(c.name)


@pytest.fixture(scope="session")
def target_clusters() -> Iterator[tuple[devcluster.Cluster, devcluster.Cluster]]:
    reuse = os.environ.get("GITSAIL_TEST_TARGET_CLUSTERS", "")
    names = [n.strip() for n in reuse.split(",") if n.strip()]
    if reuse and len(names) != 2:
        raise pytest.UsageError("GITSAIL_TEST_TARGET_CLUSTERS names two clusters: a,b")
    own = not names
    if own:
        _remove_orphans()
        names = [f"pytest-{os.getpid()}-ta", f"pytest-{os.getpid()}-tb"]
    try:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda name: devcluster.up(name, nodes=1), names)
        yield a, b
    finally:
        if own:
            for name in names:
                devcluster.down(name)


@pytest.fixture
async def target_ns(
    control_ns: str, target_clusters: tuple[devcluster.Cluster, devcluster.Cluster]
) -> AsyncIterator[str]:
    """The control namespace's name, created on both targets and removed afterwards."""
    for target in target_clusters:
        async with Kube(await load_kubeconfig(target.kubeconfig)) as kube:
            await kube.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": control_ns}}
            )
    yield control_ns
    for target in target_clusters:
        async with Kube(await load_kubeconfig(target.kubeconfig)) as kube:
            with contextlib.suppress(KubeError):
                await kube.delete("v1", "Namespace", control_ns, propagation="Background")
