"""HelmRepository and HelmChart: spec parsing (Flux's defaults and refusals), the pure status
function, credentials from Secrets, values merging, and the HelmChart reconciler's OCI path
against an in-memory fake registry client and the fake control plane."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_helmchart import parse_helm_chart
from gitsail.kinds.flux_helmchart_reconciler import (
    HelmChartReconciler,
    PulledChart,
    merge_values,
)
from gitsail.kinds.flux_helmrepository import parse_helm_repository
from gitsail.kinds.flux_helmrepository_reconciler import (
    HelmRepositoryReconciler,
    Outcome,
    repository_access,
    source_status,
)
from gitsail.kinds.status import Stalled, Transient
from gitsail.model import Obj
from gitsail.source.artifacts import ArtifactStore, StoredArtifact
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import RevisionNotFound
from gitsail.source.helm import HelmRepoSource
from tests.unit.kinds.test_gitrepository_reconciler import FakeClock, FakeControlPlane

SOURCE = "source.toolkit.fluxcd.io"
NOW = "2026-01-01T00:00:00Z"


def repository(**spec: Any) -> Obj:
    return {
        "apiVersion": f"{SOURCE}/v1beta2",
        "kind": "HelmRepository",
        "metadata": {"name": "bitnami", "namespace": "flux-system", "generation": 1},
        "spec": {"url": "https://charts.example.com/bitnami", **spec},
    }


def chart(**spec: Any) -> Obj:
    return {
        "apiVersion": f"{SOURCE}/v1",
        "kind": "HelmChart",
        "metadata": {"name": "redis", "namespace": "flux-system", "generation": 3},
        "spec": {
            "chart": "redis",
            "interval": "5m",
            "sourceRef": {"kind": "HelmRepository", "name": "bitnami"},
            **spec,
        },
    }


# -- parsing ------------------------------------------------------------------------------------


def test_helmrepository_defaults_are_fluxs() -> None:
    repo = parse_helm_repository(repository())
    assert (repo.interval, repo.timeout, repo.oci, repo.pass_credentials) == (60, 60, False, False)
    assert repo.secret_ref is None


def test_an_oci_helmrepository_needs_an_oci_url_and_an_http_one_an_http_url() -> None:
    assert parse_helm_repository(repository(type="oci", url="oci://r.example/charts")).oci
    with pytest.raises(SpecError, match=r"spec\.url"):
        parse_helm_repository(repository(type="oci"))
    with pytest.raises(SpecError, match=r"spec\.url"):
        parse_helm_repository(repository(url="oci://r.example/charts"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("provider", "aws"), ("accessFrom", {"namespaceSelectors": []})],
)
def test_helmrepository_refuses_what_gitsail_does_not_implement(field: str, value: Any) -> None:
    with pytest.raises(UnsupportedField, match=f"HelmRepository flux-system/bitnami: spec.{field}"):
        parse_helm_repository(repository(**{field: value}))


def test_helmchart_version_defaults_to_any_and_the_legacy_values_file_comes_first() -> None:
    parsed = parse_helm_chart(chart(valuesFile="a.yaml", valuesFiles=["b.yaml"]))
    assert parsed.version == "*"
    assert parsed.values_files == ("a.yaml", "b.yaml")
    assert parsed.reconcile_strategy == "ChartVersion"


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"verify": {"provider": "cosign"}}, UnsupportedField, "spec.verify"),
        ({"sourceRef": {"kind": "Bucket", "name": "b"}}, UnsupportedField, "spec.sourceRef.kind"),
        ({"sourceRef": {"kind": "OCIRepository", "name": "b"}}, SpecError, "spec.sourceRef.kind"),
        ({"valuesFiles": ["../../etc/passwd"]}, SpecError, "spec.valuesFiles[0]"),
        (
            {"chart": "/abs", "sourceRef": {"kind": "GitRepository", "name": "g"}},
            SpecError,
            "spec.chart",
        ),
        ({"reconcileStrategy": "Always"}, SpecError, "spec.reconcileStrategy"),
        ({"interval": None}, SpecError, "spec.interval"),
        ({"valuesFile": 3}, SpecError, "spec.valuesFile"),
    ],
)
def test_helmchart_refuses_bad_or_unsupported_fields(
    spec: dict[str, Any], error: type[SpecError], field: str
) -> None:
    with pytest.raises(error, match=re.escape(field)):
        parse_helm_chart(chart(**spec))


# -- status -------------------------------------------------------------------------------------

STORED = StoredArtifact(
    path="helmchart/flux-system/redis/" + "a" * 64 + ".tgz",
    url="http://artifacts/helmchart/flux-system/redis/" + "a" * 64 + ".tgz",
    revision="17.3.2",
    digest="sha256:" + "a" * 64,
    size=10,
)


def test_a_failure_keeps_the_artifact_and_success_clears_the_failure_conditions() -> None:
    ok = source_status(
        {},
        Outcome(artifact=STORED, message="pulled", observed=(("observedChartName", "redis"),)),
        generation=3,
        requested_at=None,
        now=NOW,
        artifact_present=True,
    )
    assert ok["artifact"]["revision"] == "17.3.2"
    assert ok["url"] == STORED.url
    assert ok["observedChartName"] == "redis"
    failed = source_status(
        ok,
        Outcome(error=Stalled("ChartPullError", "no 99.x"), failed_condition="BuildFailed"),
        generation=4,
        requested_at=None,
        now=NOW,
        artifact_present=True,
    )
    assert failed["artifact"] == ok["artifact"]
    types = {c["type"]: c["status"] for c in failed["conditions"]}
    assert types == {
        "Ready": "False",
        "ArtifactInStorage": "True",
        "Stalled": "True",
        "BuildFailed": "True",
    }
    assert failed["observedGeneration"] == 4  # stalled on this generation
    again = source_status(
        failed,
        Outcome(artifact=STORED, message="pulled"),
        generation=4,
        requested_at=None,
        now=NOW,
        artifact_present=True,
    )
    assert {c["type"] for c in again["conditions"]} == {"Ready", "ArtifactInStorage"}


def test_a_failure_drops_an_artifact_that_is_no_longer_stored() -> None:
    ok = source_status(
        {},
        Outcome(artifact=STORED, message="m"),
        generation=1,
        requested_at=None,
        now=NOW,
        artifact_present=True,
    )
    gone = source_status(
        ok,
        Outcome(error=Transient("ChartPullError", "down"), failed_condition="FetchFailed"),
        generation=1,
        requested_at=None,
        now=NOW,
        artifact_present=False,
    )
    assert "artifact" not in gone
    assert "url" not in gone
    assert {c["type"] for c in gone["conditions"]} == {"Ready", "Reconciling", "FetchFailed"}


# -- credentials --------------------------------------------------------------------------------


def secret(**data: str) -> Obj:
    return {"metadata": {"name": "s", "namespace": "ns"}, "stringData": data}


def test_basic_auth_and_tls_come_from_secret_ref_and_cert_secret_ref() -> None:
    creds, tls = repository_access(
        secret(username="u", password="p"), secret(**{"ca.crt": "CA"}), "https://h/c"
    )
    assert creds is not None
    assert (creds.username, creds.password, creds.type) == ("u", "p", "helm")
    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == ("CA", "", "")
    _, legacy = repository_access(secret(certFile="C", keyFile="K"), None, "https://h/c")
    assert legacy is not None
    assert (legacy.cert, legacy.key) == ("C", "K")
    assert "K" not in repr(legacy)


@pytest.mark.parametrize(
    "data",
    [{"username": "u"}, {"other": "x"}, {"certFile": "C"}],
)
def test_an_unusable_secret_is_authentication_failed(data: dict[str, str]) -> None:
    with pytest.raises(Transient) as raised:
        repository_access(secret(**data), None, "https://h/c")
    assert raised.value.reason == "AuthenticationFailed"
    assert "Secret ns/s" in raised.value.message or "tls.key" in raised.value.message


# -- values -------------------------------------------------------------------------------------


def test_values_merge_maps_deeply_and_replaces_everything_else() -> None:
    base = {
        "auth": {"enabled": True, "password": "x"},
        "list": [1, 2],
        "architecture": "replication",
    }
    override = {"auth": {"enabled": False}, "list": [3], "extra": {"a": 1}}
    assert merge_values(base, override) == {
        "auth": {"enabled": False, "password": "x"},
        "list": [3],
        "architecture": "replication",
        "extra": {"a": 1},
    }


# -- the OCI path -------------------------------------------------------------------------------


def chart_tgz(version: str) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as raw,
        tarfile.open(fileobj=raw, mode="w") as tar,
    ):
        for name, text in (
            ("redis/Chart.yaml", f"apiVersion: v2\nname: redis\nversion: {version}\n"),
            ("redis/values.yaml", "architecture: replication\nauth:\n  enabled: true\n"),
            ("redis/prod.yaml", "architecture: standalone\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeRegistry:
    def __init__(self) -> None:
        self.versions = {"17.3.2": chart_tgz("17.3.2")}
        self.calls: list[tuple[str, str, RepoCredentials | None]] = []

    async def pull_chart(
        self, ref: str, version: str, creds: RepoCredentials | None
    ) -> PulledChart:
        self.calls.append((ref, version, creds))
        if version not in ("", "17.x") and version not in self.versions:
            raise RevisionNotFound(f"no version of {ref} matches {version!r}", url=ref)
        chosen = max(self.versions) if version in ("", "17.x") else version
        data = self.versions[chosen]
        return PulledChart(chosen, "sha256:" + hashlib.sha256(data).hexdigest(), data)


@pytest.fixture
def plane() -> FakeControlPlane:
    cp = FakeControlPlane()
    cp.add(repository(type="oci", url="oci://registry.example/charts", secretRef={"name": "reg"}))
    cp.add(
        {
            "kind": "Secret",
            "metadata": {"name": "reg", "namespace": "flux-system"},
            "stringData": {"username": "u", "password": "p"},
        }
    )
    return cp


def reconciler(
    plane: FakeControlPlane, tmp_path: Path, oci: FakeRegistry | None
) -> HelmChartReconciler:
    store = ArtifactStore(tmp_path / "artifacts", base_url="http://artifacts")
    return HelmChartReconciler(
        plane, HelmRepoSource(tmp_path / "cache"), store, oci=oci, clock=FakeClock()
    )


async def test_a_chart_of_an_oci_repository_is_pulled_by_the_injected_client(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    plane.add(chart(version="17.x", valuesFiles=["values.yaml", "prod.yaml"]))
    delay = await reconciler(plane, tmp_path, registry).reconcile(
        await plane.get("", "HelmChart", "redis", "flux-system") or {}
    )
    assert delay == 300.0
    ref, version, creds = registry.calls[0]
    assert (ref, version) == ("oci://registry.example/charts/redis", "17.x")
    assert creds is not None
    assert (creds.username, creds.password) == ("u", "p")
    status = plane.objects[("HelmChart", "flux-system", "redis")]["status"]
    assert status["artifact"]["revision"] == "17.3.2"
    assert status["observedValuesFiles"] == ["values.yaml", "prod.yaml"]
    store_file = tmp_path / "artifacts" / status["artifact"]["path"]
    with tarfile.open(store_file, "r:gz") as tar:
        values_file = tar.extractfile("redis/values.yaml")
        assert values_file is not None
        values = yaml.safe_load(values_file.read())
    assert values == {"architecture": "standalone", "auth": {"enabled": True}}


async def test_without_an_oci_client_a_chart_of_an_oci_repository_is_stalled_with_a_message(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add(chart())
    await reconciler(plane, tmp_path, None).reconcile(
        await plane.get("", "HelmChart", "redis", "flux-system") or {}
    )
    conditions = {
        c["type"]: c
        for c in plane.objects[("HelmChart", "flux-system", "redis")]["status"]["conditions"]
    }
    assert conditions["Stalled"]["status"] == "True"
    assert "no OCI client" in conditions["Ready"]["message"]
    assert "oci://registry.example/charts/redis" in conditions["Ready"]["message"]


async def test_an_oci_helmrepository_is_ready_without_contacting_the_registry(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path / "artifacts", base_url="http://artifacts")
    helm = HelmRepoSource(tmp_path / "cache")
    obj = await plane.get("", "HelmRepository", "bitnami", "flux-system")
    assert obj is not None
    delay = await HelmRepositoryReconciler(plane, helm, store, clock=FakeClock()).reconcile(obj)
    assert delay is None
    assert helm.stats.index_fetches == 0
    status = plane.objects[("HelmRepository", "flux-system", "bitnami")]["status"]
    assert "artifact" not in status
    assert [c["status"] for c in status["conditions"] if c["type"] == "Ready"] == ["True"]


# -- the parsed-index cache -----------------------------------------------------------------------


INDEX = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "entries": {
            "redis": [
                {"name": "redis", "version": v, "urls": [f"redis-{v}.tgz"]}
                for v in ("17.4.0-rc.1", "17.3.2", "17.0.0", "16.13.2")
            ]
        },
    }
).encode()


async def test_concurrent_charts_of_one_index_share_one_parse_and_17x_skips_the_rc(
    tmp_path: Path,
) -> None:
    from gitsail.source.helm import pick_chart_version

    helm = HelmRepoSource(tmp_path)
    indexes = await asyncio.gather(*(helm.parse_index(INDEX, "repo") for _ in range(5)))
    assert helm.stats.index_parses == 1
    assert all(i is indexes[0] for i in indexes)
    assert pick_chart_version(indexes[0], "redis", "17.x", "repo")["version"] == "17.3.2"
    assert pick_chart_version(indexes[0], "redis", "", "repo")["version"] == "17.3.2"
    assert pick_chart_version(indexes[0], "redis", ">=17.4.0-0", "repo")["version"] == "17.4.0-rc.1"
    with pytest.raises(RevisionNotFound, match=r"16\.13\.2"):
        pick_chart_version(indexes[0], "redis", "18.x", "repo")


def test_the_index_cache_drops_the_least_recently_used_beyond_its_byte_limit() -> None:
    from gitsail.source.helm import HelmIndex, IndexCache

    cache = IndexCache(limit=250)
    for name in ("a", "b", "c"):
        cache.put(HelmIndex(name, 100, {}))
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("b") is not None  # b is now the most recent
    cache.put(HelmIndex("d", 100, {}))
    assert cache.get("c") is None
    assert cache.get("b") is not None
    cache.put(HelmIndex("huge", 1000, {}))
    assert len(cache) == 1  # the one just added stays


def test_a_chart_directory_packs_the_same_bytes_every_time_and_refuses_links(
    tmp_path: Path,
) -> None:
    from gitsail.source.errors import InvalidSource
    from gitsail.source.helm import pack_chart

    chart_dir = tmp_path / "redis"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: redis\nversion: 1.0.0\n")
    (chart_dir / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    first = pack_chart(chart_dir, "redis", limit=10_000)
    (chart_dir / "templates" / "cm.yaml").touch()  # a new mtime changes nothing
    assert pack_chart(chart_dir, "redis", limit=10_000) == first
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert tar.getnames() == ["redis/Chart.yaml", "redis/templates/cm.yaml"]
    with pytest.raises(InvalidSource, match="larger than 10 bytes"):
        pack_chart(chart_dir, "redis", limit=10)
    (chart_dir / "link.yaml").symlink_to("/etc/passwd")
    with pytest.raises(InvalidSource, match="symbolic link"):
        pack_chart(chart_dir, "redis", limit=10_000)
