"""Flux's GitRepository, Kustomization and Receiver through the REAL controller.

Each test starts the in-process controller (``start_controller``: its only namespace is
the test's, which stands for the article's ``flux-system`` and ``myapp``), writes Flux
objects as a user would, and waits (polling with a deadline) for what the controller does:
the GitRepository publishes an artifact the controller serves, the Kustomization applies it
with Flux's owner labels, a new commit (a ``requestedAt`` annotation, or a Receiver push)
is applied and prunes, dependencies wait, drift is healed by the managed-object watch.
Nothing calls a reconciler directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import (
    AUTOMATED,
    RunningController,
    api,
    control_ns,
    crds_installed,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)

__all__ = ["api", "control_ns", "crds_installed"]  # re-exported fixtures

pytestmark = pytest.mark.integration

GR = "source.toolkit.fluxcd.io/v1"
KS = "kustomize.toolkit.fluxcd.io/v1"
RECEIVER = "notification.toolkit.fluxcd.io/v1"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FLUX_NAME = "kustomize.toolkit.fluxcd.io/name"
FLUX_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"


def cm(name: str, **data: str) -> str:
    body = "".join(f"\n  {k}: {v!r}" for k, v in (data or {"name": name}).items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{body}\n"


def deployment(name: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: nginx:1.27
"""


def article_layout(namespace: str) -> dict[str, str | None]:
    """The article's repository: a base Deployment and a production overlay."""
    return {
        "base/kustomization.yaml": "resources: [deployment.yaml, settings.yaml]\n",
        "base/deployment.yaml": deployment("myapp"),
        "base/settings.yaml": cm("myapp-settings", color="blue"),
        "overlays/production/kustomization.yaml": overlay(namespace),
    }


def overlay(namespace: str, *more: str) -> str:
    resources = ", ".join(["../../base", *more])
    return (
        f"namespace: {namespace}\nresources: [{resources}]\n"
        "labels:\n  - pairs: {env: production}\n"
    )


def condition(obj: Obj | None, kind: str = "Ready") -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


@dataclass
class Passes:
    """Every pass the controller ran of one kind, (name, reasons), in order."""

    seen: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    def of(self, name: str) -> list[frozenset[str]]:
        return [reasons for n, reasons in self.seen if n == name]


