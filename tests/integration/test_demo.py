"""`make demo` as a user runs it (its own dev cluster, not the shared one): the Argo CD
Applications and, beside them, the article's Flux layout, each in its own namespaces."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from gitsail.dev.demo import ENVIRONMENTS, FLUX_NAMESPACE, Demo, demo_down, demo_up
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj

pytestmark = pytest.mark.integration


@pytest.fixture
def demo() -> Iterator[Demo]:
    name = f"demo-pytest-{os.getpid()}"
    try:
        yield demo_up(name=name)
    finally:
        demo_down(name)


async def _get(demo: Demo, api_version: str, kind: str, name: str, ns: str) -> Obj | None:
    async with Kube(await load_kubeconfig(demo.cluster.kubeconfig)) as kube:
        return await kube.get(api_version, kind, name, ns)


def test_demo_up_syncs_the_applications_and_makes_the_flux_objects_ready(
    demo: Demo,
) -> None:
    # demo_up returned: Applications Synced/Healthy, Kustomizations Ready. Look at each.
    for env in ENVIRONMENTS:
        ks = asyncio.run(
            _get(
                demo,
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                f"myapp-{env}",
                FLUX_NAMESPACE,
            )
        )
        assert ks is not None
        ready = next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        by_flux = asyncio.run(_get(demo, "apps/v1", "Deployment", "myapp", f"flux-{env}"))
        by_argo = asyncio.run(_get(demo, "apps/v1", "Deployment", "myapp", env))
        assert by_flux is not None
        assert by_argo is not None
        assert by_flux["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == f"myapp-{env}"
        assert "argocd.argoproj.io/tracking-id" not in (
            by_flux["metadata"].get("annotations") or {}
        )
        assert "kustomize.toolkit.fluxcd.io/name" not in by_argo["metadata"].get("labels", {})
        # The same overlay: the same replica count in both.
        assert by_flux["spec"]["replicas"] == by_argo["spec"]["replicas"]
    # The article's HelmRelease: redis "17.x" released from the demo's chart repository.
    release = asyncio.run(_get(demo, "helm.toolkit.fluxcd.io/v2", "HelmRelease", "redis", "redis"))
    assert release is not None
    ready = next(c for c in release["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert release["status"]["history"][0]["chartVersion"] == "17.3.2"
    storage = asyncio.run(_get(demo, "v1", "Secret", "sh.helm.release.v1.redis.v1", "redis"))
    assert storage is not None
    assert storage["metadata"]["labels"]["owner"] == "helm"
