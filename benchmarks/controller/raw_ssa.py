"""The physical baseline: the fleet's objects server-side applied with no engine.

The same objects as ``converge`` (per app: a Namespace, then the ServiceAccount, the
headless Service and the Deployment at 0 replicas, parsed from the same YAML), the same
HTTP client (``gitsail.kube.Kube``: pooled connections, discovery, retries) and the same
concurrency as the controller (``--concurrency``: that many apps at a time, each app's
objects applied one after the other, as a sync does). No fetch, render, diff, dry run,
health or status. What is left is what the apiserver and etcd need to store the objects:
the floor gitsail's convergence is compared against (``ratio_to_raw``), in the same run,
on the same cluster, under the same load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import yaml

from benchmarks.controller.common import NS_PREFIX, _delta, apiserver_requests, log
from benchmarks.controller.fixture import Bench
from gitsail.model import Obj

FIELD_MANAGER = "gitsail-bench-raw"
# The order a sync applies them in (Argo CD's kind order within a wave).
ORDER = ("serviceaccount.yaml", "service.yaml", "deployment.yaml")


def app_objects(app: str, files: dict[str, str]) -> list[Obj]:
    """The objects of one fleet app (``_podinfo(app)``) in apply order, Namespace first,
    each in the app's namespace and labelled as the controller labels what it tracks."""
    namespace = f"{NS_PREFIX}{app}"
    objs: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for name in ORDER:
        obj: Obj = yaml.safe_load(files[name])
        meta = obj["metadata"]
        meta["namespace"] = namespace
        meta.setdefault("labels", {})["app.kubernetes.io/instance"] = app
        objs.append(obj)
    return objs


async def raw_ssa_phase(
    bench: Bench, apps: dict[str, dict[str, str]], *, concurrency: int
) -> dict[str, Any]:
    """Apply every app's objects (``apps``: app name → its files) ``concurrency`` apps at
    a time; the wall time, this process's CPU and the apiserver requests it took."""
    kube = bench.kube
    work = [(app, app_objects(app, files)) for app, files in apps.items()]
    sem = asyncio.Semaphore(concurrency)
    done: list[float] = []

    async def one(objs: list[Obj], t0: float) -> None:
        async with sem:
            for obj in objs:
                await kube.apply(obj, field_manager=FIELD_MANAGER, force=True)
            done.append(time.monotonic() - t0)

    api0 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    cpu0 = time.process_time()
    t0 = time.monotonic()
    await asyncio.gather(*(one(objs, t0) for _, objs in work))
    total = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    api1 = await asyncio.to_thread(apiserver_requests, bench.cluster)
    requests = _delta(api1, api0)
    count = len(work)
    result = {
        "apps": count,
        "objects": sum(len(objs) for _, objs in work),
        "concurrency": concurrency,
        "total_s": round(total, 2),
        "apps_per_s": round(count / total, 1),
        "client_cpu_s": round(cpu, 2),
        "client_cpu_ms_per_app": round(cpu / count * 1000, 2),
        "apiserver_requests": int(sum(requests.values())),
        "what": "server-side apply of each app's Namespace, ServiceAccount, Service and "
        "Deployment through gitsail.kube.Kube, this many apps at a time, nothing else",
    }
    log(f"raw SSA {count} apps: {total:.1f}s, client CPU {cpu:.1f}s")
    return result
