"""Fleet benchmark: one ApplicationSet fanning out over two target clusters, and the
controller's memory with 3 and with 10 registered clusters.

    .venv/bin/python -m benchmarks.fleet_bench     # --dirs 500 (= 1000 apps) --limit 1800

Three dev clusters: the control plane ``clusters-bench`` (started, removed at the end unless
``--keep``) and the targets ``clusters-a`` / ``clusters-b`` (reused when running, else
started and removed). A loopback git server holds ``apps/app-NNNN/`` (a Deployment at 0
replicas, a ServiceAccount, a Service: ``controller_bench``'s fleet shape). The controller
runs as a separate process (``controller_bench.ControllerProcess``), so its CPU and RSS are
its own.

1. **Convergence**: both targets are registered with cluster Secrets (label
   ``bench: target``); one ApplicationSet (a matrix of a git ``directories`` generator and a
   ``clusters`` generator selecting them) makes ``2 x --dirs`` Applications, automated, each
   into its own namespace on its cluster (``CreateNamespace=true``). Timed from the set's
   creation until every Application is Synced and Healthy at the pushed revision (a watch).
2. **Memory**: the controller's RSS after a settle, with 3 registered clusters (in-cluster +
   2), then after 7 more cluster Secrets are registered — loopback TCP forwarders in this
   process to the two targets, each a distinct server URL, so the controller opens 7 more
   connections, discoveries and watch caches — each with one Application of its own (a list
   generator), converged. The difference is the cost of 7 more open clusters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.controller_bench import (
    APP_API,
    CONTROL_NS,
    RESULTS_DIR,
    ControllerProcess,
    _synced_healthy,
    fleet_files,
    git_server,
    log,
)
from gitsail.app.install import install_crds
from gitsail.cli.cluster import argo_config
from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_cluster import cluster_secret
from gitsail.kube import Kube, KubeError, WatchCache, load_kubeconfig
from gitsail.model import Obj

CONTROL = "clusters-bench"
TARGETS = ("clusters-a", "clusters-b")
NS_PREFIX = "bench-"
EXTRA_CLUSTERS = 7


class Forwarder:
    """A loopback TCP forwarder to ``port``: the same apiserver at another server URL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def register(
    kube: Kube, target: devcluster.Cluster, name: str, label: str, server: str | None = None
) -> None:
    config = await load_kubeconfig(target.kubeconfig)
    secret = cluster_secret(
        name,
        server or config.server,
        argo_config(config),
        secret_name=f"cluster-{name}",
        namespace=CONTROL_NS,
        labels={"bench": label},
    )
    await kube.apply(secret, field_manager="gitsail-bench", force=True)


def the_set(repo: str) -> Obj:
    return {
        "apiVersion": APP_API,
        "kind": "ApplicationSet",
        "metadata": {"name": "fleet", "namespace": CONTROL_NS},
        "spec": {
            "generators": [
                {
                    "matrix": {
                        "generators": [
                            {"git": {"repoURL": repo, "revision": "HEAD",
                                     "directories": [{"path": "apps/*"}]}},
                            {"clusters": {"selector": {"matchLabels": {"bench": "target"}}}},
                        ]
                    }
                }
            ],
            "template": _template(repo, "{{path.basename}}-{{name}}", "{{path}}", "{{server}}",
                                  "bench-{{path.basename}}"),
        },
    }  # fmt: skip


