"""Fixtures of the Helm integration tests (chart sources, OCI, HelmRelease).

Each engineer's fixtures live in their own marked section below; keep them there.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from gitsail.dev.chartrepo import ChartRepo, ChartServer
from gitsail.dev.registry import Registry
from tests.integration.flux.conftest import flux_kube

__all__ = ["flux_kube"]  # re-exported fixtures

# ---------------------------------------------------------------------------------------
# Chart repositories over HTTP (helm-sources)
#
# ``chart_repo`` / ``chart_repo_auth``: a fresh repository per test on one session-wide
# server (anonymous / behind basic auth as ``CHART_USER``), seeded with the example charts
# (``gitsail.dev.chartrepo.EXAMPLE_CHARTS``: redis 16.13.2, 17.0.0, 17.3.2, 17.4.0-rc.1 and
# podinfo 6.5.0, 6.6.0). ``repo.url`` is its base URL, ``repo.publish("17.5.0")`` publishes
# another redis version (or ``repo.publish(chart_dir, "1.2.3")`` any chart directory),
# ``repo.auth`` is (username, password) or None. Tests never see each other's publications.
# ---------------------------------------------------------------------------------------

CHART_USER = ("chart-user", "chart-pass-17")
_names = itertools.count()


@pytest.fixture(scope="session")
def chart_server() -> Iterator[ChartServer]:
    with ChartServer() as server:
        yield server


@pytest.fixture(scope="session")
def chart_server_auth() -> Iterator[ChartServer]:
    with ChartServer(credentials=CHART_USER) as server:
        yield server


def _repo_name(request: pytest.FixtureRequest) -> str:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    return f"{base}-{os.getpid()}-{next(_names)}"


@pytest.fixture
def chart_repo(chart_server: ChartServer, request: pytest.FixtureRequest) -> ChartRepo:
    """A repository of the example charts, anonymous."""
    return chart_server.repository(_repo_name(request))


@pytest.fixture
def chart_repo_auth(chart_server_auth: ChartServer, request: pytest.FixtureRequest) -> ChartRepo:
    """A repository of the example charts behind basic auth (``CHART_USER``)."""
    return chart_server_auth.repository(_repo_name(request))


# ---------------------------------------------------------------------------------------
# OCI registry (oci)
#
# ``oci_registry`` / ``oci_registry_auth``: one CNCF ``distribution`` registry per session on
# 127.0.0.1 (``gitsail.dev.registry.Registry``; anonymous / behind htpasswd basic auth as
# ``OCI_USER``). ``.host`` is ``127.0.0.1:PORT``, ``.url`` is ``oci://127.0.0.1:PORT``.
# Charts are pushed with the real helm (``gitsail.dev.registry.push_chart``); plain manifests
# with ``push_manifests`` below (blob uploads and a manifest PUT over the distribution API, as
# ``flux push artifact`` does). Tests isolate themselves by repository path.
# ---------------------------------------------------------------------------------------

OCI_USER = ("oci-user", "oci-pass-42")
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    with Registry() as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_auth() -> Iterator[Registry]:
    with Registry(credentials=OCI_USER) as registry:
        yield registry


def tar_gz(files: Mapping[str, str]) -> bytes:
    """A deterministic tar+gzip of ``files`` (path -> text)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in sorted(files):
            data = files[name].encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_manifests(
    registry: Registry,
    repository: str,
    tag: str,
    files: Mapping[str, str],
    *,
    media_type: str = FLUX_CONTENT,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Push ``files`` as a one-layer OCI artifact to ``registry`` at ``repository:tag``;
    returns the manifest digest."""
    auth = httpx.BasicAuth(*registry.credentials) if registry.credentials else None
    base = f"http://{registry.host}/v2/{repository}"
    with httpx.Client(auth=auth, timeout=30) as client:

        def upload(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = client.post(f"{base}/blobs/uploads/")
            started.raise_for_status()
            location = httpx.URL(base).join(started.headers["location"])
            done = client.put(
                location.copy_merge_params({"digest": digest}),
                content=data,
                headers={"content-type": "application/octet-stream"},
            )
            done.raise_for_status()
            return {"digest": digest, "size": len(data)}

        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": FLUX_CONFIG, **upload(b"{}")},
            "layers": [{"mediaType": media_type, **upload(tar_gz(files))}],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        body = json.dumps(manifest).encode()
        put = client.put(
            f"{base}/manifests/{tag}", content=body, headers={"content-type": OCI_MANIFEST}
        )
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(body).hexdigest()


def write_chart(root: Path, name: str, version: str, templates: Mapping[str, str]) -> Path:
    """A chart directory ``root/name`` at ``version`` with ``templates``."""
    chart = root / f"{name}-{version}" / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
    (chart / "values.yaml").write_text("color: blue\n")
    for rel, text in templates.items():
        (chart / "templates" / rel).write_text(text)
    return chart
