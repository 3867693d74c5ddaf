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
from collections.abc import AsyncIterator
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
    app_status,
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

    async def ready(self, kind: str, name: str, *, revision: str = "", within: float = 60) -> Obj:
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

        return await eventually(probe, timeout=within, what=f"{kind} {name} Ready {revision}")

    async def failed(self, name: str, reason: str, message: str = "") -> dict[str, Any]:
        """The Kustomization's Ready condition once it is False for ``reason`` (with a
        message starting with ``message``, when given)."""

        async def probe() -> dict[str, Any] | None:
            ready = condition(await self.get(KS, "Kustomization", name))
            if (ready.get("status"), ready.get("reason")) != ("False", reason):
                return None
            return ready if str(ready.get("message", "")).startswith(message) else None

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
    await eventually(lambda: _true(running.controller.leading.is_set()), timeout=20, what="leading")
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
    # Kustomization. Polls may answer from refs remembered for a few seconds; make that
    # certain here: a request must ask the git server all the same.
    flux.running.controller.engine.git.refs_ttl = 300
    second = flux.repo.commit_and_push(
        {
            "overlays/production/extra.yaml": None,
            "overlays/production/kustomization.yaml": overlay(ns, "newer.yaml"),
            "overlays/production/newer.yaml": cm("newer"),
        },
        "swap extra for newer",
    )
    await flux.request_reconcile("GitRepository", "myapp")
    # Well within the 1m interval: the request, not a poll, brought the new commit.
    await flux.ready("GitRepository", "myapp", revision=f"main@sha1:{second}", within=20)
    ks = await flux.ready("Kustomization", "myapp", revision=f"main@sha1:{second}", within=20)
    assert await flux.configmap("extra") is None
    newer = await flux.configmap("newer")
    assert newer is not None
    assert newer["metadata"]["labels"][FLUX_NAME] == "myapp"
    ids = sorted(e["id"] for e in ks["status"]["inventory"]["entries"])
    assert ids == sorted(
        [f"{ns}_myapp_apps_Deployment", f"{ns}_myapp-settings__ConfigMap", f"{ns}_newer__ConfigMap"]
    )


# -- a Receiver push, prune: false ---------------------------------------------------------


async def test_a_receiver_push_applies_the_new_commit_and_prune_false_keeps_what_went(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    first = flux.repo.commit_and_push(
        {
            "pruned/a.yaml": cm("pruned-a"),
            "pruned/b.yaml": cm("pruned-b"),
            "kept/a.yaml": cm("kept-a"),
            "kept/b.yaml": cm("kept-b"),
        },
        "two directories",
    )
    await flux.git_repository()
    await flux.kustomization("pruned", path="./pruned", targetNamespace=ns)
    await flux.kustomization("kept", path="./kept", targetNamespace=ns, prune=False)
    for name in ("pruned", "kept"):
        await flux.ready("Kustomization", name, revision=f"main@sha1:{first}")
    token = "receiver-token-0123456789"
    await flux.api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "webhook-token", "namespace": ns},
            "stringData": {"token": token},
        }
    )
    await flux.api.create(
        {
            "apiVersion": RECEIVER,
            "kind": "Receiver",
            "metadata": {"name": "git-push", "namespace": ns},
            "spec": {
                "type": "generic",
                "secretRef": {"name": "webhook-token"},
                "resources": [{"kind": "GitRepository", "name": "myapp"}],
            },
        }
    )

    async def receiver_path() -> str | None:
        obj = await flux.get(RECEIVER, "Receiver", "git-push")
        if condition(obj).get("status") != "True":
            return None
        return str((obj or {})["status"]["webhookPath"])

    path = await eventually(receiver_path, timeout=30, what="Receiver Ready")
    assert path == "/hook/" + hashlib.sha256(f"{token}git-push{ns}".encode()).hexdigest()

    second = flux.repo.commit_and_push({"pruned/b.yaml": None, "kept/b.yaml": None}, "remove b")

    async def delivered() -> httpx.Response | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{flux.running.url}{path}", content=b"{}")
        return answer if answer.status_code != 503 else None  # 503: watches not listed yet

    answer = await delivered() or await eventually(delivered, timeout=20, what="hook answered")
    assert answer.status_code == 200, answer.text
    for name in ("pruned", "kept"):
        await flux.ready("Kustomization", name, revision=f"main@sha1:{second}")
    assert await flux.configmap("pruned-b") is None
    assert await flux.configmap("pruned-a") is not None
    assert await flux.configmap("kept-b") is not None  # prune: false


