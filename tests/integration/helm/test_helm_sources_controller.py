"""HelmRepository and HelmChart through the REAL controller (nothing calls a reconciler):
the article's HelmRepository publishes its index, a HelmChart resolves ``17.x``, and a new
release, once the repository is asked to reconcile (what ``flux reconcile source helm``
writes), reaches the chart at once through the registry's dependency wake-up, long before
the chart's own interval."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.chartrepo import ChartRepo
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.controller.conftest import (
    api,
    control_ns,
    crds_installed,
    eventually,
    start_controller,
    stop_controller,
)

__all__ = ["api", "control_ns", "crds_installed"]  # re-exported fixtures

pytestmark = pytest.mark.integration

SOURCE = "source.toolkit.fluxcd.io/v1"


def ready_revision(obj: Obj | None) -> str | None:
    status = (obj or {}).get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str((status.get("artifact") or {}).get("revision"))
    return None


async def test_a_new_release_in_the_index_reaches_the_helmchart_through_the_controller(
    api: Kube, control_ns: str, crds_installed: None, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    ns = control_ns
    running = await start_controller(api, ns, tmp_path)
    try:
        await api.create(
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
                "kind": "HelmRepository",
                "metadata": {"name": "bitnami", "namespace": ns},
                "spec": {"interval": "30m", "url": chart_repo.url},
            }
        )
        spec: dict[str, Any] = {
            "chart": "redis",
            "version": "17.x",
            "interval": "30m",
            "sourceRef": {"kind": "HelmRepository", "name": "bitnami"},
        }
        await api.create(
            {
                "apiVersion": SOURCE,
                "kind": "HelmChart",
                "metadata": {"name": "redis", "namespace": ns},
                "spec": spec,
            }
        )

        async def chart_at(version: str) -> Obj | None:
            obj = await api.get(SOURCE, "HelmChart", "redis", ns)
            return obj if ready_revision(obj) == version else None

        await eventually(lambda: chart_at("17.3.2"), timeout=60, what="HelmChart at 17.3.2")

        chart_repo.publish("17.5.0")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await api.merge_patch(
            SOURCE,
            "HelmRepository",
            "bitnami",
            {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}},
            ns,
        )
        moved = await eventually(lambda: chart_at("17.5.0"), timeout=30, what="HelmChart at 17.5.0")
        repo = await api.get(SOURCE, "HelmRepository", "bitnami", ns)
        assert repo is not None
        assert repo["status"]["lastHandledReconcileAt"] == now
        assert moved["status"]["observedSourceArtifactRevision"] == chart_repo.index_digest()
    finally:
        await stop_controller(running)
