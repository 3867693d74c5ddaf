"""Issue 7 (items 2, 3, 11) end to end: an Application's Helm options cannot run a program,
read a host file or fill the disk of the controller, and values reach the cluster exactly."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.policy import DEFAULT_POLICY
from gitsail.source import HelmRepoSource
from tests.integration.app.conftest import ApplicationFactory, public_url, reload

pytestmark = pytest.mark.integration

CHART = {
    "charts/echo/Chart.yaml": "apiVersion: v2\nname: echo\nversion: 0.1.0\n",
    "charts/echo/templates/cm.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-values
data:
  note: {{ .Values.note | default "" | quote }}
  config: {{ .Values.config | default "" | quote }}
""",
    "charts/echo/files/config.txt": "from-the-repo",
}


@pytest.fixture
def chart_repo(git_repo: Workdir) -> Workdir:
    git_repo.commit_and_push(CHART, "echo chart")
    return git_repo


async def _configmaps(kube: Kube, namespace: str) -> list[str]:
    return [o["metadata"]["name"] for o in await kube.list("v1", "ConfigMap", namespace)]


async def test_release_name_cannot_be_a_helm_flag(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    chart_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "post-renderer-ran"
    script = tmp_path / "post-renderer.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    script.chmod(0o755)
    app = await make_app(
        "flag-release",
        {
            "repoURL": public_url(chart_repo),
            "path": "charts/echo",
            "helm": {"releaseName": f"--post-renderer={script}"},
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Error"
    assert "is not a valid Helm release name" in outcome.result.message
    assert not marker.exists(), "helm ran the tenant's post-renderer"
    assert "echo-values" not in await _configmaps(kube_client, namespace)
    await engine.refresh(app)
    app = await reload(engine, app)
    condition = app.raw["status"]["conditions"][0]
    assert condition["type"] == "ComparisonError"
    assert "releaseName" in condition["message"]


async def test_file_parameter_name_cannot_read_a_host_file(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    chart_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$host-secret-hash")
    app = await make_app(
        "leak",
        {
            "repoURL": public_url(chart_repo),
            "path": "charts/echo",
            "helm": {
                "releaseName": "leak",
                "fileParameters": [{"name": f"note={secret},unused", "path": "files/config.txt"}],
            },
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Error"
    assert "is not a Helm value key" in outcome.result.message
    assert "host-secret-hash" not in outcome.result.message
    assert "leak-values" not in await _configmaps(kube_client, namespace)


async def test_helm_values_reach_the_cluster_exactly_as_written(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    chart_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    note = "a,b=c\\d.e[0]{f}"
    app = await make_app(
        "exact",
        {
            "repoURL": public_url(chart_repo),
            "path": "charts/echo",
            "helm": {
                "releaseName": "exact",
                "parameters": [{"name": "note", "value": note, "forceString": True}],
                "fileParameters": [{"name": "config", "path": "files/config.txt"}],
            },
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    live = await kube_client.get("v1", "ConfigMap", "exact-values", namespace)
    assert live is not None
    assert live["data"] == {"note": note, "config": "from-the-repo"}


def _bomb(unpacked: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (
            ("bomb/Chart.yaml", b"apiVersion: v2\nname: bomb\nversion: 1.0.0\n"),
            ("bomb/templates/zeros.txt", bytes(unpacked)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9)


@pytest.fixture
def bomb_repo(tmp_path: Path) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    tgz = _bomb(64 * 1024 * 1024)
    (served / "bomb-1.0.0.tgz").write_bytes(tgz)
    entry = {
        "name": "bomb",
        "version": "1.0.0",
        "urls": ["bomb-1.0.0.tgz"],
        "digest": hashlib.sha256(tgz).hexdigest(),
    }
    index = {"apiVersion": "v1", "entries": {"bomb": [entry]}}
    (served / "index.yaml").write_text(yaml.safe_dump(index))
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_chart_package_that_unpacks_huge_is_refused(
    engine: AppEngine,
    make_app: ApplicationFactory,
    bomb_repo: str,
    tmp_path: Path,
) -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, chart_unpacked_bytes=8 * 1024 * 1024)
    engine.helm_repos = HelmRepoSource(tmp_path / "bomb-cache", policy=policy)
    app = await make_app(
        "bomb",
        {"repoURL": bomb_repo, "chart": "bomb", "targetRevision": "1.0.0"},
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Error"
    assert "unpacks to more than 8388608 bytes" in outcome.result.message
    charts = tmp_path / "bomb-cache" / "charts"
    written = sum(f.stat().st_size for f in charts.rglob("*") if f.is_file())
    assert written == 0
