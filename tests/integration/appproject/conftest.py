"""Fixtures for AppProjects on the real control plane: the controller tests' fixtures (CRDs,
an async client, the test namespace as control namespace with git credentials, a running
in-process controller), and a second namespace of the test's own, deleted afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from gitsail.kube import Kube, KubeError
from tests.integration.controller.conftest import api, control_ns, crds_installed, running

__all__ = ["api", "control_ns", "crds_installed", "other_ns", "running"]


@pytest.fixture
async def other_ns(api: Kube, namespace: str) -> AsyncIterator[str]:
    """A namespace no project of the test permits (created and deleted by the test)."""
    made = await api.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"generateName": f"{namespace[:40]}-other-"},
        }
    )
    name = str(made["metadata"]["name"])
    yield name
    with contextlib.suppress(KubeError):
        await api.delete("v1", "Namespace", name, None)
