"""Fixtures for gitsail.kube against the real dev cluster: a connected ``Kube``.

Named ``api`` (not ``kube``): the session's ``kube`` fixture is the plain test helper the
``namespace`` fixture relies on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from gitsail.dev import cluster as devcluster
from gitsail.kube import Kube, load_kubeconfig

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(scope="session")
async def api(cluster: devcluster.Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await kube.discover()
        yield kube


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 30,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Await ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")
