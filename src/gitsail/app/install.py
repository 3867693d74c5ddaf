"""What `gitsail install` applies: the CRDs gitsail serves (Argo CD kinds for now)."""

from __future__ import annotations

import asyncio
import time
from importlib import resources

import yaml

from gitsail.health import HealthStatus, resource_health
from gitsail.kube import Kube
from gitsail.model import Obj

__all__ = ["crd_manifests", "install_crds"]


def crd_manifests() -> list[Obj]:
    folder = resources.files("gitsail.app") / "crds"
    docs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs.append(yaml.safe_load(entry.read_text()))
    return docs


async def install_crds(kube: Kube, *, wait_seconds: float = 60.0) -> list[str]:
    """Apply every CRD and wait until each is Established; returns their names."""
    names = []
    for crd in crd_manifests():
        await kube.apply(crd, field_manager="gitsail-install", force=True)
        names.append(str(crd["metadata"]["name"]))
    deadline = time.monotonic() + wait_seconds
    for name in names:
        while True:
            live = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            health = resource_health(live)
            if health is not None and health.status is HealthStatus.Healthy:  # Established
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} was not Established after {wait_seconds:.0f}s")
            await asyncio.sleep(0.2)
    await kube.discover(refresh=True)
    return names
