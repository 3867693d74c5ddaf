"""``gitsail diff kustomization`` and ``gitsail tree kustomization`` as a user runs them,
against the dev control plane and the test git server.

The Kustomizations are set up as in ``flux/test_kustomization.py``: the test writes a
GitRepository with the artifact status source-controller would publish, and runs the
Kustomization reconciler directly for one pass; then it changes the cluster (or a local
directory) by hand and runs the CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kinds.flux_kustomization_reconciler import KustomizationReconciler
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from gitsail.render import Renderer
from gitsail.source import GitSource
from tests.integration.flux.test_kustomization import Flux, cm, ready

pytestmark = pytest.mark.integration

SECRET = "hunter2-original"


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as kube:
        await install_crds(kube)  # Flux and Argo CD CRDs (idempotent)
        yield kube


@pytest.fixture
async def flux(
    api: Kube, namespace: str, git_server: GitServer, git_repo: Workdir, tmp_path: Path
) -> Flux:
    reconciler = KustomizationReconciler(
        api,
        git=GitSource(tmp_path / "source-cache", timeout=30),
        renderer=Renderer(work_dir=tmp_path / "render"),
        poll_interval=0.2,
    )
    name = git_repo.remote.rstrip("/").rsplit("/", 1)[-1]
    env = Flux(api, reconciler, namespace, git_server.url(name))
    await env.credentials()
    return env


async def gitsail(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitsail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1"},
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def secret(name: str, value: str) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n"
        f"type: Opaque\nstringData:\n  password: {value}\n"
    )


async def applied(flux: Flux, git_repo: Workdir, files: dict[str, str | None]) -> Obj:
    """A GitRepository with ``files`` committed, and Kustomization ``apps`` applied from
    ``./apps`` (prune on)."""
    sha = git_repo.commit_and_push(files, "apps")
    await flux.git_repository("repo", sha)
    await flux.kustomization("apps", path="./apps", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]
    return obj


async def versions(api: Kube, ns: str) -> dict[str, str]:
    """resourceVersion of every ConfigMap, Secret and Kustomization in ``ns``."""
    out = {}
    for api_version, kind in (
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ):
        for obj in await api.list(api_version, kind, ns):
            out[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return out


async def test_unchanged_cluster_has_no_diff_and_exits_0(
    cluster: Cluster, flux: Flux, git_repo: Workdir
) -> None:
    await applied(flux, git_repo, {"apps/a.yaml": cm("a", color="blue")})

    code, out, err = await gitsail(cluster, "diff", "kustomization", "apps", "-n", flux.ns)

    assert code == 0, (out, err)
    assert out == ""


async def test_hand_edited_configmap_is_drifted_secret_masked_exit_1_and_nothing_written(
    cluster: Cluster, api: Kube, flux: Flux, git_repo: Workdir
) -> None:
    ns = flux.ns
    await applied(
        flux,
        git_repo,
        {
            "apps/a.yaml": cm("a", color="blue"),
            "apps/b.yaml": cm("b", size="small"),
            "apps/s.yaml": secret("s", SECRET),
        },
    )
    await api.merge_patch("v1", "ConfigMap", "a", {"data": {"color": "green"}}, ns)
    hand_set = base64.b64encode(b"hand-set-value").decode()
    await api.merge_patch("v1", "Secret", "s", {"data": {"password": hand_set}}, ns)
    before = await versions(api, ns)

    code, out, err = await gitsail(cluster, "diff", "kustomization", "apps", "-n", ns)

    assert code == 1, (out, err)
    assert f"► ConfigMap/{ns}/a drifted" in out
    assert "data.color\n  ± value change\n    - green\n    + blue\n" in out
    assert f"ConfigMap/{ns}/b" not in out  # unchanged objects are not listed
    assert f"► Secret/{ns}/s drifted" in out
    assert SECRET not in out
    assert "hand-set-value" not in out
    assert hand_set not in out
    assert base64.b64encode(SECRET.encode()).decode() not in out
    assert await versions(api, ns) == before  # the dry runs wrote nothing

    code, out, err = await gitsail(cluster, "diff", "ks", "apps", "-n", ns, "-o", "json")
    assert code == 1, (out, err)
    changes = {c["object"]: c for c in json.loads(out)}
    assert changes[f"ConfigMap/{ns}/a"] == {
        "object": f"ConfigMap/{ns}/a",
        "action": "drifted",
        "fields": [{"path": "data.color", "live": "green", "desired": "blue"}],
    }
    assert SECRET not in out
    assert "hand-set-value" not in out


async def test_path_builds_the_local_directory_with_the_spec_and_writes_nothing(
    cluster: Cluster, api: Kube, flux: Flux, git_repo: Workdir, tmp_path: Path
) -> None:
    ns = flux.ns
    await applied(
        flux, git_repo, {"apps/a.yaml": cm("a", color="blue"), "apps/b.yaml": cm("b", size="s")}
    )
    local = tmp_path / "apps"
    local.mkdir()
    (local / "a.yaml").write_text(cm("a", color="red"))
    (local / "c.yaml").write_text(cm("c", shape="round"))
    before = await versions(api, ns)

    code, out, err = await gitsail(
        cluster, "diff", "kustomization", "apps", "-n", ns, "--path", str(local), "-o", "yaml"
    )

    assert code == 1, (out, err)
    changes = {c["object"]: c for c in yaml.safe_load(out)}
    assert changes == {
        f"ConfigMap/{ns}/a": {
            "object": f"ConfigMap/{ns}/a",
            "action": "drifted",
            "fields": [{"path": "data.color", "live": "blue", "desired": "red"}],
        },
        # targetNamespace from the spec applies to the local build
        f"ConfigMap/{ns}/c": {"object": f"ConfigMap/{ns}/c", "action": "created"},
        f"ConfigMap/{ns}/b": {"object": f"ConfigMap/{ns}/b", "action": "deleted"},
    }
    assert await versions(api, ns) == before
    assert await flux.configmap("c") is None
    assert sorted(p.name for p in local.iterdir()) == ["a.yaml", "c.yaml"]  # left as it was

    code, out, err = await gitsail(
        cluster, "diff", "kustomization", "apps", "-n", ns, "--path", str(tmp_path / "nope")
    )
    assert code == 2, (out, err)
    assert "not a directory" in err

    code, out, err = await gitsail(cluster, "diff", "kustomization", "nope", "-n", ns)
    assert code == 2, (out, err)
    assert "not found" in err


async def test_deleted_is_only_reported_when_prune_is_on(
    cluster: Cluster, flux: Flux, git_repo: Workdir, tmp_path: Path
) -> None:
    ns = flux.ns
    await applied(flux, git_repo, {"apps/a.yaml": cm("a"), "apps/b.yaml": cm("b")})
    await flux.kustomization("apps", path="./apps", targetNamespace=ns, prune=False)
    local = tmp_path / "apps"
    local.mkdir()
    (local / "a.yaml").write_text(cm("a"))

    code, out, err = await gitsail(
        cluster, "diff", "kustomization", "apps", "-n", ns, "--path", str(local)
    )

    assert (code, out) == (0, ""), err


async def test_tree_lists_the_inventory_with_a_nested_kustomization_under_its_parent(
    cluster: Cluster, flux: Flux, git_repo: Workdir
) -> None:
    ns = flux.ns
    child = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "child", "namespace": ns},
        "spec": {
            "interval": "10m",
            "prune": True,
            "path": "./child",
            "targetNamespace": ns,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
        },
    }
    await applied(
        flux,
        git_repo,
        {
            "apps/a.yaml": cm("a"),
            "apps/child.yaml": yaml.safe_dump(child),
            "child/x.yaml": cm("x"),
        },
    )
    _, obj = await flux.reconcile("child")
    assert ready(obj)["status"] == "True", obj["status"]

    code, out, err = await gitsail(cluster, "tree", "kustomization", "apps", "-n", ns)

    assert code == 0, err
    assert out.splitlines() == [
        f"Kustomization/{ns}/apps",
        f"├── ConfigMap/{ns}/a",
        f"└── Kustomization/{ns}/child",
        f"    └── ConfigMap/{ns}/x",
    ]

    code, out, err = await gitsail(cluster, "tree", "ks", "apps", "-n", ns, "-o", "json")
    assert code == 0, err
    tree = json.loads(out)
    assert tree["resource"] == {
        "Namespace": ns,
        "Name": "apps",
        "GroupKind": {"Group": "kustomize.toolkit.fluxcd.io", "Kind": "Kustomization"},
    }
    nested = next(r for r in tree["resources"] if r["resource"]["Name"] == "child")
    assert [r["resource"]["Name"] for r in nested["resources"]] == ["x"]

    code, _, err = await gitsail(cluster, "tree", "kustomization", "nope", "-n", ns)
    assert code == 1
    assert "not found" in err
