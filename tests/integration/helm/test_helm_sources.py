"""Flux's HelmRepository and HelmChart on the real control plane, against a real chart
repository on loopback (packages made by the pinned ``helm``) and the real git server.

The reconcilers are called directly, as the controller's registry calls them; artifacts are
downloaded over real HTTP from the URL written in status. The article's HelmRepository is
applied as written (``v1beta2``), with its URL pointed at the test repository and its
namespace replaced by the test's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.dev.chartrepo import ChartRepo, ChartServer, examples_dir
from gitsail.dev.gitserver import Workdir
from gitsail.dev.pki import make_pki
from gitsail.kinds.flux_gitrepository_reconciler import GitRepositoryReconciler
from gitsail.kinds.flux_helmchart_reconciler import HelmChartReconciler
from gitsail.kinds.flux_helmrepository_reconciler import FINALIZER, HelmRepositoryReconciler
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source import GitSource, HelmRepoSource
from gitsail.source.artifacts import ArtifactStore
from tests.integration.flux.conftest import public_git_server, public_repo
from tests.integration.flux.test_gitrepository import condition, download, has_condition, store
from tests.integration.helm.conftest import CHART_USER

__all__ = ["public_git_server", "public_repo", "store"]  # fixtures used here

pytestmark = pytest.mark.integration

SOURCE = "source.toolkit.fluxcd.io/v1"

# From the article ("Flux", kubernetes-gitops-delivery.md), verbatim.
ARTICLE = """\
apiVersion: source.toolkit.fluxcd.io/v1beta2
kind: HelmRepository
metadata:
  name: bitnami
  namespace: flux-system
spec:
  interval: 30m
  url: https://charts.bitnami.com/bitnami
