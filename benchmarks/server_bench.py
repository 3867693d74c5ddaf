"""``gitsail server`` page and API times with 1000 Applications, and its memory.

    .venv/bin/python -m benchmarks.server_bench          # --apps 1000 --resources 200 --reps 30

The server's own work only: its watch caches are filled from an in-memory cluster
(``MemoryCluster``: the ``ClusterReader`` the caches list and watch through), and requests
go to the ASGI app in-process (httpx's ASGI transport), so the time measured is the server's
time (sign-in check, RBAC of every app, filtering, sorting, Jinja2 rendering) without a
network or an apiserver. Results go to ``benchmarks/results/server.json``.

Measured: the app list page (100 per page, and 500), the list API (500), one app's page with
``--resources`` resources (half Deployments with a ReplicaSet and two Pods each, half
Services), its resource tree, and the process's RSS before and after the caches hold the
apps (``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx

from gitsail.kube import Kube, WatchEvent
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.server.app import make_app
from gitsail.server.auth import hash_password, issue_token
from gitsail.server.service import Service
from gitsail.server.state import ServerState

NS = "argocd"
RESULTS = Path(__file__).parent / "results" / "server.json"


class MemoryCluster:
    """Objects by (apiVersion, kind); lists answer from them, watches never send."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[Obj]] = {}
        self._idle = asyncio.Event()

    def add(self, obj: Obj) -> None:
        self.objects.setdefault((obj["apiVersion"], obj["kind"]), []).append(obj)

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        items = self.objects.get((api_version, kind), [])
        if namespace:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        if field_selector and field_selector.startswith("metadata.name="):
            name = field_selector.split("=", 1)[1]
            items = [o for o in items if o["metadata"]["name"] == name]
        return list(items), "1"

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        await self._idle.wait()  # nothing ever changes: never set
        events: list[WatchEvent] = []
        for event in events:
            yield event


def application(i: int, resources: int = 5) -> Obj:
    name = f"app-{i:04d}"
    res = []
    for r in range(resources):
        kind = "Deployment" if r % 2 == 0 else "Service"
        res.append(
            {
                "group": "apps" if kind == "Deployment" else "",
                "version": "v1",
                "kind": kind,
                "namespace": f"ns-{i % 50}",
                "name": f"{name}-{r}",
                "status": "Synced" if i % 7 else "OutOfSync",
                "health": {"status": "Healthy" if i % 11 else "Progressing"},
            }
        )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{i}",
            "labels": {"team": f"t{i % 5}"},
            "resourceVersion": str(i),
        },
        "spec": {
            "project": f"project-{i % 10}",
            "source": {
                "repoURL": f"https://git.example/repo-{i % 20}.git",
                "path": f"apps/{name}",
                "targetRevision": "main",
            },
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": f"ns-{i % 50}",
            },
        },
        "status": {
            "sync": {"status": "Synced" if i % 7 else "OutOfSync", "revision": f"{i:040x}"},
            "health": {"status": "Healthy" if i % 11 else "Progressing"},
            "resources": res,
            "history": [{"id": 1, "revision": f"{i:040x}", "deployedAt": "2026-12-01T00:00:00Z"}],
        },
    }


def derived(app: Obj) -> list[Obj]:
    out: list[Obj] = []
    for res in app["status"]["resources"]:
        if res["kind"] != "Deployment":
            continue
        rs = f"{res['name']}-abc"
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs,
                    "namespace": res["namespace"],
                    "ownerReferences": [{"kind": "Deployment", "name": res["name"]}],
                },
                "spec": {"replicas": 2},
                "status": {"availableReplicas": 2},
            }
        )
        for p in range(2):
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{rs}-{p}",
                        "namespace": res["namespace"],
                        "ownerReferences": [{"kind": "ReplicaSet", "name": rs}],
                    },
                    "status": {"phase": "Running", "containerStatuses": [{"ready": True}]},
                }
            )
    return out


def settings(cluster: MemoryCluster) -> None:
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": NS},
            "data": {
                "server.secretkey": b64("k" * 32),
                "admin.password": b64(hash_password("bench")),
            },
        }
    )
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "namespace": NS},
            "data": {
                "policy.csv": "\n".join(
                    f"p, role:team-{i}, applications, *, project-{i}/*, allow" for i in range(10)
                ),
                "policy.default": "role:readonly",
            },
        }
    )


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def timed(client: httpx.AsyncClient, url: str, reps: int) -> dict[str, float]:
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "bytes": len(response.content),
    }


async def run(apps: int, resources: int, reps: int) -> dict[str, Any]:
    before = rss_kib()
    cluster = MemoryCluster()
    settings(cluster)
    for i in range(apps):
        cluster.add(application(i))
    big = application(apps, resources)
    big["metadata"]["name"] = "big"
    cluster.add(big)
    for obj in derived(big):
        cluster.add(obj)
    state = ServerState(cluster, NS, (NS,))
    await state.start()
    service = Service(state, cast(Kube, cluster), Policy())
    loaded = rss_kib()
    token, _ = issue_token(b"k" * 32, "admin")
    transport = httpx.ASGITransport(app=make_app(service))
    results: dict[str, Any] = {"apps": apps, "resources_of_big_app": resources, "reps": reps}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://server", cookies={"argocd.token": token}
    ) as client:
        await client.get("/applications")  # templates compiled, derived caches started
        await client.get("/applications/argocd/big")
        pages = {
            "app list page (100 of N)": "/applications",
            "app list page (500 of N)": "/applications?limit=500",
            "app list page filtered (sync=OutOfSync)": "/applications?sync=OutOfSync",
            "list API (500 of N)": "/api/v1/applications?limit=500",
            f"app page ({resources} resources)": "/applications/argocd/big",
            f"resource-tree API ({resources} resources)": "/api/v1/applications/big/resource-tree",
        }
        for label, url in pages.items():
            results[label] = await timed(client, url, reps)
    await state.stop()
    results["rss_kib_before"] = before
    results["rss_kib_with_caches"] = loaded
    results["rss_kib_after_requests"] = rss_kib()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    results = asyncio.run(run(args.apps, args.resources, args.reps))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