def _template(repo: str, name: str, path: str, server: str, namespace: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "targetRevision": "HEAD", "path": path},
            "destination": {"server": server, "namespace": namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


async def converge(
    kube: Kube, ctl: ControllerProcess, expected: int, revision: str, limit: float
) -> dict[str, Any]:
    """Wait until ``expected`` Applications are Synced+Healthy; timings and samples."""
    watch = WatchCache(kube, APP_API, "Application", CONTROL_NS)
    await watch.start()
    started = time.monotonic()
    s0 = ctl.sample()
    done = 0
    next_report = started + 15
    while time.monotonic() - started < limit:
        done = sum(1 for o in watch.items() if _synced_healthy(o, revision))
        if done >= expected:
            break
        if time.monotonic() > next_report:
            log(f"{done}/{expected} Synced+Healthy after {time.monotonic() - started:.0f}s")
            next_report += 15
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    s1 = ctl.sample()
    await watch.stop()
    return {
        "apps": expected,
        "converged": done,
        "seconds": round(elapsed, 1),
        "apps_per_min": round(done / elapsed * 60, 1),
        "controller_cpu_s": round(s1.cpu_s - s0.cpu_s, 1),
        "controller_peak_rss_mib": round(max(ctl.peak_rss_mib, s1.hwm_mib), 1),
    }


async def settled_rss(ctl: ControllerProcess, seconds: float) -> float:
    await asyncio.sleep(seconds)
    return round(ctl.sample().rss_mib, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started_targets = [n for n in TARGETS if devcluster.load(n) is None]
    control = await asyncio.to_thread(devcluster.up, CONTROL, nodes=2)
    targets = [await asyncio.to_thread(devcluster.up, n, nodes=1) for n in TARGETS]
    work = Path(args.work)
    forwarders: list[Forwarder] = []
    try:
        with git_server() as git:
            git.create_repo("fleet")
            repo = git.url("fleet")
            tree = Workdir(repo)
            revision = tree.commit_and_push(fleet_files(args.dirs + EXTRA_CLUSTERS), "fleet")
            async with Kube(await load_kubeconfig(control.kubeconfig)) as kube:
                await install_crds(kube)
                if await kube.get("v1", "Namespace", CONTROL_NS) is None:
                    await kube.create(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROL_NS}}
                    )
                for target in targets:
                    await register(kube, target, target.name, "target")
                ctl = ControllerProcess(control.kubeconfig, work, "fleet", resync=120, jitter=60)
                await ctl.start()
                try:
                    rss_empty = await settled_rss(ctl, 5)
                    # The set's dirs are the first --dirs; the extra clusters' apps the rest.
                    obj = the_set(repo)
                    gen = obj["spec"]["generators"][0]["matrix"]["generators"][0]["git"]
                    gen["directories"] = [
                        {"path": "apps/*"},
                        *({"path": f"apps/app-{i:04d}", "exclude": True}
                          for i in range(args.dirs, args.dirs + EXTRA_CLUSTERS)),
                    ]  # fmt: skip
                    await kube.create(obj)
                    fan_out = await converge(kube, ctl, 2 * args.dirs, revision, args.limit)
                    log(f"fan-out: {fan_out}")
                    rss_3 = await settled_rss(ctl, args.settle)
                    elements = []
                    for i in range(EXTRA_CLUSTERS):
                        target = targets[i % 2]
                        forwarder = Forwarder(target.ports["apiserver"])
                        port = await forwarder.start()
                        forwarders.append(forwarder)
                        server = f"https://127.0.0.1:{port}"
                        await register(kube, target, f"extra-{i}", "extra", server)
                        elements.append({"server": server, "dir": f"app-{args.dirs + i:04d}"})
                    extra: Obj = {
                        "apiVersion": APP_API,
                        "kind": "ApplicationSet",
                        "metadata": {"name": "extra", "namespace": CONTROL_NS},
                        "spec": {
                            "generators": [{"list": {"elements": elements}}],
                            "template": _template(repo, "extra-{{dir}}", "apps/{{dir}}",
                                                  "{{server}}", "bench-{{dir}}"),
                        },
                    }  # fmt: skip
                    await kube.create(extra)
                    ten = await converge(
                        kube, ctl, 2 * args.dirs + EXTRA_CLUSTERS, revision, args.limit
                    )
                    rss_10 = await settled_rss(ctl, args.settle)
                finally:
                    await ctl.stop()
                    await cleanup(kube, targets)
    finally:
        for forwarder in forwarders:
            await forwarder.stop()
        if not args.keep:
            devcluster.down(CONTROL)
            for name in started_targets:
                devcluster.down(name)
    return {
        "fan_out": fan_out,
        "memory": {
            "rss_leading_no_apps_mib": rss_empty,
            "rss_3_clusters_mib": rss_3,
            "rss_10_clusters_mib": rss_10,
            "extra_apps_for_10": EXTRA_CLUSTERS,
            "extra_clusters_converged": ten,
            "settle_s": args.settle,
        },
    }


async def cleanup(kube: Kube, targets: list[devcluster.Cluster]) -> None:
    """The sets and their Applications (finalizers dropped), and the targets' namespaces."""
    for name in ("fleet", "extra"):
        with contextlib.suppress(KubeError):
            await kube.delete(APP_API, "ApplicationSet", name, CONTROL_NS, "Background")
    for app in await kube.list(APP_API, "Application", CONTROL_NS):
        with contextlib.suppress(KubeError):
            await kube.merge_patch(
                APP_API, "Application", app["metadata"]["name"],
                {"metadata": {"finalizers": None}}, CONTROL_NS,
            )  # fmt: skip
    for target in targets:
        async with Kube(await load_kubeconfig(target.kubeconfig)) as tk:
            for ns in await tk.list("v1", "Namespace"):
                if ns["metadata"]["name"].startswith(NS_PREFIX):
                    with contextlib.suppress(KubeError):
                        await tk.delete("v1", "Namespace", ns["metadata"]["name"], None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=500, help="apps per target cluster")
    parser.add_argument("--limit", type=float, default=1800.0)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds before an RSS read")
    parser.add_argument("--work", default="/tmp/gitsail-fleet-bench")  # noqa: S108
    parser.add_argument("--keep", action="store_true", help="keep the clusters")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(args))
    RESULTS_DIR.mkdir(exist_ok=True)
    name = "fleet.json" if args.dirs == 500 else f"fleet-{args.dirs}.json"
    (RESULTS_DIR / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