# -- dependsOn ------------------------------------------------------------------------------


async def test_depends_on_waits_for_a_kustomization_and_an_application_then_proceeds(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    sha = flux.repo.commit_and_push(
        {"app/all.yaml": cm("argo-cm"), "first/a.yaml": cm("first"), "last/a.yaml": cm("last")},
        "three deliveries",
    )
    await flux.git_repository()
    # Retried only after 5 minutes: what wakes "last" sooner is its dependencies turning
    # Ready (the controller's dependency index).
    await flux.kustomization(
        "last",
        path="./last",
        targetNamespace=ns,
        retryInterval="5m",
        dependsOn=[{"name": "first"}, {"kind": "Application", "name": "argo"}],
    )
    waiting = await flux.failed("last", "DependencyNotReady")
    assert waiting["message"].startswith(f"dependency Kustomization '{ns}/first' not found")
    assert await flux.configmap("last") is None

    await flux.kustomization("first", path="./first", targetNamespace=ns)
    await flux.ready("Kustomization", "first", revision=f"main@sha1:{sha}")

    async def waits_for_the_application() -> dict[str, Any] | None:
        ready = condition(await flux.get(KS, "Kustomization", "last"))
        return ready if "Application" in ready.get("message", "") else None

    waiting = await eventually(waits_for_the_application, timeout=30, what="last waits for argo")
    assert waiting["message"].startswith(f"dependency Application '{ns}/argo' not found")
    assert await flux.configmap("last") is None

    await create_app(flux.api, ns, "argo", flux.url, path="app", syncPolicy=AUTOMATED)
    await flux.ready("Kustomization", "last", revision=f"main@sha1:{sha}")
    assert await flux.configmap("last") is not None
    app = await flux.get("argoproj.io/v1alpha1", "Application", "argo")
    status = (app or {}).get("status") or {}
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")


# -- suspend / resume through the CLI -------------------------------------------------------


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


async def test_suspend_stops_applying_and_resume_applies_what_came_meanwhile(
    flux: FluxEnv, cluster: Cluster
) -> None:
    ns = flux.ns
    first = flux.repo.commit_and_push({"app/a.yaml": cm("one")}, "one")
    await flux.git_repository()
    await flux.kustomization("app", path="./app", targetNamespace=ns)
    await flux.ready("Kustomization", "app", revision=f"main@sha1:{first}")

    code, out, err = await gitsail(cluster, "suspend", "kustomization", "app", "-n", ns)
    assert code == 0, err
    ks = await flux.get(KS, "Kustomization", "app")
    assert (ks or {})["spec"]["suspend"] is True

    passes = flux.record("Kustomization")
    second = flux.repo.commit_and_push({"app/b.yaml": cm("two")}, "two")
    await flux.request_reconcile("GitRepository", "myapp")
    await flux.ready("GitRepository", "myapp", revision=f"main@sha1:{second}")

    # The new artifact woke the suspended Kustomization, which did nothing.
    async def woken() -> bool:
        return any(r.startswith("ready:GitRepository") for rs in passes.of("app") for r in rs)

    await eventually(woken, timeout=20, what="the new artifact waking the Kustomization")
    ks = await flux.get(KS, "Kustomization", "app")
    assert (ks or {})["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert await flux.configmap("two") is None

    code, out, err = await gitsail(cluster, "resume", "kustomization", "app", "-n", ns)
    assert code == 0, err
    assert second in out
    await flux.ready("Kustomization", "app", revision=f"main@sha1:{second}")
    assert await flux.configmap("two") is not None


# -- drift ----------------------------------------------------------------------------------


async def test_drift_by_hand_is_healed_within_seconds_by_the_managed_object_watch(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    sha = flux.repo.commit_and_push(
        {"app/deploy.yaml": deployment("web"), "app/settings.yaml": cm("settings", color="blue")},
        "web",
    )
    await flux.git_repository()
    # interval 10m: only the watch of the applied objects can heal within the deadline.
    await flux.kustomization("web", path="./app", targetNamespace=ns)
    await flux.ready("Kustomization", "web", revision=f"main@sha1:{sha}")

    await flux.api.merge_patch(
        "apps/v1", "Deployment", "web", {"spec": {"replicas": 3}}, ns, field_manager="kubectl"
    )
    await flux.api.merge_patch(
        "v1", "ConfigMap", "settings", {"data": {"color": "red"}}, ns, field_manager="kubectl"
    )

    async def healed() -> bool:
        web = await flux.get("apps/v1", "Deployment", "web")
        settings = await flux.configmap("settings")
        return (web or {})["spec"]["replicas"] == 1 and (settings or {})["data"]["color"] == "blue"

    await eventually(healed, timeout=20, what="the Deployment and ConfigMap healed")


# -- Argo CD and Flux side by side ----------------------------------------------------------


async def test_an_application_and_a_kustomization_never_take_each_others_objects(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    first = flux.repo.commit_and_push(
        {
            "flux/flux-first.yaml": cm("flux-first", by="flux"),
            "argo/argo-first.yaml": cm("argo-first", by="argo"),
        },
        "one object each",
    )
    await flux.git_repository()
    await flux.kustomization("flux", path="./flux", targetNamespace=ns)
    await create_app(flux.api, ns, "argo", flux.url, path="argo", syncPolicy=AUTOMATED)
    await flux.ready("Kustomization", "flux", revision=f"main@sha1:{first}")

    async def app_synced() -> bool:
        status = await app_status(flux.api, ns, "argo")
        return (status.get("sync") or {}).get("status") == "Synced"

    await eventually(app_synced, timeout=60, what="the Application synced")

    # Each now wants the other's object too; both are refused, naming the owner.
    second = flux.repo.commit_and_push(
        {
            "flux/argo-first.yaml": cm("argo-first", by="flux"),
            "argo/flux-first.yaml": cm("flux-first", by="argo"),
        },
        "each wants the other's",
    )
    await flux.request_reconcile("GitRepository", "myapp")
    await flux.api.merge_patch(
        "argoproj.io/v1alpha1",
        "Application",
        "argo",
        {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
        ns,
    )
    failed = await flux.failed("flux", "ReconciliationFailed")
    assert "Shared resource found: ConfigMap/argo-first" in failed["message"], failed
    assert f"application {ns}/argo" in failed["message"], failed

    async def app_refused() -> str | None:
        status = await app_status(flux.api, ns, "argo")
        errors = [c for c in status.get("conditions") or [] if c.get("type") == "SyncError"]
        return next((str(c["message"]) for c in errors if "flux-first" in c["message"]), None)

    message = await eventually(app_refused, timeout=60, what="the Application refused")
    assert "Shared resource found: ConfigMap/flux-first" in message, message
    assert f"Kustomization {ns}/flux" in message, message

    ks = await flux.get(KS, "Kustomization", "flux")
    assert (ks or {})["status"]["lastAttemptedRevision"] == f"main@sha1:{second}"
    flux_first = await flux.configmap("flux-first")
    argo_first = await flux.configmap("argo-first")
    assert flux_first is not None
    assert argo_first is not None
    assert flux_first["data"] == {"by": "flux"}
    assert flux_first["metadata"]["labels"][FLUX_NAME] == "flux"
    assert "argocd.argoproj.io/tracking-id" not in (flux_first["metadata"].get("annotations") or {})
    assert argo_first["data"] == {"by": "argo"}
    assert FLUX_NAME not in (argo_first["metadata"].get("labels") or {})


# -- bad input -------------------------------------------------------------------------------


async def test_bad_input_is_ready_false_with_a_clear_reason_and_changes_nothing(
    flux: FluxEnv,
) -> None:
    ns = flux.ns
    flux.repo.commit_and_push(
        {"subst/a.yaml": cm("subst-a", greeting="hello ${name}")}, "needs a variable"
    )
    await flux.git_repository()
    await flux.kustomization(
        "no-source", path="./subst", sourceRef={"kind": "GitRepository", "name": "missing"}
    )
    await flux.kustomization("no-path", path="./does-not-exist")
    await flux.kustomization(
        "undefined", path="./subst", targetNamespace=ns, postBuild={"substitute": {"other": "x"}}
    )

    no_source = await flux.failed("no-source", "ArtifactFailed")
    assert no_source["message"] == f"Source 'GitRepository/{ns}/missing' not found"
    no_path = await flux.failed(
        "no-path", "ArtifactFailed", "kustomization path not found: ./does-not-exist"
    )
    assert "is not a directory in" in no_path["message"]
    undefined = await flux.failed("undefined", "BuildFailed")
    assert "post build substitutions failed" in undefined["message"]
    assert "name" in undefined["message"]

    assert await flux.configmap("subst-a") is None
    labelled = await flux.api.list("v1", "ConfigMap", ns, label_selector=FLUX_NAME)
    assert labelled == []
