"""Scale (issue 15): a restarted controller writes nothing when nothing changed, and
replicas with ``--shards`` share the apps without overlap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gitsail.controller.sharding import shard_of
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.controller.conftest import (
    AUTOMATED,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.controller_process import ControllerProcess

pytestmark = pytest.mark.integration

APPS = 6
APP_API = "argoproj.io/v1alpha1"


def _spread(namespace: str, shards: int, per_shard: int) -> list[str]:
    """App names with ``per_shard`` apps on each shard (the namespace is random per test)."""
    buckets: dict[int, list[str]] = {i: [] for i in range(shards)}
    n = 0
    while any(len(b) < per_shard for b in buckets.values()):
        name = f"app{n}"
        bucket = buckets[shard_of(namespace, name, shards)]
        if len(bucket) < per_shard:
            bucket.append(name)
        n += 1
    return sorted(name for b in buckets.values() for name in b)


async def _create_apps(
    api: Kube, namespace: str, git_repo: Workdir, count: int, shards: int = 1
) -> list[str]:
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("cm", v="1"), "app/kustomization.yaml": "resources: [cm.yaml]\n"},
        "v1",
    )
    names = _spread(namespace, shards, count // shards)
    for n, name in enumerate(names):
        await create_app(
            api,
            namespace,
            name,
            public_url(git_repo),
            syncPolicy=AUTOMATED,
            source={
                "repoURL": public_url(git_repo),
                "path": "app",
                "targetRevision": "main",
                "kustomize": {"nameSuffix": f"-{n}"},
            },
        )
    return names


async def _versions_when_all_synced(api: Kube, namespace: str, names: list[str]) -> dict[str, str]:
    """Each app's resourceVersion, once every app is Synced and Healthy with no operation."""
    versions: dict[str, str] = {}
    for name in names:
        obj = await api.get(APP_API, "Application", name, namespace)
        status = (obj or {}).get("status") or {}
        if (
            obj is None
            or "operation" in obj
            or (status.get("sync") or {}).get("status") != "Synced"
            or (status.get("health") or {}).get("status") != "Healthy"
            or (status.get("operationState") or {}).get("phase") != "Succeeded"
        ):
            return {}
        versions[name] = obj["metadata"]["resourceVersion"]
    return versions


async def test_a_restarted_controller_writes_nothing_when_nothing_changed(
    api: Kube, control_ns: str, git_repo: Workdir, tmp_path: Path, crds_installed: None
) -> None:
    names = await _create_apps(api, control_ns, git_repo, APPS)
    first = await start_controller(api, control_ns, tmp_path, identity="before")
    try:
        await eventually(
            lambda: _versions_when_all_synced(api, control_ns, names),
            timeout=90,
            what="every app synced",
        )
    finally:
        await stop_controller(first)
    before = await _versions_when_all_synced(api, control_ns, names)
    assert before, "the apps stay synced once the controller is gone"

    second = await start_controller(api, control_ns, tmp_path, identity="after")
    try:
        metrics = second.controller.metrics.registry

        def reconciled() -> float:
            value = metrics.get_sample_value(
                "gitsail_app_reconcile_duration_seconds_count", {"namespace": control_ns}
            )
            return value or 0.0

        async def compared_everything() -> bool:
            # A reconcile is observed once it ended, its status write (if any) included.
            reconciler = second.controller.reconciler
            return (
                reconciler is not None
                and reconciled() >= APPS
                and all(
                    (control_ns, name) in reconciler.memory
                    and reconciler.memory[(control_ns, name)].revision is not None
                    for name in names
                )
            )

        await eventually(compared_everything, timeout=60, what="every app compared again")
        after = await _versions_when_all_synced(api, control_ns, names)
        assert after == before, "the restarted controller wrote to unchanged Applications"
    finally:
        await stop_controller(second)


