"""HelmReleases through the REAL in-process controller: registered with the Flux kinds,
released by helm, and healed within seconds when an object of the release is edited (the
owner labels wake it through the managed-object watch; the interval is an hour).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.controller.conftest import (
    RunningController,
    api,
    control_ns,
    crds_installed,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.helm.releases import HR, ChartPublisher, hr_kube, package_chart

__all__ = ["api", "control_ns", "crds_installed", "hr_kube"]  # fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
async def running(
    api: Kube, control_ns: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[RunningController]:
    controller = await start_controller(api, control_ns, tmp_path)
    yield controller
    await stop_controller(controller)


def ready(obj: Obj | None) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_controller_releases_and_heals_a_helmrelease_from_the_watch(
    api: Kube, control_ns: str, running: RunningController, hr_kube: Kube
) -> None:
    ns = control_ns
    await api.apply(
        {
            "apiVersion": HR,
            "kind": "HelmRelease",
            "metadata": {"name": "cached", "namespace": ns},
            "spec": {
                "interval": "1h",
                "timeout": "60s",
                "driftDetection": {"mode": "enabled"},
                "chart": {
                    "spec": {
                        "chart": "redis",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
                "values": {"architecture": "standalone"},
            },
        },
        field_manager="test",
    )

    async def chart_made() -> Obj | None:
        return await api.get("source.toolkit.fluxcd.io/v1", "HelmChart", f"{ns}-cached", ns)

    await eventually(chart_made, what="the HelmChart made for the release")
    publisher = ChartPublisher(api, running.controller.artifacts)
    await publisher.publish(ns, f"{ns}-cached", package_chart("redis", "17.0.0"), "17.0.0")

    async def released() -> Obj | None:
        obj = await api.get(HR, "HelmRelease", "cached", ns)
        return obj if ready(obj).get("status") == "True" else None

    obj = await eventually(released, what="the release Ready")
    assert obj["status"]["history"][0]["version"] == 1

    async def drift_checked() -> Obj | None:
        obj = await api.get(HR, "HelmRelease", "cached", ns)
        conditions = (obj or {}).get("status", {}).get("conditions", [])
        return obj if any(c["type"] == "Drifted" for c in conditions) else None

    await eventually(drift_checked, what="a drift check")

    async def watching() -> bool:  # the release's kinds join the watch after that pass
        return ("v1", "ConfigMap") in running.controller.live.caches

    await eventually(watching, what="the managed-object watch of ConfigMaps")
    await api.merge_patch(
        "v1",
        "ConfigMap",
        "cached-config",
        {"data": {"architecture": "hacked"}},
        ns,
        field_manager="kubectl-edit",
    )

    async def healed() -> Obj | None:
        cm = await api.get("v1", "ConfigMap", "cached-config", ns)
        return cm if cm and cm["data"]["architecture"] == "standalone" else None

    # Well within the interval (1h) and the resync (30s): the watch woke the release.
    await eventually(healed, timeout=10, what="the edited ConfigMap healed")
