"""Flux's GitRepository on the real control plane: the reconciler is called directly (the
controller's registry of kinds calls it the same way), git is the real git against the test
servers, and the artifact is downloaded over real HTTP from the URL written in status.

The article's GitRepository is applied as written, with its URL pointed at the test server
and its namespace replaced by the test's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from starlette.applications import Starlette

from gitsail.controller.artifacts_http import artifact_routes
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.flux_gitrepository_reconciler import FINALIZER, GitRepositoryReconciler
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.source import GitSource
from gitsail.source.artifacts import ArtifactStore
from tests.integration.conftest import GIT_USER
from tests.integration.source.conftest import SSHServer

pytestmark = pytest.mark.integration

GROUP_VERSION = "source.toolkit.fluxcd.io/v1"

# From the article ("Flux", kubernetes-gitops-delivery.md), verbatim.
ARTICLE = """\
# Source: where to get manifests
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: myapp
  namespace: flux-system
spec:
  interval: 1m
  url: https://github.com/myorg/myapp-manifests
  ref:
    branch: main
"""

MANIFESTS = {
    "overlays/production/kustomization.yaml": "resources: [deployment.yaml]\n",
    "overlays/production/deployment.yaml": "kind: Deployment\nmetadata: {name: myapp}\n",
    ".github/workflows/ci.yml": "on: push\n",
    "docs/diagram.png": "not really a png",
}
PUBLISHED = {"overlays/production/kustomization.yaml", "overlays/production/deployment.yaml"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ArtifactStore]:
    """An artifact store served by a real HTTP server on loopback, at its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    artifacts = ArtifactStore(tmp_path / "artifacts", base_url=f"http://127.0.0.1:{port}")
    app = Starlette(routes=artifact_routes(artifacts))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:
        assert asyncio.get_running_loop().time() < deadline, "artifact server did not start"
        await asyncio.sleep(0.01)
    yield artifacts
    server.should_exit = True
    await task
    sock.close()


@dataclass
class Harness:
    kube: Kube
    reconciler: GitRepositoryReconciler
    namespace: str

    async def apply(self, obj: Obj) -> Obj:
        obj["metadata"]["namespace"] = self.namespace
        return await self.kube.apply(obj, field_manager="kubectl")

    async def get(self, name: str = "myapp") -> Obj | None:
        return await self.kube.get(GROUP_VERSION, "GitRepository", name, self.namespace)

    async def reconcile(self, name: str = "myapp") -> tuple[float | None, Obj]:
        obj = await self.get(name)
        assert obj is not None
        delay = await self.reconciler.reconcile(obj, frozenset({"test"}))
        after = await self.get(name)
        assert after is not None
        return delay, after

    async def patch_spec(self, spec: dict[str, Any], name: str = "myapp") -> None:
        await self.kube.merge_patch(
            GROUP_VERSION, "GitRepository", name, {"spec": spec}, self.namespace
        )


@pytest.fixture
def harness(flux_kube: Kube, store: ArtifactStore, namespace: str, tmp_path: Path) -> Harness:
    git = GitSource(tmp_path / "cache", timeout=30, policy=Policy(repo_access_ttl=0))
    return Harness(flux_kube, GitRepositoryReconciler(flux_kube, git, store), namespace)


def article(url: str) -> Obj:
    obj: Obj = yaml.safe_load(ARTICLE)
    obj["spec"]["url"] = url
    return obj


