"""The Flux Kustomization reconciler on the real control plane and the test git server.

Each test writes a GitRepository AND its status (an artifact revision naming a real commit
on the test git server, as source-controller would publish it), so the Kustomization
reconciler is tested alone; it fetches that commit itself. The reconciler is called
directly, one pass at a time, as the controller registry will call it. Every object lives
in the test's namespace (the article's ``flux-system`` and ``myapp`` namespaces become it).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.flux_kustomization_reconciler import FINALIZER, KustomizationReconciler
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from gitsail.render import Renderer
from gitsail.source import GitSource
from gitsail.sync import ArgoTracking
from tests.integration.conftest import GIT_USER

pytestmark = pytest.mark.integration

KS = "kustomize.toolkit.fluxcd.io/v1"
GR = "source.toolkit.fluxcd.io/v1"


@pytest.fixture
async def ks_kube(cluster: Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await install_crds(kube)  # Flux and Argo CD CRDs (idempotent)
        yield kube


@pytest.fixture
def ks_reconciler(ks_kube: Kube, tmp_path: Path) -> KustomizationReconciler:
    return KustomizationReconciler(
        ks_kube,
        git=GitSource(tmp_path / "source-cache", timeout=30),
        renderer=Renderer(work_dir=tmp_path / "render"),
        poll_interval=0.2,
    )


class Flux:
    """Writes Flux objects into one namespace and runs reconcile passes."""

    def __init__(
        self, kube: Kube, reconciler: KustomizationReconciler, namespace: str, repo_url: str
    ) -> None:
        self.kube = kube
        self.reconciler = reconciler
        self.ns = namespace
        self.repo_url = repo_url

    async def credentials(self) -> None:
        user, password = GIT_USER
        await self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "git-auth", "namespace": self.ns},
                "stringData": {"username": user, "password": password},
            },
            field_manager="test",
        )

    async def git_repository(
        self, name: str, sha: str | None, *, url: str = "", **spec: Any
    ) -> None:
        await self.kube.apply(
            {
                "apiVersion": GR,
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {
                    "interval": "1m",
                    "url": url or self.repo_url,
                    "ref": {"branch": "main"},
                    "secretRef": {"name": "git-auth"},
                    **spec,
                },
            },
            field_manager="test",
        )
        if sha is not None:
            await self.publish(name, sha)

    async def publish(self, name: str, sha: str) -> None:
        """Write the artifact source-controller would publish for commit ``sha``."""
        artifact = {
            "path": f"gitrepository/{self.ns}/{name}/{sha}.tar.gz",
            "url": f"http://source-controller.invalid/gitrepository/{self.ns}/{name}/{sha}.tar.gz",
            "revision": f"main@sha1:{sha}",
            "digest": "sha256:" + "0" * 64,
            "lastUpdateTime": "2026-01-01T00:00:00Z",
            "size": 1,
        }
        await self.kube.merge_patch(
            GR,
            "GitRepository",
            name,
            {"status": {"artifact": artifact, "observedGeneration": 1}},
            self.ns,
            subresource="status",
        )

    async def kustomization(self, name: str, **spec: Any) -> Obj:
        body = {
            "apiVersion": KS,
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "interval": "10m",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                **spec,
            },
        }
        return await self.kube.apply(body, field_manager="test", force=True)

    async def reconcile(self, name: str) -> tuple[float | None, Obj]:
        obj = await self.get(name)
        after = await self.reconciler.reconcile(obj, ())
        return after, await self.get(name)

    async def get(self, name: str) -> Obj:
        obj = await self.kube.get(KS, "Kustomization", name, self.ns)
        assert obj is not None
        return obj

    async def configmap(self, name: str) -> Obj | None:
        return await self.kube.get("v1", "ConfigMap", name, self.ns)


@pytest.fixture
async def flux(
    ks_kube: Kube,
    ks_reconciler: KustomizationReconciler,
    namespace: str,
    git_server: GitServer,
    git_repo: Workdir,
    request: pytest.FixtureRequest,
) -> Flux:
    name = git_repo.remote.rstrip("/").rsplit("/", 1)[-1]
    env = Flux(ks_kube, ks_reconciler, namespace, git_server.url(name))
    await env.credentials()
    return env


def ready(obj: Obj) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def cm(name: str, namespace: str = "", **data: str) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    body = "".join(f"\n  {k}: {v!r}" for k, v in (data or {"name": name}).items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{ns}\ndata:{body}\n"


def deployment(name: str, namespace: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
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


# -- the article ----------


async def test_article_kustomization_with_health_checks_becomes_ready(
    flux: Flux, git_repo: Workdir
) -> None:
    ns = flux.ns
    sha = git_repo.commit_and_push(
        {
            "base/kustomization.yaml": "resources: [deployment.yaml]\n",
            "base/deployment.yaml": deployment("myapp", ns),
            "overlays/production/kustomization.yaml": (
                "resources: [../../base]\nlabels:\n  - pairs: {env: production}\n"
            ),
        },
        "article layout",
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "myapp",
        path="./overlays/production",
        healthChecks=[{"kind": "Deployment", "name": "myapp", "namespace": ns}],
        timeout="60s",
    )

    after, obj = await flux.reconcile("myapp")

    assert ready(obj)["status"] == "True", obj["status"]
    assert ready(obj)["reason"] == "ReconciliationSucceeded"
    assert ready(obj)["message"] == f"Applied revision: main@sha1:{sha}"
    assert after == 600.0
    status = obj["status"]
    assert status["lastAppliedRevision"] == status["lastAttemptedRevision"] == f"main@sha1:{sha}"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["inventory"] == {"entries": [{"id": f"{ns}_myapp_apps_Deployment", "v": "v1"}]}
    healthy = next(c for c in status["conditions"] if c["type"] == "Healthy")
    assert healthy["status"] == "True"
    [entry] = status["history"]
    assert entry["lastReconciledStatus"] == "ReconciliationSucceeded"
    assert entry["metadata"] == {"revision": f"main@sha1:{sha}"}
    assert entry["digest"].startswith("sha256:")
    assert FINALIZER in obj["metadata"]["finalizers"]
    live = await flux.kube.get("apps/v1", "Deployment", "myapp", ns)
    assert live is not None
    assert live["metadata"]["labels"]["env"] == "production"
    assert live["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "myapp"
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert "kustomize-controller" in managers

    # A second pass with nothing new writes no status (same resourceVersion).
    _, again = await flux.reconcile("myapp")
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


# -- new commits, prune ----------


async def test_new_commit_is_applied_and_prunes_what_was_removed(
    flux: Flux, git_repo: Workdir
) -> None:
    first = git_repo.commit_and_push(
        {"apps/a.yaml": cm("a"), "apps/b.yaml": cm("b"), "apps/README.md": "not yaml"},
        "two",
    )
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("a") is not None
    assert await flux.configmap("b") is not None

    second = git_repo.commit_and_push({"apps/b.yaml": None, "apps/c.yaml": cm("c")}, "swap")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{second}"
    assert await flux.configmap("b") is None
    assert await flux.configmap("c") is not None
    ids = [e["id"] for e in obj["status"]["inventory"]["entries"]]
    assert sorted(ids) == sorted([f"{flux.ns}_a__ConfigMap", f"{flux.ns}_c__ConfigMap"])


async def test_prune_false_keeps_what_was_removed(flux: Flux, git_repo: Workdir) -> None:
    first = git_repo.commit_and_push({"apps/a.yaml": cm("a"), "apps/b.yaml": cm("b")}, "two")
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns, prune=False)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    second = git_repo.commit_and_push({"apps/b.yaml": None}, "remove b")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("b") is not None


async def test_prune_disabled_annotation_keeps_the_object(flux: Flux, git_repo: Workdir) -> None:
    keep = cm("keep").replace(
        "metadata:\n", "metadata:\n  annotations: {kustomize.toolkit.fluxcd.io/prune: disabled}\n"
    )
    first = git_repo.commit_and_push({"apps/a.yaml": cm("a"), "apps/keep.yaml": keep}, "two")
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    second = git_repo.commit_and_push({"apps/keep.yaml": None}, "remove keep")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("keep") is not None


# -- health ----------


async def test_failing_health_check_makes_ready_false_with_the_reason(
    flux: Flux, git_repo: Workdir
) -> None:
    sha = git_repo.commit_and_push({"apps/a.yaml": cm("a")}, "one")
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "apps",
        path="./apps",
        targetNamespace=flux.ns,
        timeout="2s",
        retryInterval="30s",
        healthChecks=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": "missing"}],
    )

    after, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert condition["status"] == "False"
    assert condition["reason"] == "HealthCheckFailed"
    assert "Deployment/missing status: 'NotFound'" in condition["message"]
    assert after == 30.0
    assert obj["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"
    assert "lastAppliedRevision" not in obj["status"]
    assert obj["status"]["inventory"]["entries"]  # applied, just not healthy
    healthy = next(c for c in obj["status"]["conditions"] if c["type"] == "Healthy")
    assert healthy["status"] == "False"


# -- dependsOn ----------


async def test_depends_on_chain_waits_then_proceeds(flux: Flux, git_repo: Workdir) -> None:
    sha = git_repo.commit_and_push({"infra/a.yaml": cm("infra"), "apps/b.yaml": cm("app")}, "x")
    await flux.git_repository("repo", sha)
    await flux.kustomization("infra", path="./infra", targetNamespace=flux.ns)
    await flux.kustomization(
        "apps",
        path="./apps",
        targetNamespace=flux.ns,
        retryInterval="15s",
        dependsOn=[{"name": "infra"}],
    )

    after, obj = await flux.reconcile("apps")
    assert ready(obj)["reason"] == "DependencyNotReady"
    assert ready(obj)["status"] == "False"
    assert after == 15.0
    assert await flux.configmap("app") is None

    _, infra = await flux.reconcile("infra")
    assert ready(infra)["status"] == "True"
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("app") is not None


async def test_depends_on_an_argo_application(flux: Flux, git_repo: Workdir) -> None:
    sha = git_repo.commit_and_push({"apps/b.yaml": cm("app")}, "x")
    await flux.git_repository("repo", sha)
    await flux.kube.apply(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "db", "namespace": flux.ns},
            "spec": {
                "project": "default",
                "source": {"repoURL": flux.repo_url, "path": "db"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": flux.ns},
            },
        },
        field_manager="test",
    )
    await flux.kustomization(
        "apps",
        path="./apps",
        targetNamespace=flux.ns,
        dependsOn=[{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "name": "db"}],
    )

    _, obj = await flux.reconcile("apps")
    assert ready(obj)["reason"] == "DependencyNotReady"
    assert "Application" in ready(obj)["message"]

    await flux.kube.merge_patch(
        "argoproj.io/v1alpha1",
        "Application",
        "db",
        {"status": {"health": {"status": "Healthy"}, "sync": {"status": "Synced"}}},
        flux.ns,  # the Application CRD has no status subresource, as Argo CD's
    )
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]


# -- substitution ----------


async def test_substitution_from_configmap_and_secret(flux: Flux, git_repo: Workdir) -> None:
    manifest = cm("settings", color="${color}", token="${token}", region="${region:=eu-1}")
    sha = git_repo.commit_and_push({"apps/s.yaml": manifest}, "vars")
    await flux.git_repository("repo", sha)
    await flux.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "vars", "namespace": flux.ns},
            "data": {"color": "blue"},
        },
        field_manager="test",
    )
    await flux.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "secret-vars", "namespace": flux.ns},
            "data": {"token": base64.b64encode(b"s3cr3t").decode()},
        },
        field_manager="test",
    )
    await flux.kustomization(
        "apps",
        path="./apps",
        targetNamespace=flux.ns,
        postBuild={
            "substituteFrom": [
                {"kind": "ConfigMap", "name": "vars"},
                {"kind": "Secret", "name": "secret-vars"},
                {"kind": "ConfigMap", "name": "absent", "optional": True},
            ]
        },
    )

    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    live = await flux.configmap("settings")
    assert live is not None
    assert live["data"] == {"color": "blue", "token": "s3cr3t", "region": "eu-1"}


# -- bad input: Ready=False, nothing changed ----------


async def test_undefined_variable_without_default_changes_nothing(
    flux: Flux, git_repo: Workdir
) -> None:
    first = git_repo.commit_and_push({"apps/a.yaml": cm("a", v="one")}, "ok")
    await flux.git_repository("repo", first)
    await flux.kustomization(
        "apps", path="./apps", targetNamespace=flux.ns, postBuild={"substitute": {"x": "1"}}
    )
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    second = git_repo.commit_and_push({"apps/a.yaml": cm("a", v="${undefined}")}, "bad")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "BuildFailed")
    assert "undefined" in condition["message"]
    assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert obj["status"]["lastAttemptedRevision"] == f"main@sha1:{second}"
    live = await flux.configmap("a")
    assert live is not None
    assert live["data"] == {"v": "one"}


async def test_unknown_source_is_reported(flux: Flux) -> None:
    await flux.kustomization(
        "apps", path="./apps", sourceRef={"kind": "GitRepository", "name": "nope"}
    )
    after, obj = await flux.reconcile("apps")
    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "ArtifactFailed")
    assert f"GitRepository/{flux.ns}/nope" in condition["message"]
    assert after == 600.0  # retryInterval defaults to interval


async def test_source_without_artifact_is_retried(flux: Flux) -> None:
    await flux.git_repository("repo", None)
    await flux.kustomization("apps", path="./apps")
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["reason"] == "ArtifactFailed"
    assert ready(obj)["message"] == "Source artifact not found, retrying"


async def test_missing_path_changes_nothing(flux: Flux, git_repo: Workdir) -> None:
    first = git_repo.commit_and_push({"apps/a.yaml": cm("a")}, "one")
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    second = git_repo.commit_and_push({"apps/a.yaml": None, "other/a.yaml": cm("a")}, "move")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "ArtifactFailed")
    assert "kustomization path not found" in condition["message"]
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert await flux.configmap("a") is not None  # never pruned by a failed build


async def test_kustomize_error_changes_nothing(flux: Flux, git_repo: Workdir) -> None:
    first = git_repo.commit_and_push({"apps/a.yaml": cm("a")}, "one")
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    second = git_repo.commit_and_push(
        {"apps/kustomization.yaml": "resources: [missing.yaml]\n"}, "broken"
    )
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "BuildFailed")
    assert "missing.yaml" in condition["message"]
    assert await flux.configmap("a") is not None


# -- Flux's kustomization edits and ignore rules ----------


async def test_flux_edits_and_ignore_rules(flux: Flux, git_repo: Workdir) -> None:
    sha = git_repo.commit_and_push(
        {
            "apps/a.yaml": cm("a"),
            "apps/values.yaml": "replicas: 3\n",  # not Kubernetes YAML: ignored below
            "apps/.sourceignore": "values.yaml\n",
            "apps/.github/workflow.yaml": "on: push\n",  # default exclusion
            "apps/sub/kustomization.yaml": "resources: [b.yaml]\n",
            "apps/sub/b.yaml": cm("b"),
        },
        "edits",
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "apps",
        path="./apps",
        targetNamespace=flux.ns,
        namePrefix="pre-",
        nameSuffix="-suf",
        commonMetadata={"labels": {"team": "core"}, "annotations": {"owner": "me"}},
        patches=[
            {
                "patch": '[{"op": "add", "path": "/data/patched", "value": "yes"}]',
                "target": {"kind": "ConfigMap", "name": "a"},
            }
        ],
    )

    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    a = await flux.configmap("pre-a-suf")
    b = await flux.configmap("pre-b-suf")
    assert a is not None
    assert b is not None
    assert a["data"]["patched"] == "yes"
    assert a["metadata"]["labels"]["team"] == "core"
    assert a["metadata"]["annotations"]["owner"] == "me"


# -- ownership ----------


async def test_an_argo_applications_object_is_never_taken_or_pruned(
    flux: Flux, git_repo: Workdir
) -> None:
    argo = ArgoTracking(f"{flux.ns}_web")
    await flux.kube.apply(
        argo.mark(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "shared", "namespace": flux.ns},
                "data": {"owner": "argo"},
            }
        ),
        field_manager="argocd-controller",
    )
    sha = git_repo.commit_and_push({"apps/a.yaml": cm("a"), "apps/s.yaml": cm("shared")}, "x")
    await flux.git_repository("repo", sha)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)

    _, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "ReconciliationFailed")
    assert "Shared resource" in condition["message"]
    shared = await flux.configmap("shared")
    assert shared is not None
    assert shared["data"] == {"owner": "argo"}
    assert "kustomize.toolkit.fluxcd.io/name" not in (shared["metadata"].get("labels") or {})
    assert await flux.configmap("a") is None  # the dry run failed: nothing was applied

    # Even if a forged inventory names it, it is not this Kustomization's to prune.
    forged = {"entries": [{"id": f"{flux.ns}_shared__ConfigMap", "v": "v1"}]}
    await flux.kube.merge_patch(
        KS,
        "Kustomization",
        "apps",
        {"status": {"inventory": forged}},
        flux.ns,
        subresource="status",
    )
    fixed = git_repo.commit_and_push({"apps/s.yaml": None}, "drop shared")
    await flux.publish("repo", fixed)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("shared") is not None


# -- deletion ----------


async def test_deletion_prunes_the_inventory_and_drops_the_finalizer(
    flux: Flux, git_repo: Workdir
) -> None:
    sha = git_repo.commit_and_push({"apps/a.yaml": cm("a")}, "one")
    await flux.git_repository("repo", sha)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    await flux.kube.delete(KS, "Kustomization", "apps", flux.ns, propagation="Background")
    deleting = await flux.get("apps")
    assert deleting["metadata"]["deletionTimestamp"]
    await flux.reconciler.reconcile(deleting, ())

    assert await flux.configmap("a") is None
    assert await flux.kube.get(KS, "Kustomization", "apps", flux.ns) is None


# -- per-object apply policy, force, wait ------------------------------------------------------


def annotated(text: str, **annotations: str) -> str:
    pairs = ", ".join(f"{k}: {v}" for k, v in annotations.items())
    return text.replace("metadata:\n", f"metadata:\n  annotations: {{{pairs}}}\n", 1)


async def test_ssa_if_not_present_ignore_and_reconcile_disabled(
    flux: Flux, git_repo: Workdir
) -> None:
    key = "kustomize.toolkit.fluxcd.io"
    first = git_repo.commit_and_push(
        {
            "apps/once.yaml": annotated(cm("once", v="git"), **{f"{key}/ssa": "IfNotPresent"}),
            "apps/ignored.yaml": annotated(cm("ignored", v="git"), **{f"{key}/ssa": "Ignore"}),
            "apps/frozen.yaml": cm("frozen", v="git"),
        },
        "policies",
    )
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("once") is not None  # created: it did not exist
    assert await flux.configmap("ignored") is None  # Ignore: never applied

    # Someone edits the objects in the cluster and freezes one of them.
    for name in ("once", "frozen"):
        await flux.kube.merge_patch("v1", "ConfigMap", name, {"data": {"v": "edited"}}, flux.ns)
    await flux.kube.merge_patch(
        "v1",
        "ConfigMap",
        "frozen",
        {"metadata": {"annotations": {f"{key}/reconcile": "disabled"}}},
        flux.ns,
    )
    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    for name in ("once", "frozen"):
        live = await flux.configmap(name)
        assert live is not None
        assert live["data"] == {"v": "edited"}, name
    ids = {e["id"] for e in obj["status"]["inventory"]["entries"]}
    assert {f"{flux.ns}_once__ConfigMap", f"{flux.ns}_frozen__ConfigMap"} <= ids


IMMUTABLE = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fixed\nimmutable: true\ndata:\n"


async def test_force_recreates_an_object_whose_immutable_field_changed(
    flux: Flux, git_repo: Workdir
) -> None:
    first = git_repo.commit_and_push({"apps/fixed.yaml": IMMUTABLE + "  v: one\n"}, "one")
    await flux.git_repository("repo", first)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    before = await flux.configmap("fixed")
    assert before is not None

    second = git_repo.commit_and_push({"apps/fixed.yaml": IMMUTABLE + "  v: two\n"}, "two")
    await flux.publish("repo", second)
    _, obj = await flux.reconcile("apps")
    assert (ready(obj)["status"], ready(obj)["reason"]) == ("False", "ReconciliationFailed")
    assert "immutable" in ready(obj)["message"]

    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns, force=True)
    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    after = await flux.configmap("fixed")
    assert after is not None
    assert after["data"] == {"v": "two"}
    assert after["metadata"]["uid"] != before["metadata"]["uid"]


async def test_wait_checks_every_applied_object(flux: Flux, git_repo: Workdir) -> None:
    sha = git_repo.commit_and_push(
        {"apps/web.yaml": deployment("web", flux.ns), "apps/a.yaml": cm("a")}, "wait"
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns, wait=True)

    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    web = await flux.kube.get("apps/v1", "Deployment", "web", flux.ns)
    assert web is not None
    assert web["status"].get("availableReplicas") == 1


async def test_health_check_expressions_decide_a_kinds_health(
    flux: Flux, git_repo: Workdir
) -> None:
    sha = git_repo.commit_and_push({"apps/a.yaml": cm("a", ready="no")}, "cel")
    await flux.git_repository("repo", sha)
    exprs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "current": "data.ready == 'yes'",
            "failed": "data.ready == 'no'",
        }
    ]
    await flux.kustomization(
        "apps", path="./apps", targetNamespace=flux.ns, wait=True, healthCheckExprs=exprs
    )

    _, obj = await flux.reconcile("apps")

    condition = ready(obj)
    assert (condition["status"], condition["reason"]) == ("False", "HealthCheckFailed")
    assert f"ConfigMap/{flux.ns}/a status: 'Failed'" in condition["message"]

    fixed = git_repo.commit_and_push({"apps/a.yaml": cm("a", ready="yes")}, "ready")
    await flux.publish("repo", fixed)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]


async def test_include_copies_another_repositorys_artifact(
    flux: Flux, git_repo: Workdir, git_server: GitServer
) -> None:
    lib_name = f"lib-{flux.ns}"[:60]
    git_server.create_repo(lib_name)
    lib = Workdir(git_server.url(lib_name, with_credentials=True))
    try:
        lib_sha = lib.commit_and_push({"shared/b.yaml": cm("b"), "other/c.yaml": cm("c")}, "lib")
    finally:
        lib.close()
    await flux.git_repository("lib", lib_sha, url=git_server.url(lib_name))
    sha = git_repo.commit_and_push({"apps/a.yaml": cm("a")}, "main")
    await flux.git_repository(
        "repo",
        sha,
        include=[{"repository": {"name": "lib"}, "fromPath": "shared", "toPath": "apps/lib"}],
    )
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)

    _, obj = await flux.reconcile("apps")

    assert ready(obj)["status"] == "True", obj["status"]
    assert await flux.configmap("a") is not None
    assert await flux.configmap("b") is not None  # from the included repository
    assert await flux.configmap("c") is None  # outside its fromPath
