"""Issue 7's classes of bug, looked for again in the Flux kinds (real cluster, real git).

- A password written into a GitRepository's ``spec.url`` is used for the fetch and never
  shown: not in the conditions of a failed fetch (a commit outside its branch, a server that
  hangs past ``spec.timeout``), nor in a Kustomization's "path not found".
- A Kustomization whose kustomization.yaml names a remote base, or reaches outside the
  repository behind an unknown tag, is refused before kustomize runs, and what it applied
  before is not pruned (a failed build never prunes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gitsail.dev.gitserver import Workdir, git
from gitsail.source import redact_url
from tests.integration.conftest import GIT_USER
from tests.integration.flux.test_gitrepository import (
    MANIFESTS,
    Harness,
    article,
    condition,
    harness,
    store,
)
from tests.integration.flux.test_kustomization import Flux, cm, flux, ks_kube, ks_reconciler, ready
from tests.integration.helpers import StallingServer

__all__ = ["flux", "harness", "ks_kube", "ks_reconciler", "store"]  # fixtures, for pytest

pytestmark = pytest.mark.integration

PASSWORD = GIT_USER[1]


async def test_a_commit_outside_its_branch_is_reported_without_the_urls_password(
    harness: Harness, git_repo: Workdir
) -> None:
    git_repo.commit_and_push(MANIFESTS, "on both branches")
    git("push", "--quiet", "origin", "HEAD:refs/heads/release", cwd=git_repo.path)
    only_main = git_repo.commit_and_push({"extra.yaml": "kind: ConfigMap\n"}, "main only")
    obj = article(git_repo.remote)  # http://user:password@host/repo.git
    obj["spec"]["ref"] = {"branch": "release", "commit": only_main}
    await harness.apply(obj)

    _, failed = await harness.reconcile()

    ready = condition(failed, "Ready")
    assert ready["status"] == "False"
    assert (
        f"is not in branch release (spec.ref.branch) of {redact_url(git_repo.remote)}"
        in (ready["message"])
    )
    assert PASSWORD not in json.dumps(failed["status"])


@pytest.fixture
def hanging() -> Iterator[StallingServer]:
    server = StallingServer()
    yield server
    server.close()


async def test_a_fetch_that_times_out_is_reported_without_the_urls_password(
    harness: Harness, hanging: StallingServer
) -> None:
    url = f"http://{GIT_USER[0]}:{PASSWORD}@127.0.0.1:{hanging.port}/hangs.git"
    obj: dict[str, Any] = article(url)
    obj["spec"]["timeout"] = "2s"
    await harness.apply(obj)

    delay, failed = await harness.reconcile()

    assert delay is not None  # retried
    ready = condition(failed, "Ready")
    assert "timed out after 2s" in ready["message"]
    assert f"http://127.0.0.1:{hanging.port}/hangs.git" in ready["message"]
    assert PASSWORD not in json.dumps(failed["status"])


@pytest.mark.parametrize(
    "kustomization",
    [
        "resources:\n- cm.yaml\n- https://github.com/kubernetes-sigs/kustomize//examples/"
        "helloWorld?ref=v3.3.1\n",
        "namePrefix: !foo x\nresources:\n- cm.yaml\n- " + "../" * 12 + "tmp\n",
    ],
    ids=["remote-base", "unknown-tag-escape"],
)
async def test_a_kustomization_reaching_outside_is_refused_and_prunes_nothing(
    flux: Flux, git_repo: Workdir, kustomization: str
) -> None:
    sha = git_repo.commit_and_push(
        {"app/kustomization.yaml": "resources: [cm.yaml]\n", "app/cm.yaml": cm("kept", flux.ns)},
        "v1",
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization("app", path="./app")
    _, good = await flux.reconcile("app")
    assert ready(good)["status"] == "True", ready(good)
    kept = await flux.configmap("kept")
    assert kept is not None

    sha = git_repo.commit_and_push({"app/kustomization.yaml": kustomization}, "reach outside")
    await flux.publish("repo", sha)
    _, refused = await flux.reconcile("app")

    message = ready(refused)["message"]
    assert ready(refused)["status"] == "False"
    assert "remote reference" in message or "outside the repository" in message, message
    live = await flux.configmap("kept")
    assert live is not None
    assert live["metadata"]["uid"] == kept["metadata"]["uid"]
    assert "deletionTimestamp" not in live["metadata"]


async def test_a_missing_path_names_the_repository_without_its_password(
    flux: Flux, git_repo: Workdir
) -> None:
    sha = git_repo.commit_and_push({"app/cm.yaml": cm("c")}, "v1")
    await flux.git_repository("repo", sha, url=git_repo.remote)  # user:password@host
    await flux.kustomization("app", path="./no/such/dir")

    _, failed = await flux.reconcile("app")

    assert ready(failed)["status"] == "False"
    assert "no/such/dir" in ready(failed)["message"]
    assert PASSWORD not in json.dumps(failed["status"])
