"""``Bench``: the cluster, the client, the git server and the controllers of one run;
preparing and emptying the cluster, creating apps and waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.controller.common import (
    APP_API,
    CONTROL_NS,
    FLUX_KINDS,
    FLUX_NS,
    NS_PREFIX,
    WEBHOOK_SECRET,
    _synced_healthy,
    log,
    wait_for,
)
from benchmarks.controller.process import ControllerProcess
from gitsail.app.install import install_crds
from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import GitServer
from gitsail.kube import (
    Kube,
    KubeError,
    NotFoundKind,
)
from gitsail.model import Obj


@dataclass
class Bench:
    cluster: devcluster.Cluster
    kube: Kube
    git: GitServer
    work: Path
    profile: bool
    controllers: list[ControllerProcess] = field(default_factory=list)
    controller_src: str | None = None  # another checkout's src/ (A/B)
    tracemalloc: bool = False
    controller_args: tuple[str, ...] = ()

    def controller(self, label: str, **kwargs: Any) -> ControllerProcess:
        kwargs.setdefault("pythonpath", self.controller_src)
        kwargs.setdefault("tracemalloc", self.tracemalloc)
        kwargs.setdefault("extra_args", self.controller_args)
        ctl = ControllerProcess(
            self.cluster.kubeconfig, self.work, label, profile=self.profile, **kwargs
        )
        self.controllers.append(ctl)
        return ctl

    async def stop_all(self) -> None:
        for ctl in self.controllers:
            await ctl.stop()

    async def prepare_cluster(self) -> None:
        await install_crds(self.kube)  # Argo CD's and Flux's
        # On a fresh cluster discovery may not serve a just-Established CRD yet.
        await wait_for(self._kinds_served, limit=60, interval=0.5, what="CRDs in discovery")
        for ns in (CONTROL_NS, FLUX_NS):
            if await self.kube.get("v1", "Namespace", ns) is None:
                await self.kube.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": CONTROL_NS},
            "stringData": {"webhook.github.secret": WEBHOOK_SECRET},
        }
        await self.kube.apply(secret, field_manager="gitsail-bench", force=True)
        await self.clean()

    async def _kinds_served(self) -> bool:
        try:
            for api_version, kind in ((APP_API, "Application"), *FLUX_KINDS):
                await self.kube.resource_for(api_version, kind)
        except NotFoundKind:
            await self.kube.discover(refresh=True)
            return False
        return True

    async def clean(self) -> None:
        """Remove every Application, every Flux object in ``flux-system`` and every
        ``bench-*`` namespace; wait until gone. Finalizers are dropped first: the
        namespaces go anyway, and no controller may be running."""
        sem = asyncio.Semaphore(32)

        async def delete(api_version: str, kind: str, name: str, namespace: str | None) -> None:
            async with sem:
                with contextlib.suppress(KubeError):
                    if kind != "Namespace":
                        await self.kube.merge_patch(
                            api_version, kind, name, {"metadata": {"finalizers": None}}, namespace
                        )
                    await self.kube.delete(api_version, kind, name, namespace, "Background")

        owners = [(APP_API, "Application", CONTROL_NS), *((a, k, FLUX_NS) for a, k in FLUX_KINDS)]
        names: list[str] = []
        for api_version, kind, namespace in owners:
            found = [
                o["metadata"]["name"] for o in await self.kube.list(api_version, kind, namespace)
            ]
            await asyncio.gather(*(delete(api_version, kind, n, namespace) for n in found))
            names += found
        namespaces = [
            n["metadata"]["name"]
            for n in await self.kube.list("v1", "Namespace")
            if n["metadata"]["name"].startswith(NS_PREFIX)
        ]
        await asyncio.gather(*(delete("v1", "Namespace", n, None) for n in namespaces))
        if not names and not namespaces:
            return
        log(
            f"cleaning: deleted {len(names)} Applications or Flux objects and "
            f"{len(namespaces)} namespaces"
        )

        async def gone() -> bool:
            left = [
                n
                for n in await self.kube.list("v1", "Namespace")
                if n["metadata"]["name"].startswith(NS_PREFIX)
            ]
            if left:
                return False
            for api_version, kind, namespace in owners:
                if await self.kube.list(api_version, kind, namespace):
                    return False
            return True

        took = await wait_for(gone, limit=600, interval=1, what="cleanup")
        log(f"cleaning took {took:.1f}s")

    async def create_apps(self, apps: list[Obj]) -> None:
        sem = asyncio.Semaphore(32)

        async def one(obj: Obj) -> None:
            async with sem:
                await self.kube.create(obj)

        await asyncio.gather(*(one(a) for a in apps))

    async def wait_apps(self, names: list[str], revision: str, limit: float) -> None:
        async def done() -> bool:
            objs = await asyncio.gather(
                *(self.kube.get(APP_API, "Application", n, CONTROL_NS) for n in names)
            )
            return all(o is not None and _synced_healthy(o, revision) for o in objs)

        await wait_for(done, limit=limit, interval=0.2, what=f"apps {names} synced")