"""


def helm_chart(version: str = "17.x", **spec: Any) -> Obj:
    return {
        "apiVersion": SOURCE,
        "kind": "HelmChart",
        "metadata": {"name": "redis"},
        "spec": {
            "chart": "redis",
            "version": version,
            "interval": "5m",
            "sourceRef": {"kind": "HelmRepository", "name": "bitnami"},
            **spec,
        },
    }


@dataclass
class Harness:
    kube: Kube
    namespace: str
    store: ArtifactStore
    helm: HelmRepoSource
    repos: HelmRepositoryReconciler
    charts: HelmChartReconciler
    git: GitRepositoryReconciler

    async def apply(self, obj: Obj) -> Obj:
        obj["metadata"]["namespace"] = self.namespace
        return await self.kube.apply(obj, field_manager="kubectl")

    async def get(self, kind: str, name: str) -> Obj:
        obj = await self.kube.get(SOURCE, kind, name, self.namespace)
        assert obj is not None, f"{kind} {name} is gone"
        return obj

    async def reconcile(self, kind: str, name: str) -> tuple[float | None, Obj]:
        reconciler = {"HelmRepository": self.repos, "HelmChart": self.charts}.get(kind, self.git)
        delay = await reconciler.reconcile(await self.get(kind, name), frozenset({"test"}))
        return delay, await self.get(kind, name)

    async def secret(self, name: str, data: dict[str, str]) -> None:
        await self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": self.namespace},
                "stringData": data,
            },
            field_manager="kubectl",
        )


def make_harness(
    kube: Kube, namespace: str, store: ArtifactStore, tmp_path: Path, policy: Policy
) -> Harness:
    helm = HelmRepoSource(tmp_path / "cache", timeout=30, policy=policy)
    git = GitSource(tmp_path / "cache", timeout=30, policy=Policy(repo_access_ttl=0))
    return Harness(
        kube,
        namespace,
        store,
        helm,
        HelmRepositoryReconciler(kube, helm, store),
        HelmChartReconciler(kube, helm, store),
        GitRepositoryReconciler(kube, git, store),
    )


@pytest.fixture
def harness(flux_kube: Kube, store: ArtifactStore, namespace: str, tmp_path: Path) -> Harness:
    return make_harness(flux_kube, namespace, store, tmp_path, DEFAULT_POLICY)


def article(url: str) -> Obj:
    obj: Obj = yaml.safe_load(ARTICLE)
    obj["spec"]["url"] = url
    return obj


def package_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[member.name] = extracted.read()
        return out


def chart_yaml(data: bytes, name: str = "redis") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(package_files(data)[f"{name}/Chart.yaml"])
    return loaded


# -- HelmRepository ---------------------------------------------------------------------------


async def test_the_articles_helmrepository_becomes_ready_with_the_index_as_its_artifact(
    harness: Harness, chart_repo: ChartRepo
) -> None:
    stored = await harness.apply(article(chart_repo.url))
    assert stored["apiVersion"] == "source.toolkit.fluxcd.io/v1beta2"
    delay, obj = await harness.reconcile("HelmRepository", "bitnami")

    assert delay == 30 * 60.0  # spec.interval
    status = obj["status"]
    artifact = status["artifact"]
    index = (chart_repo.root / "index.yaml").read_bytes()
    assert artifact["revision"] == chart_repo.index_digest()
    assert artifact["digest"] == f"sha256:{hashlib.sha256(index).hexdigest()}"
    assert artifact["path"].startswith(f"helmrepository/{harness.namespace}/bitnami/")
    assert artifact["path"].endswith(".yaml")
    assert status["url"] == artifact["url"]
    assert await download(artifact["url"]) == index
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert chart_repo.index_digest() in ready["message"]
    assert condition(obj, "ArtifactInStorage")["status"] == "True"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert FINALIZER in obj["metadata"]["finalizers"]

    _, again = await harness.reconcile("HelmRepository", "bitnami")  # nothing changed
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


async def test_an_oci_helmrepository_is_ready_without_an_artifact(harness: Harness) -> None:
    repo = article("oci://127.0.0.1:5000/charts")
    repo["spec"]["type"] = "oci"
    await harness.apply(repo)
    delay, obj = await harness.reconcile("HelmRepository", "bitnami")
    assert delay is None  # not polled
    assert condition(obj, "Ready")["status"] == "True"
    assert "artifact" not in obj["status"]


# -- HelmChart from a HelmRepository ----------------------------------------------------------


async def test_17x_resolves_to_the_highest_stable_17_and_a_new_release_moves_it(
    harness: Harness, chart_repo: ChartRepo
) -> None:
    await harness.apply(article(chart_repo.url))
    await harness.reconcile("HelmRepository", "bitnami")
    await harness.apply(helm_chart("17.x"))
    delay, chart = await harness.reconcile("HelmChart", "redis")

    assert delay == 300.0
    status = chart["status"]
    assert status["artifact"]["revision"] == "17.3.2"  # not 17.4.0-rc.1, not 16.x
    data = await download(status["artifact"]["url"])
    published = (chart_repo.root / "redis-17.3.2.tgz").read_bytes()
    assert data == published  # the package as published, digest checked
    assert status["artifact"]["path"].endswith(".tgz")
    assert status["observedChartName"] == "redis"
    assert status["observedSourceArtifactRevision"] == chart_repo.index_digest()
    ready = condition(chart, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ChartPullSucceeded")
    assert ready["message"] == "pulled 'redis' chart with version '17.3.2'"
    assert harness.helm.stats.index_parses == 1  # the repository's parse served the chart

    chart_repo.publish("17.5.0")
    await harness.reconcile("HelmRepository", "bitnami")
    _, moved = await harness.reconcile("HelmChart", "redis")
    assert moved["status"]["artifact"]["revision"] == "17.5.0"
    assert chart_yaml(await download(moved["status"]["artifact"]["url"]))["version"] == "17.5.0"
    assert moved["status"]["observedSourceArtifactRevision"] == chart_repo.index_digest()
    assert harness.helm.stats.index_parses == 2


async def test_charts_of_one_index_share_one_parse(
    harness: Harness, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    await harness.apply(article(chart_repo.url))
    await harness.reconcile("HelmRepository", "bitnami")
    # A fresh source (a restarted controller): the charts read the stored index, once.
    fresh = make_harness(
        harness.kube, harness.namespace, harness.store, tmp_path / "b", DEFAULT_POLICY
    )
    for name, chart, version in (("a", "redis", "16.x"), ("b", "redis", "*"), ("c", "podinfo", "")):
        obj = helm_chart(version, chart=chart)
        obj["metadata"]["name"] = name
        await fresh.apply(obj)
        _, done = await fresh.reconcile("HelmChart", name)
        assert condition(done, "Ready")["status"] == "True", done["status"]
    assert fresh.helm.stats.index_parses == 1
    assert fresh.helm.stats.index_fetches == 0  # charts never fetch the index themselves
    assert (await fresh.get("HelmChart", "a"))["status"]["artifact"]["revision"] == "16.13.2"
    assert (await fresh.get("HelmChart", "b"))["status"]["artifact"]["revision"] == "17.3.2"
    assert (await fresh.get("HelmChart", "c"))["status"]["artifact"]["revision"] == "6.6.0"


async def test_basic_auth_from_a_secret_and_a_wrong_password_is_a_clear_ready_false(
    harness: Harness, chart_repo_auth: ChartRepo
) -> None:
    user, password = CHART_USER
    await harness.secret("bitnami-auth", {"username": user, "password": password})
    repo = article(chart_repo_auth.url)
    repo["spec"]["secretRef"] = {"name": "bitnami-auth"}
    await harness.apply(repo)
    _, ready = await harness.reconcile("HelmRepository", "bitnami")
    assert condition(ready, "Ready")["status"] == "True"
    await harness.apply(helm_chart("17.x"))
    _, chart = await harness.reconcile("HelmChart", "redis")
    assert chart["status"]["artifact"]["revision"] == "17.3.2"  # the download was authorized

    await harness.secret("bitnami-auth", {"username": user, "password": "wrong"})
    delay, failed = await harness.reconcile("HelmRepository", "bitnami")
    ready_cond = condition(failed, "Ready")
    assert (ready_cond["status"], ready_cond["reason"]) == ("False", "AuthenticationFailed")
    assert "401" in ready_cond["message"]
    assert "wrong" not in ready_cond["message"]
    assert condition(failed, "FetchFailed")["status"] == "True"
    assert failed["status"]["artifact"] == ready["status"]["artifact"]  # the last one is kept
    assert delay is not None
    assert delay < 30 * 60.0


async def test_tls_from_cert_secret_ref_with_a_ca_and_a_client_certificate(
    harness: Harness, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki", cluster_name="charts")
    ca = pki.ca_cert.read_text()
    client = {"tls.crt": pki.admin_cert.read_text(), "tls.key": pki.admin_key.read_text()}
    with ChartServer(tls=(pki.serving_cert, pki.serving_key), client_ca=pki.ca_cert) as server:
        chart_repo = server.repository("tls")
        assert chart_repo.url.startswith("https://127.0.0.1:")
        await harness.secret("repo-tls", {"ca.crt": ca, **client})
        repo = article(chart_repo.url)
        repo["spec"]["certSecretRef"] = {"name": "repo-tls"}
        await harness.apply(repo)
        _, ready = await harness.reconcile("HelmRepository", "bitnami")
        assert condition(ready, "Ready")["status"] == "True", ready["status"]
        await harness.apply(helm_chart("16.x"))
        _, chart = await harness.reconcile("HelmChart", "redis")
        assert chart["status"]["artifact"]["revision"] == "16.13.2"

        # Without the client certificate the server refuses the handshake.
        await harness.secret("ca-only", {"ca.crt": ca})
        await harness.kube.merge_patch(
            SOURCE,
            "HelmRepository",
            "bitnami",
            {"spec": {"certSecretRef": {"name": "ca-only"}}},
            harness.namespace,
        )
        _, refused = await harness.reconcile("HelmRepository", "bitnami")
        failed = condition(refused, "Ready")
        assert (failed["status"], failed["reason"]) == ("False", "IndexationFailed")
        assert "cannot reach the Helm repository" in failed["message"]
        assert refused["status"]["artifact"] == ready["status"]["artifact"]


# -- HelmChart from a GitRepository ----------------------------------------------------------


async def test_a_chart_directory_in_a_gitrepository_is_packaged_with_its_values_files(
    harness: Harness, public_repo: tuple[str, Workdir], tmp_path: Path
) -> None:
    url, work = public_repo
    tree = tmp_path / "tree"
    shutil.copytree(examples_dir() / "redis", tree / "charts" / "redis")
    (tree / "env").mkdir()
    (tree / "env" / "prod.yaml").write_text("architecture: standalone\nauth:\n  enabled: false\n")
    work.copy_tree(tree)
    sha = work.commit_and_push({}, "chart")
    await harness.apply(
        {
            "apiVersion": SOURCE,
            "kind": "GitRepository",
            "metadata": {"name": "charts"},
            "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}},
        }
    )
    await harness.reconcile("GitRepository", "charts")
    await harness.apply(
        helm_chart(
            "*",
            chart="./charts/redis",
            sourceRef={"kind": "GitRepository", "name": "charts"},
            valuesFiles=["charts/redis/values.yaml", "env/prod.yaml", "env/missing.yaml"],
            ignoreMissingValuesFiles=True,
        )
    )
    _, chart = await harness.reconcile("HelmChart", "redis")

    status = chart["status"]
    assert status["artifact"]["revision"] == "17.3.2", status
    ready = condition(chart, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ChartPackageSucceeded")
    assert status["observedSourceArtifactRevision"] == f"main@sha1:{sha}"
    assert status["observedValuesFiles"] == ["charts/redis/values.yaml", "env/prod.yaml"]
    files = package_files(await download(status["artifact"]["url"]))
    values = yaml.safe_load(files["redis/values.yaml"])
    assert values["architecture"] == "standalone"
    assert values["auth"] == {"enabled": False, "password": "change-me"}  # merged, not replaced
    assert "redis/templates/master.yaml" in files
    _, again = await harness.reconcile("HelmChart", "redis")  # nothing changed: no write
    assert again["metadata"]["resourceVersion"] == chart["metadata"]["resourceVersion"]

    # Revision strategy: every source revision is a new chart version.
    await harness.kube.merge_patch(
        SOURCE, "HelmChart", "redis", {"spec": {"reconcileStrategy": "Revision"}}, harness.namespace
    )
    _, revised = await harness.reconcile("HelmChart", "redis")
    version = f"17.3.2+{sha[:12]}"
    assert revised["status"]["artifact"]["revision"] == version
    assert chart_yaml(await download(revised["status"]["artifact"]["url"]))["version"] == version


# -- failures keep the last artifact ------------------------------------------------------------


async def test_a_missing_chart_or_version_is_ready_false_and_keeps_the_last_artifact(
    harness: Harness, chart_repo: ChartRepo
) -> None:
    await harness.apply(article(chart_repo.url))
    await harness.reconcile("HelmRepository", "bitnami")
    await harness.apply(helm_chart("17.x"))
    _, good = await harness.reconcile("HelmChart", "redis")

    await harness.kube.merge_patch(
        SOURCE, "HelmChart", "redis", {"spec": {"version": "99.x"}}, harness.namespace
    )
    _, no_version = await harness.reconcile("HelmChart", "redis")
    ready = condition(no_version, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ChartPullError")
    assert "99.x" in ready["message"]
    assert "17.3.2" in ready["message"]
    assert condition(no_version, "BuildFailed")["status"] == "True"
    assert condition(no_version, "Stalled")["status"] == "True"
    assert no_version["status"]["artifact"] == good["status"]["artifact"]

    await harness.kube.merge_patch(
        SOURCE,
        "HelmChart",
        "redis",
        {"spec": {"chart": "nginx", "version": "*"}},
        harness.namespace,
    )
    _, no_chart = await harness.reconcile("HelmChart", "redis")
    assert "'nginx' is not in the Helm repository" in condition(no_chart, "Ready")["message"]
    assert no_chart["status"]["artifact"] == good["status"]["artifact"]

    # Fixed: Ready again, the failure conditions gone.
    await harness.kube.merge_patch(
        SOURCE,
        "HelmChart",
        "redis",
        {"spec": {"chart": "redis", "version": "17.x"}},
        harness.namespace,
    )
    _, fixed = await harness.reconcile("HelmChart", "redis")
    assert condition(fixed, "Ready")["status"] == "True"
    assert not has_condition(fixed, "BuildFailed")
    assert not has_condition(fixed, "Stalled")


async def test_an_index_over_the_size_limit_is_ready_false_and_keeps_the_last_artifact(
    flux_kube: Kube, store: ArtifactStore, namespace: str, tmp_path: Path, chart_repo: ChartRepo
) -> None:
    size = len((chart_repo.root / "index.yaml").read_bytes())
    policy = dataclasses.replace(DEFAULT_POLICY, helm_index_bytes=size + 100)
    harness = make_harness(flux_kube, namespace, store, tmp_path, policy)
    await harness.apply(article(chart_repo.url))
    _, good = await harness.reconcile("HelmRepository", "bitnami")
    assert condition(good, "Ready")["status"] == "True"

    chart_repo.write_index((chart_repo.root / "index.yaml").read_bytes() + b"#" * 200 + b"\n")
    _, big = await harness.reconcile("HelmRepository", "bitnami")
    ready = condition(big, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "IndexationFailed")
    assert f"larger than {size + 100} bytes" in ready["message"]
    assert big["status"]["artifact"] == good["status"]["artifact"]


async def test_unsupported_fields_are_refused_with_a_message(
    harness: Harness, chart_repo: ChartRepo
) -> None:
    await harness.apply(article(chart_repo.url))
    await harness.apply(helm_chart("17.x", verify={"provider": "cosign"}))
    delay, chart = await harness.reconcile("HelmChart", "redis")
    assert delay is None
    ready = condition(chart, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "UnsupportedField")
    assert "spec.verify" in ready["message"]

    repo = article(chart_repo.url)
    repo["metadata"]["name"] = "cloud"
    repo["spec"]["provider"] = "aws"
    await harness.apply(repo)
    _, refused = await harness.reconcile("HelmRepository", "cloud")
    assert "spec.provider" in condition(refused, "Ready")["message"]


async def test_argo_cd_chart_fetches_parse_an_unchanged_index_once(
    chart_repo: ChartRepo, tmp_path: Path
) -> None:
    helm = HelmRepoSource(tmp_path / "cache")
    redis = await helm.fetch_chart(chart_repo.url, "redis", "17.x")
    podinfo = await helm.fetch_chart(chart_repo.url, "podinfo", "")
    assert (redis.revision, podinfo.revision) == ("17.3.2", "6.6.0")
    assert helm.stats.index_fetches == 2  # each fetch asks the repository for news
    assert helm.stats.index_parses == 1  # the same bytes are not parsed again
    chart_repo.publish("17.5.0")
    assert (await helm.fetch_chart(chart_repo.url, "redis", "17.x")).revision == "17.5.0"
    assert helm.stats.index_parses == 2
