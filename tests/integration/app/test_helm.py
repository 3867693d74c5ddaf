"""Helm charts as Application sources: from Git with a production values file, and from a
Helm repository with a version range."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitsail.app.engine import AppEngine
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.toolchain import find_binary
from tests.integration.app.conftest import ApplicationFactory, public_url, reload

pytestmark = pytest.mark.integration

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: {version}\nappVersion: '1.0'\n",
    "values.yaml": "replicas: 1\nimage: registry.invalid/web:1\nenv: dev\n",
    "values-production.yaml": "replicas: 3\nenv: production\n",
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    env: {{ .Values.env | quote }}
    kube: {{ .Capabilities.KubeVersion.Minor | quote }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
""",
    "templates/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80}]
""",
}


def write_chart(root: Path, version: str = "0.1.0") -> None:
    for rel, text in CHART.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("{version}", version))


async def test_chart_from_git_with_a_production_values_file(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    write_chart(git_repo.path / "charts/web")
    git_repo.commit("chart")
    git_repo.push()
    app = await make_app(
        "web-production",
        {
            "repoURL": public_url(git_repo),
            "path": "charts/web",
            "helm": {
                "releaseName": "web",
                "valueFiles": ["values-production.yaml"],
                "parameters": [{"name": "image", "value": "registry.invalid/web:2"}],
            },
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    deployment = await kube_client.get("apps/v1", "Deployment", "web", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["env"] == "production"
    assert (
        deployment["metadata"]["labels"]["kube"] == "36"
    )  # the cluster's version, not helm's default
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/web:2"
    )
    app = await reload(engine, app)
    assert app.raw["status"]["sourceType"] == "Helm"


@pytest.fixture
def helm_repo(tmp_path: Path) -> Iterator[str]:
    """A Helm chart repository with web 1.0.0, 1.2.0 and 2.0.0 served on loopback."""
    helm = str(find_binary("helm"))
    served = tmp_path / "served"
    served.mkdir()
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        src = tmp_path / f"src-{version}" / "web"
        write_chart(src, version)
        subprocess.run(
            [helm, "package", str(src), "-d", str(served)], check=True, capture_output=True
        )
    subprocess.run([helm, "repo", "index", str(served)], check=True, capture_output=True)
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    shutil.rmtree(served, ignore_errors=True)


async def test_chart_from_a_helm_repository_with_a_version_range(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    helm_repo: str,
    namespace: str,
) -> None:
    app = await make_app(
        "web-from-repo",
        {
            "repoURL": helm_repo,
            "chart": "web",
            "targetRevision": ">=1.0.0 <2.0.0",
            "helm": {"releaseName": "web", "valuesObject": {"replicas": 2}},
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    assert outcome.revision == "1.2.0"
    deployment = await kube_client.get("apps/v1", "Deployment", "web", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
