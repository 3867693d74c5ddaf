"""HelmRepoSource against a Helm repository built with the pinned helm and served on loopback."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from gitsail.policy import DEFAULT_POLICY
from gitsail.source import (
    AuthError,
    FetchError,
    HelmRepoSource,
    RepoCredentials,
    RevisionNotFound,
)
from gitsail.toolchain import find_binary
from tests.integration.source.conftest import HELM_USER, StaticServer

pytestmark = pytest.mark.integration

VERSIONS = ("1.0.0", "1.1.0", "2.0.0-rc.1")


def _helm(args: list[str], home: Path, cwd: Path) -> None:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    subprocess.run(
        [str(find_binary("helm")), *args], cwd=cwd, env=env, check=True, capture_output=True
    )


def _build_repo(server: StaticServer, tmp_path: Path, *, absolute: bool = False) -> None:
    work = tmp_path / "charts-src"
    work.mkdir()
    _helm(["create", "web"], tmp_path, work)
    for version in VERSIONS:
        _helm(["package", "web", "--version", version, "-d", str(server.root)], tmp_path, work)
    index = ["repo", "index", str(server.root)]
    _helm([*index, "--url", server.url] if absolute else index, tmp_path, work)


def _creds(server: StaticServer) -> RepoCredentials | None:
    if server.credentials is None:
        return None
    user, password = server.credentials
    return RepoCredentials(url=server.url, username=user, password=password, type="helm")


async def test_fetch_chart_exact_version(static_http: StaticServer, tmp_path: Path) -> None:
    _build_repo(static_http, tmp_path)
    source = HelmRepoSource(tmp_path / "cache")

    artifact = await source.fetch_chart(static_http.url, "web", "1.0.0", _creds(static_http))

    tgz = (static_http.root / "web-1.0.0.tgz").read_bytes()
    assert artifact.kind == "helm"
    assert artifact.chart == "web"
    assert artifact.path == "web"
    assert artifact.revision == artifact.requested == "1.0.0"
    assert artifact.digest == "sha256:" + hashlib.sha256(tgz).hexdigest()
    assert artifact.root == source.cache_dir / "charts" / hashlib.sha256(tgz).hexdigest()
    chart = yaml.safe_load((artifact.directory / "Chart.yaml").read_text())
    assert chart["version"] == "1.0.0"
    assert (artifact.directory / "templates" / "deployment.yaml").is_file()


async def test_fetch_chart_by_range_and_latest_stable(
    static_http: StaticServer, tmp_path: Path
) -> None:
    _build_repo(static_http, tmp_path, absolute=True)
    source = HelmRepoSource(tmp_path / "cache")
    creds = _creds(static_http)

    assert (await source.fetch_chart(static_http.url, "web", "^1.0", creds)).revision == "1.1.0"
    assert (await source.fetch_chart(static_http.url, "web", "1.0.*", creds)).revision == "1.0.0"
    assert (await source.fetch_chart(static_http.url, "web", "", creds)).revision == "1.1.0"
    assert (await source.fetch_chart(static_http.url, "web", "*", creds)).revision == "1.1.0"
    rc = await source.fetch_chart(static_http.url, "web", ">=2.0.0-0", creds)
    assert rc.revision == "2.0.0-rc.1"
    downloads = source.stats.downloads
    again = await source.fetch_chart(static_http.url + "/", "web", "~1.1", creds)
    assert again.revision == "1.1.0"
    assert source.stats.downloads == downloads  # unpacked already: digest from the index


async def test_unknown_chart_or_version_is_revision_not_found(
    static_http: StaticServer, tmp_path: Path
) -> None:
    _build_repo(static_http, tmp_path)
    source = HelmRepoSource(tmp_path / "cache")
    creds = _creds(static_http)
    with pytest.raises(RevisionNotFound, match="not in the Helm repository"):
        await source.fetch_chart(static_http.url, "nope", "1.0.0", creds)
    with pytest.raises(RevisionNotFound, match=r"available: .*1\.1\.0"):
        await source.fetch_chart(static_http.url, "web", ">=3", creds)


async def test_digest_mismatch_is_refused(static_http: StaticServer, tmp_path: Path) -> None:
    _build_repo(static_http, tmp_path)
    index_path = static_http.root / "index.yaml"
    index = yaml.safe_load(index_path.read_text())
    for entry in index["entries"]["web"]:
        entry["digest"] = "0" * 64
    index_path.write_text(yaml.safe_dump(index))
    source = HelmRepoSource(tmp_path / "cache")
    with pytest.raises(FetchError, match="does not match the digest"):
        await source.fetch_chart(static_http.url, "web", "1.0.0", _creds(static_http))


@pytest.mark.parametrize("static_http", ["basic-auth"], indirect=True)
async def test_missing_or_wrong_credentials_are_auth_errors(
    static_http: StaticServer, tmp_path: Path
) -> None:
    _build_repo(static_http, tmp_path)
    source = HelmRepoSource(tmp_path / "cache")
    with pytest.raises(AuthError):
        await source.fetch_chart(static_http.url, "web", "1.0.0")
    wrong = RepoCredentials(url=static_http.url, username=HELM_USER[0], password="bad-pw-99")
    with pytest.raises(AuthError) as caught:
        await source.fetch_chart(static_http.url, "web", "1.0.0", wrong)
    assert "bad-pw-99" not in str(caught.value)


# --- hardening: bounded unpacking and a cache budget (issue 7, item 11) -----------------


def _serve_package(server: StaticServer, name: str, version: str, tgz: bytes) -> None:
    (server.root / f"{name}-{version}.tgz").write_bytes(tgz)
    index = {
        "apiVersion": "v1",
        "entries": {
            name: [
                {
                    "name": name,
                    "version": version,
                    "urls": [f"{name}-{version}.tgz"],
                    "digest": hashlib.sha256(tgz).hexdigest(),
                }
            ]
        },
    }
    (server.root / "index.yaml").write_text(yaml.safe_dump(index))


def _bomb(name: str, unpacked: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        chart = f"apiVersion: v2\nname: {name}\nversion: 1.0.0\n".encode()
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size = len(chart)
        tar.addfile(info, io.BytesIO(chart))
        info = tarfile.TarInfo(f"{name}/templates/zeros")
        info.size = unpacked
        tar.addfile(info, io.BytesIO(bytes(unpacked)))
    return gzip.compress(raw.getvalue(), compresslevel=9)


@pytest.mark.parametrize("static_http", ["anonymous"], indirect=True)
async def test_a_package_that_unpacks_beyond_the_limit_is_refused_and_leaves_nothing(
    static_http: StaticServer, tmp_path: Path
) -> None:
    tgz = _bomb("bomb", 64 * 1024 * 1024)
    assert len(tgz) < 200_000
    _serve_package(static_http, "bomb", "1.0.0", tgz)
    policy = dataclasses.replace(DEFAULT_POLICY, chart_unpacked_bytes=16 * 1024 * 1024)
    source = HelmRepoSource(tmp_path / "cache", policy=policy)
    with pytest.raises(FetchError, match="unpacks to more than 16777216 bytes"):
        await source.fetch_chart(static_http.url, "bomb", "1.0.0")
    assert list((tmp_path / "cache" / "charts").iterdir()) == []  # no partial left behind


@pytest.mark.parametrize("static_http", ["anonymous"], indirect=True)
async def test_a_package_over_the_archive_limit_is_not_downloaded_whole(
    static_http: StaticServer, tmp_path: Path
) -> None:
    _serve_package(static_http, "big", "1.0.0", os.urandom(3 * 1024 * 1024))
    policy = dataclasses.replace(DEFAULT_POLICY, chart_archive_bytes=1024 * 1024)
    source = HelmRepoSource(tmp_path / "cache", policy=policy)
    with pytest.raises(FetchError, match="larger than 1048576 bytes"):
        await source.fetch_chart(static_http.url, "big", "1.0.0")


@pytest.mark.parametrize("static_http", ["anonymous"], indirect=True)
async def test_chart_cache_evicts_least_recently_used_charts_no_longer_in_use(
    static_http: StaticServer, tmp_path: Path
) -> None:
    _build_repo(static_http, tmp_path)
    source = HelmRepoSource(tmp_path / "cache")
    first = await source.fetch_chart(static_http.url, "web", "1.0.0")
    size = source.cache.total
    source.cache.limit = size + size // 2  # room for one chart, not two
    source.cache.keep_recent = 0
    first_root = first.root
    second = await source.fetch_chart(static_http.url, "web", "1.1.0")
    assert first_root.is_dir()  # still leased: the first Artifact is alive
    del first
    gc.collect()
    third = await source.fetch_chart(static_http.url, "web", "2.0.0-rc.1")
    assert not first_root.exists()
    assert second.root.is_dir()  # in use
    assert third.root.is_dir()
    assert source.cache.evictions == 1
