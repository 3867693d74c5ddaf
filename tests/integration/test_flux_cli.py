"""Flux's verbs as a user runs them: ``gitsail get|reconcile|suspend|resume`` against the dev
control plane. The tests play the controller: they write the status a controller would,
and answer a reconcile request by setting ``status.lastHandledReconcileAt``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from tests.integration.controller.conftest import eventually

pytestmark = pytest.mark.integration

GITREPO = "source.toolkit.fluxcd.io/v1"
KS = "kustomize.toolkit.fluxcd.io/v1"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
REVISION = "main@sha1:6113728f27ae82c7b1a177c8d03f9e96e0adf246"
LONG = "stored artifact for revision '" + REVISION + "' " + "and a long tail " * 8


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as client:
        await install_crds(client, families=["flux"])
        yield client


async def gitsail(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitsail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
        },
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def ready(status: str, message: str, reason: str = "Succeeded") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-02T04:00:00Z",
    }


async def repo(api: Kube, ns: str, name: str, *, suspend: bool = False, message: str = LONG) -> Obj:
    spec: dict[str, Any] = {"interval": "1m", "url": "https://git.example.com/web.git"}
    if suspend:
        spec["suspend"] = True
    await api.create(
        {
            "apiVersion": GITREPO,
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )
    status = {"artifact": {"revision": REVISION}, "conditions": [ready("True", message)]}
    return await api.merge_patch(
        GITREPO, "GitRepository", name, {"status": status}, ns, subresource="status"
    )


async def kustomization(api: Kube, ns: str, name: str, source: str = "web") -> Obj:
    spec = {
        "interval": "10m",
        "prune": True,
        "path": "./apps",
        "sourceRef": {"kind": "GitRepository", "name": source},
    }
    await api.create(
        {
            "apiVersion": KS,
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )
    status = {
        "lastAppliedRevision": REVISION,
        "conditions": [ready("True", f"Applied revision: {REVISION}", "ReconciliationSucceeded")],
    }
    return await api.merge_patch(
        KS, "Kustomization", name, {"status": status}, ns, subresource="status"
    )


async def handle(
    api: Kube,
    api_version: str,
    kind: str,
    ns: str,
    name: str,
    *,
    ok: bool = True,
    message: str = "done",
) -> str:
    """Play the controller: wait for a reconcile request, then report it handled."""

    async def requested() -> str | None:
        obj = await api.get(api_version, kind, name, ns)
        return ((obj or {}).get("metadata", {}).get("annotations") or {}).get(REQUESTED_AT)

    stamp = await eventually(requested, timeout=60, what=f"{kind} {name} requestedAt")
    status = {
        "lastHandledReconcileAt": stamp,
        "conditions": [
            ready("True" if ok else "False", message, "Succeeded" if ok else "BuildFailed")
        ],
    }
    await api.merge_patch(api_version, kind, name, {"status": status}, ns, subresource="status")
    return stamp


async def test_get_sources_git_prints_flux_columns_full_width_and_objects_as_json(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await repo(api, namespace, "web")
    await repo(api, namespace, "paused", suspend=True, message="suspended")
    code, out, _ = await gitsail(cluster, "get", "sources", "git", "-n", namespace)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    assert lines[1].split()[:4] == ["paused", REVISION, "True", "True"]
    assert lines[2].split()[:4] == ["web", REVISION, "False", "True"]
    assert LONG.strip() in lines[2]  # piped: never cut, never wrapped
    assert len(lines) == 3

    code, out, _ = await gitsail(cluster, "get", "sources", "git", "-A")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert [namespace, "web"] in [r.split()[:2] for r in rows]

    code, out, _ = await gitsail(cluster, "get", "sources", "git", "-n", namespace, "-o", "json")
    assert [o["metadata"]["name"] for o in json.loads(out)] == ["paused", "web"]
    code, out, _ = await gitsail(
        cluster, "get", "sources", "git", "web", "-n", namespace, "-o", "yaml"
    )
    assert yaml.safe_load(out)["status"]["artifact"]["revision"] == REVISION

    code, _, err = await gitsail(cluster, "get", "sources", "git", "nope", "-n", namespace)
    assert code == 1
    assert f"GitRepository nope not found in namespace {namespace}" in err


async def test_get_kustomizations_shows_the_applied_revision(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await kustomization(api, namespace, "apps")
    code, out, _ = await gitsail(cluster, "get", "kustomizations", "-n", namespace)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    assert row.split() == ["apps", REVISION, "False", "True", "Applied", "revision:", REVISION]
    code, out, err = await gitsail(cluster, "get", "kustomizations", "-n", "gitsail-no-such-ns")
    assert (code, out) == (0, "")
    assert "no Kustomization objects found" in err


async def test_reconcile_source_git_waits_until_the_controller_handled_the_request(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await repo(api, namespace, "web")
    cli = asyncio.create_task(
        gitsail(cluster, "reconcile", "source", "git", "web", "-n", namespace)
    )
    stamp = await handle(api, GITREPO, "GitRepository", namespace, "web")
    code, out, err = await cli
    assert code == 0, err
    assert stamp.endswith("Z")
    assert "◎ waiting for GitRepository reconciliation" in out
    assert f"✔ fetched revision {REVISION}" in out


async def test_reconcile_kustomization_with_source_does_both_and_fails_on_ready_false(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await repo(api, namespace, "web")
    await kustomization(api, namespace, "apps")
    cli = asyncio.create_task(
        gitsail(cluster, "reconcile", "kustomization", "apps", "--with-source", "-n", namespace)
    )
    await handle(api, GITREPO, "GitRepository", namespace, "web")
    await handle(
        api,
        KS,
        "Kustomization",
        namespace,
        "apps",
        ok=False,
        message="kustomize build failed: no such path",
    )
    code, out, err = await cli
    assert code == 1
    assert "annotating GitRepository web" in out
    assert "annotating Kustomization apps" in out
    assert (
        f"Kustomization {namespace}/apps is not ready: kustomize build failed: no such path" in err
    )


async def test_reconcile_times_out_without_a_controller(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await kustomization(api, namespace, "apps")
    code, _, err = await gitsail(
        cluster, "reconcile", "kustomization", "apps", "-n", namespace, "--timeout", "1"
    )
    assert code == 1
    assert "did not handle the reconcile request within 1s" in err


async def test_suspend_and_resume_patch_the_spec_and_resume_waits(
    api: Kube, cluster: Cluster, namespace: str
) -> None:
    await kustomization(api, namespace, "apps")
    await repo(api, namespace, "web")
    code, out, _ = await gitsail(cluster, "suspend", "kustomization", "apps", "-n", namespace)
    assert code == 0
    assert "✔ kustomization suspended" in out
    live = await api.get(KS, "Kustomization", "apps", namespace)
    assert live is not None
    assert live["spec"]["suspend"] is True

    code, _, err = await gitsail(cluster, "reconcile", "kustomization", "apps", "-n", namespace)
    assert code == 1
    assert "is suspended; resume it first" in err

    cli = asyncio.create_task(gitsail(cluster, "resume", "kustomization", "apps", "-n", namespace))
    await handle(api, KS, "Kustomization", namespace, "apps")
    code, out, err = await cli
    assert code == 0, err
    live = await api.get(KS, "Kustomization", "apps", namespace)
    assert live is not None
    assert live["spec"]["suspend"] is False
    assert "✔ Kustomization reconciliation completed" in out

    code, _, _ = await gitsail(cluster, "suspend", "source", "git", "web", "-n", namespace)
    assert code == 0
    code, _, _ = await gitsail(
        cluster, "resume", "source", "git", "web", "-n", namespace, "--no-wait"
    )
    assert code == 0
    live = await api.get(GITREPO, "GitRepository", "web", namespace)
    assert live is not None
    assert live["spec"]["suspend"] is False
    assert REQUESTED_AT not in (live["metadata"].get("annotations") or {})