class FluxEnv:
    """The test's namespace with the controller running in it, and a git repository."""

    def __init__(
        self, api: Kube, running: RunningController, ns: str, repo: Workdir, url: str
    ) -> None:
        self.api = api
        self.running = running
        self.ns = ns
        self.repo = repo
        self.url = url

    async def git_repository(self, name: str = "myapp", **spec: Any) -> None:
        """The article's GitRepository (its url the test server, basic auth)."""
        await self.api.create(
            {
                "apiVersion": GR,
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {
                    "interval": "1m",
                    "url": self.url,
                    "ref": {"branch": "main"},
                    "secretRef": {"name": "git-auth"},
                    **spec,
                },
            }
        )

    async def kustomization(self, name: str, **spec: Any) -> None:
        await self.api.create(
            {
                "apiVersion": KS,
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {
                    "interval": "10m",
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": "myapp"},
                    "timeout": "60s",
                    **spec,
                },
            }
        )

    async def get(self, api_version: str, kind: str, name: str) -> Obj | None:
        return await self.api.get(api_version, kind, name, self.ns)

    async def configmap(self, name: str) -> Obj | None:
        return await self.get("v1", "ConfigMap", name)

    async def ready(self, kind: str, name: str, *, revision: str = "") -> Obj:
        """The object once it is Ready=True (at ``revision``, when given)."""
        api_version = GR if kind == "GitRepository" else KS

        async def probe() -> Obj | None:
            obj = await self.get(api_version, kind, name)
            if condition(obj).get("status") != "True":
                return None
            status = (obj or {}).get("status") or {}
            seen = (
                (status.get("artifact") or {}).get("revision")
                if kind == "GitRepository"
                else status.get("lastAppliedRevision")
            )
            return obj if not revision or seen == revision else None

        return await eventually(probe, timeout=60, what=f"{kind} {name} Ready {revision}")

    async def failed(self, name: str, reason: str) -> dict[str, Any]:
        """The Kustomization's Ready condition once it is False for ``reason``."""

        async def probe() -> dict[str, Any] | None:
            ready = condition(await self.get(KS, "Kustomization", name))
            return ready if (ready.get("status"), ready.get("reason")) == ("False", reason) else None

        return await eventually(probe, timeout=60, what=f"Kustomization {name} {reason}")

    async def request_reconcile(self, kind: str, name: str) -> None:
        """What ``flux reconcile`` writes: the annotation the controller acts on."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.api.merge_patch(
            GR if kind == "GitRepository" else KS,
            kind,
            name,
            {"metadata": {"annotations": {REQUESTED_AT: now}}},
            self.ns,
        )

    def record(self, kind: str) -> Passes:
        """Record the passes the controller runs of ``kind`` from now on."""
        passes = Passes()
        reconciler = self.running.controller.registry[kind]
        inner = reconciler.reconcile

        async def recorded(obj: Obj, reasons: frozenset[str]) -> float | None:
            passes.seen.append((str(obj["metadata"]["name"]), reasons))
            return await inner(obj, reasons)

        reconciler.reconcile = recorded  # type: ignore[method-assign]
        return passes


@pytest.fixture
async def flux(
    api: Kube,
    control_ns: str,
    git_server: GitServer,
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,
) -> AsyncIterator[FluxEnv]:
    user, password = GIT_USER
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-auth", "namespace": control_ns},
            "stringData": {"username": user, "password": password},
        }
    )
    running = await start_controller(api, control_ns, tmp_path)
    await eventually(
        lambda: _true(running.controller.leading.is_set()), timeout=20, what="leading"
    )
    name = git_repo.remote.rstrip("/").rsplit("/", 1)[-1]
    yield FluxEnv(api, running, control_ns, git_repo, git_server.url(name))
    await stop_controller(running)


async def _true(value: bool) -> bool:
    return value


# -- the article, end to end ----------------------------------------------------------------


async def test_article_source_and_kustomization_apply_then_follow_new_commits(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    layout = article_layout(ns)
    layout["overlays/production/kustomization.yaml"] = overlay(ns, "extra.yaml")
    flux.repo.commit_and_push({**layout, "overlays/production/extra.yaml": cm("extra")}, "article")
    await flux.git_repository()
    await flux.kustomization(
        "myapp",
        path="./overlays/production",
        healthChecks=[{"kind": "Deployment", "name": "myapp", "namespace": ns}],
    )

    source = await flux.ready("GitRepository", "myapp")
    artifact = source["status"]["artifact"]
    revision = artifact["revision"]
    assert revision.startswith("main@sha1:")
    assert artifact["digest"].startswith("sha256:")
    # The controller serves the artifact it advertises, at the path it advertises.
    async with httpx.AsyncClient() as client:
        got = await client.get(f"{flux.running.url}/{artifact['path']}")
    assert got.status_code == 200, got.text
    assert "sha256:" + hashlib.sha256(got.content).hexdigest() == artifact["digest"]

    ks = await flux.ready("Kustomization", "myapp", revision=revision)
    assert condition(ks)["message"] == f"Applied revision: {revision}"
    assert condition(ks, "Healthy")["status"] == "True"
    live = await flux.get("apps/v1", "Deployment", "myapp")
    assert live is not None
    labels = live["metadata"]["labels"]
    assert (labels[FLUX_NAME], labels[FLUX_NAMESPACE], labels["env"]) == ("myapp", ns, "production")
    assert "kustomize-controller" in {m["manager"] for m in live["metadata"]["managedFields"]}
    assert await flux.configmap("extra") is not None

    # A new commit: extra.yaml removed, another ConfigMap added; the source is asked to
    # reconcile as `flux reconcile source git` asks, and its new artifact wakes the
    # Kustomization.
    second = flux.repo.commit_and_push(
        {
            "overlays/production/extra.yaml": None,
            "overlays/production/kustomization.yaml": overlay(ns, "newer.yaml"),
            "overlays/production/newer.yaml": cm("newer"),
        },
        "swap extra for newer",
    )
    await flux.request_reconcile("GitRepository", "myapp")
    await flux.ready("GitRepository", "myapp", revision=f"main@sha1:{second}")
    ks = await flux.ready("Kustomization", "myapp", revision=f"main@sha1:{second}")
    assert await flux.configmap("extra") is None
    newer = await flux.configmap("newer")
    assert newer is not None
    assert newer["metadata"]["labels"][FLUX_NAME] == "myapp"
    ids = sorted(e["id"] for e in ks["status"]["inventory"]["entries"])
    assert ids == sorted(
        [f"{ns}_myapp_apps_Deployment", f"{ns}_myapp-settings__ConfigMap", f"{ns}_newer__ConfigMap"]
    )
