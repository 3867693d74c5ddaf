"""A controller of version N+1 takes over from version N without re-syncing anything.

gitsail has had one release, so version N is the current code run as its own process; the
"older status" case removes from each Application's status the optional fields a previous
writer may not have written (gitsail 0.1.0 writes them all, a later release must still
read a status without them). Version N+1 is a fresh process with empty caches: it must
read N's status and operation state as they are, start no operation, and apply nothing
(every delivered object keeps its resourceVersion and managedFields)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import AUTOMATED, app_status, create_app, eventually
from tests.integration.controller_process import ControllerProcess

pytestmark = pytest.mark.integration

APPS = ("alpha", "beta", "gamma")
API = "argoproj.io/v1alpha1"
# Status fields a sync decision must not depend on (absent in an older writer's status).
OPTIONAL_STATUS = ("reconciledAt", "observedAt", "summary", "sourceType", "controllerNamespace")


def _stop(proc: ControllerProcess) -> None:
    """SIGTERM, as a Deployment's rollout stops the old pod; SIGKILL if it hangs."""
    if proc.proc.poll() is not None:
        return
    os.killpg(proc.proc.pid, signal.SIGTERM)
    try:
        proc.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _metric(text: str, metric: str, **labels: str) -> float:
    """The sum of the samples of ``metric`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(metric)}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def _delivered(api: Kube, ns: str) -> dict[str, tuple[str, Any]]:
    out = {}
    for app in APPS:
        obj = await api.get("v1", "ConfigMap", f"cm-{app}", ns)
        assert obj is not None, app
        meta = obj["metadata"]
        out[app] = (meta["resourceVersion"], meta.get("managedFields"))
    return out


@pytest.mark.parametrize("older_status", [False, True], ids=["same-status", "older-status"])
async def test_a_new_controller_takes_over_without_resyncing(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
    older_status: bool,
) -> None:
    files = {f"{app}/cm.yaml": configmap(f"cm-{app}", v="1") for app in APPS}
    git_repo.commit_and_push(files, "three apps")
    old = ControllerProcess(cluster, control_ns, tmp_path / "n.log")
    new: ControllerProcess | None = None
    try:
        await old.wait_up_async()
        for app in APPS:
            await create_app(
                api, control_ns, app, public_url(git_repo), path=app, syncPolicy=AUTOMATED
            )

        async def all_synced() -> bool:
            for app in APPS:
                status = await app_status(api, control_ns, app)
                phase = (status.get("operationState") or {}).get("phase")
                if (
                    phase != "Succeeded"
                    or (status.get("sync") or {}).get("status") != "Synced"
                    or (status.get("health") or {}).get("status") != "Healthy"
                ):
                    return False
            return True

        await eventually(all_synced, timeout=90, what="N synced the apps")
        _stop(old)
        before_status = {app: await app_status(api, control_ns, app) for app in APPS}
        if older_status:
            for app in APPS:
                gone = {f: None for f in OPTIONAL_STATUS if f in before_status[app]}
                assert gone, before_status[app]
                # (no status subresource on Application, as in Argo CD)
                await api.merge_patch(API, "Application", app, {"status": gone}, control_ns)
        delivered = await _delivered(api, control_ns)

        new = ControllerProcess(cluster, control_ns, tmp_path / "n1.log")
        await new.wait_up_async()
        url = new.url

        async def reconciled_all() -> str | None:
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"{url}/metrics")).text
            seen = [a for a in APPS if _metric(text, "gitsail_app_info", name=a) >= 1]
            count = _metric(
                text, "gitsail_app_reconcile_duration_seconds_count", namespace=control_ns
            )
            return text if len(seen) == len(APPS) and count >= len(APPS) else None

        metrics = await eventually(reconciled_all, timeout=60, what="N+1 reconciled each app")
        # No operation started by N+1, none recorded in the apps.
        for app in APPS:
            assert _metric(metrics, "gitsail_app_sync_total", name=app) == 0, app
            obj = await api.get(API, "Application", app, control_ns)
            assert obj is not None
            assert "operation" not in obj, app
            status = obj.get("status") or {}
            was = before_status[app]
            assert status["operationState"] == was["operationState"], app
            assert status.get("history") == was.get("history"), app
            assert status["sync"]["status"] == "Synced", app
            assert status["sync"]["revision"] == was["sync"]["revision"], app
            assert status["health"]["status"] == "Healthy", app
        # No apply: every delivered object is exactly as N left it.
        assert await _delivered(api, control_ns) == delivered
        assert _metric(metrics, "gitsail_selfheal_total") == 0
    finally:
        _stop(old)
        if new is not None:
            _stop(new)
