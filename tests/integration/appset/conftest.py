"""Fixtures for ApplicationSets on the real control plane: every CRD installed (the session
fixture of the controller tests), an async client, the test namespace as the control
namespace with the git server's credentials, and Applications' finalizers stripped at the
end so the namespace can go without an Argo CD path running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from gitsail.kube import Kube, KubeError
from tests.integration.controller.conftest import api, control_ns, crds_installed

__all__ = ["api", "control_ns", "crds_installed", "release_apps"]


@pytest.fixture
async def release_apps(api: Kube, control_ns: str) -> AsyncIterator[str]:
    yield control_ns
    for app in await api.list("argoproj.io/v1alpha1", "Application", control_ns):
        if app["metadata"].get("finalizers"):
            with contextlib.suppress(KubeError):
                await api.merge_patch(
                    "argoproj.io/v1alpha1",
                    "Application",
                    app["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    control_ns,
                )
