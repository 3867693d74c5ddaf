"""HelmRepoSource's OCI branch: Argo CD's two forms of an OCI chart reach ``OCIClient`` with
the right reference, the chart is unpacked like an HTTP one, and a chart already unpacked is
not downloaded again (the layer digest is the package's sha256)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.policy import Policy
from gitsail.source import HelmRepoSource
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import InvalidSource
from gitsail.source.helm import is_oci_repository, oci_chart_ref
from gitsail.source.oci import OCIClient
from tests.unit.source.test_oci import HOST, FakeRegistry


def test_which_urls_are_oci_repositories() -> None:
    oci_creds = RepoCredentials(url=f"{HOST}/charts", type="helm", enable_oci=True)
    assert is_oci_repository(f"oci://{HOST}/charts/redis", None)
    assert is_oci_repository(f"{HOST}/charts", oci_creds)
    assert not is_oci_repository(f"{HOST}/charts", None)  # Argo CD needs enableOCI
    assert not is_oci_repository("https://charts.example", oci_creds)


def test_the_chart_reference_of_both_argo_forms() -> None:
    assert oci_chart_ref(f"{HOST}/charts", "redis") == f"oci://{HOST}/charts/redis"
    assert oci_chart_ref(f"oci://{HOST}/charts/redis", "redis") == f"oci://{HOST}/charts/redis"
    assert oci_chart_ref(f"oci://{HOST}/charts/", "redis") == f"oci://{HOST}/charts/redis"


@pytest.fixture
def source(tmp_path: Path) -> tuple[HelmRepoSource, FakeRegistry]:
    registry = FakeRegistry()
    for version in ("17.0.0", "17.3.1"):
        registry.push_chart(
            "charts/redis", "redis", version, {"Chart.yaml": f"name: redis\nversion: {version}\n"}
        )
    helm = HelmRepoSource(tmp_path / "cache", policy=Policy(denied_networks=()))
    helm.oci = OCIClient(policy=helm.policy, transport=registry.transport())
    return helm, registry


async def test_an_oci_chart_is_unpacked_once_and_then_served_from_the_cache(
    source: tuple[HelmRepoSource, FakeRegistry],
) -> None:
    helm, registry = source
    creds = RepoCredentials(url=f"{HOST}/charts", type="helm", enable_oci=True)
    artifact = await helm.fetch_chart(f"{HOST}/charts", "redis", "17.x", creds)
    assert (artifact.kind, artifact.chart, artifact.revision) == ("helm", "redis", "17.3.1")
    assert (artifact.directory / "Chart.yaml").read_text() == "name: redis\nversion: 17.3.1\n"
    assert artifact.digest.startswith("sha256:")
    blobs = sum("/blobs/" in r.url.path for r in registry.requests)
    again = await helm.fetch_chart(f"oci://{HOST}/charts/redis", "redis", "17.3.1", None)
    assert again.root == artifact.root
    assert sum("/blobs/" in r.url.path for r in registry.requests) == blobs
    assert (helm.stats.downloads, helm.stats.index_fetches) == (1, 2)


async def test_an_invalid_chart_name_is_refused_before_any_request(
    source: tuple[HelmRepoSource, FakeRegistry],
) -> None:
    helm, registry = source
    with pytest.raises(InvalidSource):
        await helm.fetch_chart(f"oci://{HOST}/charts", "../x", "1.0.0")
    assert registry.requests == []