def condition(obj: Obj, ctype: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == ctype:
            return dict(cond)
    raise AssertionError(f"no {ctype} condition in {obj.get('status')}")


def has_condition(obj: Obj, ctype: str) -> bool:
    return any(c["type"] == ctype for c in obj.get("status", {}).get("conditions", []))


async def download(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


def names_in(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return set(tar.getnames())


async def test_the_articles_gitrepository_becomes_ready_and_its_artifact_is_served(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    sha = work.commit_and_push(MANIFESTS, "manifests")
    await harness.apply(article(url))
    delay, obj = await harness.reconcile()
    assert delay == 60.0
    status = obj["status"]
    artifact = status["artifact"]
    assert artifact["revision"] == f"main@sha1:{sha}"
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert ready["message"] == f"stored artifact for revision 'main@sha1:{sha}'"
    assert ready["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "ArtifactInStorage")["status"] == "True"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert FINALIZER in obj["metadata"]["finalizers"]

    data = await download(artifact["url"])
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == artifact["digest"]
    assert len(data) == artifact["size"]
    assert names_in(data) == PUBLISHED  # .github/ and *.png are Flux's default exclusions

    # Nothing changed: no status write (the resourceVersion stays).
    _, again = await harness.reconcile()
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


async def test_a_new_commit_moves_the_artifact_revision(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    work.commit_and_push(MANIFESTS, "manifests")
    await harness.apply(article(url))
    _, first = await harness.reconcile()
    sha = work.commit_and_push({"overlays/production/extra.yaml": "kind: ConfigMap\n"}, "more")
    _, second = await harness.reconcile()
    assert second["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    assert second["status"]["artifact"]["digest"] != first["status"]["artifact"]["digest"]
    data = await download(second["status"]["artifact"]["url"])
    assert "overlays/production/extra.yaml" in names_in(data)


async def test_tag_and_semver_references(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    v1 = work.commit_and_push(MANIFESTS, "v1")
    work.tag("v1.0.0")
    v11 = work.commit_and_push({"README.md": "1.1\n"}, "v1.1")
    work.tag("v1.1.0")
    work.commit_and_push({"README.md": "2\n"}, "v2")
    work.tag("v2.0.0")
    work.push(tags=True)
    tagged = article(url)
    tagged["spec"]["ref"] = {"tag": "v1.0.0"}
    await harness.apply(tagged)
    _, obj = await harness.reconcile()
    assert obj["status"]["artifact"]["revision"] == f"v1.0.0@sha1:{v1}"
    await harness.patch_spec({"ref": {"tag": None, "semver": ">=1.0.0 <2.0.0"}})
    _, obj = await harness.reconcile()
    assert obj["status"]["artifact"]["revision"] == f"v1.1.0@sha1:{v11}"
    assert condition(obj, "Ready")["status"] == "True"


async def test_a_wrong_branch_is_not_ready_with_a_reason_and_keeps_the_last_artifact(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    work.commit_and_push(MANIFESTS, "manifests")
    await harness.apply(article(url))
    _, good = await harness.reconcile()
    await harness.patch_spec({"ref": {"branch": "does-not-exist"}})
    delay, bad = await harness.reconcile()
    assert delay is not None
    assert delay < 60.0  # retried with backoff, sooner than the interval
    ready = condition(bad, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "GitOperationFailed")
    assert "does-not-exist" in ready["message"]
    assert condition(bad, "FetchFailed")["status"] == "True"
    assert condition(bad, "Reconciling")["reason"] == "ProgressingWithRetry"
    assert bad["status"]["artifact"] == good["status"]["artifact"]
    assert bad["status"]["observedGeneration"] == good["status"]["observedGeneration"]
    await download(bad["status"]["artifact"]["url"])  # still served

    await harness.patch_spec({"ref": {"branch": "main"}})
    _, fixed = await harness.reconcile()
    assert condition(fixed, "Ready")["status"] == "True"
    assert not has_condition(fixed, "FetchFailed")
    assert not has_condition(fixed, "Reconciling")


async def test_a_private_repository_needs_its_secret_ref(
    harness: Harness, git_server: GitServer, git_repo: Workdir
) -> None:
    sha = git_repo.commit_and_push(MANIFESTS, "manifests")
    url = git_server.url(git_repo.remote.rsplit("/", 1)[-1])  # without credentials
    await harness.apply(article(url))
    delay, refused = await harness.reconcile()
    assert delay is not None
    assert delay < 60.0
    assert condition(refused, "Ready")["reason"] == "AuthenticationFailed"
    assert "artifact" not in refused["status"]

    user, password = GIT_USER
    await harness.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "basic-access-auth", "namespace": harness.namespace},
            "type": "Opaque",
            "stringData": {"username": user, "password": password},
        },
        field_manager="kubectl",
    )
    await harness.patch_spec({"secretRef": {"name": "basic-access-auth"}})
    _, obj = await harness.reconcile()
    assert condition(obj, "Ready")["status"] == "True"
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    assert password not in str(obj)


async def test_an_ssh_secret_brings_its_own_known_hosts(
    harness: Harness, sshd: SSHServer, ssh_repo: tuple[str, Workdir]
) -> None:
    url, work = ssh_repo
    sha = work.commit_and_push(MANIFESTS, "manifests")
    await harness.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ssh-credentials", "namespace": harness.namespace},
            "type": "Opaque",
            "stringData": {"identity": sshd.client_key, "known_hosts": sshd.known_hosts},
        },
        field_manager="kubectl",
    )
    repo = article(url)
    repo["spec"]["secretRef"] = {"name": "ssh-credentials"}
    await harness.apply(repo)
    _, obj = await harness.reconcile()
    assert condition(obj, "Ready")["status"] == "True", obj["status"]
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{sha}"


async def test_suspend_stops_and_resume_restarts_the_artifact(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    work.commit_and_push(MANIFESTS, "manifests")
    await harness.apply(article(url))
    _, before = await harness.reconcile()
    await harness.patch_spec({"suspend": True})
    sha = work.commit_and_push({"README.md": "new\n"}, "while suspended")
    delay, suspended = await harness.reconcile()
    assert delay is None
    assert suspended["status"] == before["status"]
    await harness.patch_spec({"suspend": None})
    _, resumed = await harness.reconcile()
    assert resumed["status"]["artifact"]["revision"] == f"main@sha1:{sha}"


async def test_a_requested_reconcile_is_acknowledged(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    work.commit_and_push(MANIFESTS, "manifests")
    repo = article(url)
    repo["metadata"]["annotations"] = {"reconcile.fluxcd.io/requestedAt": "1700000000"}
    await harness.apply(repo)
    _, obj = await harness.reconcile()
    assert obj["status"]["lastHandledReconcileAt"] == "1700000000"


async def test_deleting_removes_the_artifact_and_then_the_object(
    harness: Harness, store: ArtifactStore, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    work.commit_and_push(MANIFESTS, "manifests")
    await harness.apply(article(url))
    _, obj = await harness.reconcile()
    path = obj["status"]["artifact"]["path"]
    assert store.exists(path)
    await harness.kube.delete(GROUP_VERSION, "GitRepository", "myapp", harness.namespace)
    deleting = await harness.get()
    assert deleting is not None  # held by the finalizer
    assert deleting["metadata"].get("deletionTimestamp")
    assert await harness.reconciler.reconcile(deleting, frozenset()) is None
    assert not store.exists(path)
    assert FINALIZER not in (await harness.get() or {"metadata": {}})["metadata"].get(
        "finalizers", []
    )
    # The delete was a foreground one: the garbage collector lets the object go.
    deadline = asyncio.get_running_loop().time() + 30
    while await harness.get() is not None:
        assert asyncio.get_running_loop().time() < deadline, "the object was not deleted"
        await asyncio.sleep(0.2)


async def test_ignore_rules_and_includes_shape_the_artifact(
    harness: Harness, public_repo: tuple[str, Workdir], public_git_server: GitServer
) -> None:
    url, work = public_repo
    work.commit_and_push(
        {**MANIFESTS, ".sourceignore": "docs/\n", "overlays/staging/x.yaml": "kind: X\n"},
        "manifests",
    )
    public_git_server.create_repo("shared-bases")
    shared = Workdir(public_git_server.url("shared-bases"))
    try:
        shared.commit_and_push({"deploy/base/app.yaml": "kind: Base\n"}, "base")
        base = article(public_git_server.url("shared-bases"))
        base["metadata"]["name"] = "shared-bases"
        await harness.apply(base)
        await harness.reconcile("shared-bases")
    finally:
        shared.close()
    repo = article(url)
    repo["spec"]["ignore"] = "/overlays/staging/\n"  # replaces the defaults: .github/ is kept
    repo["spec"]["include"] = [
        {"repository": {"name": "shared-bases"}, "fromPath": "deploy", "toPath": "vendor"}
    ]
    await harness.apply(repo)
    _, obj = await harness.reconcile()
    assert condition(obj, "Ready")["status"] == "True", obj["status"]
    names = names_in(await download(obj["status"]["artifact"]["url"]))
    assert names == {
        *PUBLISHED,
        ".github/workflows/ci.yml",  # kept: spec.ignore replaced the default exclusions
        ".sourceignore",
        "vendor/base/app.yaml",
    }
    assert obj["status"]["observedIgnore"] == "/overlays/staging/\n"
    assert obj["status"]["observedInclude"][0]["toPath"] == "vendor"


async def test_a_commit_with_its_branch_and_one_outside_it(
    harness: Harness, public_repo: tuple[str, Workdir]
) -> None:
    url, work = public_repo
    first = work.commit_and_push(MANIFESTS, "first")
    work.commit_and_push({"README.md": "second\n"}, "second")
    side = Workdir(url, branch="side")
    try:
        outside = side.commit_and_push({"side.yaml": "kind: Side\n"}, "on another branch")
    finally:
        side.close()
    pinned = article(url)
    pinned["spec"]["ref"] = {"branch": "main", "commit": first}
    await harness.apply(pinned)
    _, obj = await harness.reconcile()
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{first}"
    await harness.patch_spec({"ref": {"commit": outside}})
    _, refused = await harness.reconcile()
    ready = condition(refused, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "GitOperationFailed")
    assert f"commit {outside} (spec.ref.commit) is not in branch main" in ready["message"]
    await harness.patch_spec({"ref": {"branch": None}})
    _, bare = await harness.reconcile()
    assert bare["status"]["artifact"]["revision"] == f"sha1:{outside}"