@pytest.mark.parametrize("shards", [2, 3])
async def test_shards_share_the_apps_without_overlap(
    shards: int,
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    names = await _create_apps(api, control_ns, git_repo, APPS, shards)
    expected = {name: shard_of(control_ns, name, shards) for name in names}
    assert set(expected.values()) == set(range(shards)), "every shard has apps"
    replicas = [
        ControllerProcess(
            cluster,
            control_ns,
            tmp_path / f"shard{i}.log",
            args=["--shards", str(shards), "--shard", str(i), "--leader-elect"],
        )
        for i in range(shards)
    ]
    try:
        for replica in replicas:
            await replica.wait_up_async()
        await eventually(
            lambda: _versions_when_all_synced(api, control_ns, names),
            timeout=120,
            what="every app synced by the shards",
        )
        # Each app's operation was started and completed by its shard's replica only.
        hosts = {i: f"{_hostname()}-{replica.proc.pid}" for i, replica in enumerate(replicas)}
        events = await api.list("v1", "Event", control_ns)
        by_app: dict[str, set[str]] = {}
        for event in events:
            if event.get("reason") in ("OperationStarted", "OperationCompleted"):
                app = (event.get("involvedObject") or {}).get("name", "")
                by_app.setdefault(app, set()).add(str(event.get("reportingInstance")))
        assert by_app == {name: {hosts[expected[name]]} for name in names}
        # Each shard is fenced by its own Lease, held by its replica.
        for i in range(shards):
            lease = await api.get(
                "coordination.k8s.io/v1", "Lease", f"gitsail-controller-shard-{i}", control_ns
            )
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == hosts[i]
    finally:
        for replica in replicas:
            replica.kill()
        await asyncio.sleep(0)


def _hostname() -> str:
    import socket

    return socket.gethostname()


async def _holders(api: Kube, namespace: str, shards: int) -> dict[int, str]:
    holders: dict[int, str] = {}
    for i in range(shards):
        lease = await api.get(
            "coordination.k8s.io/v1", "Lease", f"gitsail-controller-shard-{i}", namespace
        )
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        if holder:
            holders[i] = str(holder)
    return holders


async def _operations_by_app(api: Kube, namespace: str) -> dict[str, list[str]]:
    """The replicas (``reportingInstance``) that started each app's operations, in order."""
    events = await api.list("v1", "Event", namespace)
    events.sort(key=lambda e: str(e.get("eventTime") or e.get("firstTimestamp") or ""))
    by_app: dict[str, list[str]] = {}
    for event in events:
        if event.get("reason") == "OperationStarted":
            app = (event.get("involvedObject") or {}).get("name", "")
            by_app.setdefault(app, []).append(str(event.get("reportingInstance")))
    return by_app


async def test_dynamic_shards_spread_and_move_when_a_replica_dies(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    names = await _create_apps(api, control_ns, git_repo, APPS, 2)
    shard = {name: shard_of(control_ns, name, 2) for name in names}
    replicas = [
        ControllerProcess(
            cluster,
            control_ns,
            tmp_path / f"auto{i}.log",
            args=["--shards", "2", "--shard", "auto"],
        )
        for i in range(2)
    ]
    hosts = [f"{_hostname()}-{replica.proc.pid}" for replica in replicas]
    try:
        for replica in replicas:
            await replica.wait_up_async()

        async def one_shard_each() -> dict[int, str]:
            holders = await _holders(api, control_ns, 2)
            return holders if sorted(holders.values()) == sorted(hosts) else {}

        holders = await eventually(one_shard_each, timeout=60, what="one shard per replica")
        await eventually(
            lambda: _versions_when_all_synced(api, control_ns, names),
            timeout=120,
            what="every app synced by the two replicas",
        )
        started = await _operations_by_app(api, control_ns)
        assert started == {name: [holders[shard[name]]] for name in names}
        assert await one_shard_each() == holders, "the shards stayed where they were"

        # Replica 0 dies (SIGKILL: its Lease is not released, it expires). Its shard moves
        # to replica 1 once the Lease expires (15 s) and stayed free for the claimer's
        # patience (the renew deadline, 10 s); then a new commit is synced everywhere.
        dead = next(i for i, host in holders.items() if host == hosts[0])
        replicas[0].kill()

        async def moved() -> bool:
            return await _holders(api, control_ns, 2) == {0: hosts[1], 1: hosts[1]}

        await eventually(moved, timeout=45, what="the dead replica's shard taken over")
        git_repo.commit_and_push({"app/cm.yaml": configmap("cm", v="2")}, "v2")

        async def v2_everywhere() -> bool:
            for n in range(APPS):
                cm = await api.get("v1", "ConfigMap", f"cm-{n}", control_ns)
                if cm is None or cm["data"]["v"] != "2":
                    return False
            return True

        await eventually(v2_everywhere, timeout=90, what="v2 synced by the survivor")
        after = await _operations_by_app(api, control_ns)
        for name in names:
            if shard[name] == dead:
                assert after[name][-1] == hosts[1], name
            else:
                assert set(after[name]) == {hosts[1]}, name
    finally:
        for replica in replicas:
            replica.kill()
        await asyncio.sleep(0)
