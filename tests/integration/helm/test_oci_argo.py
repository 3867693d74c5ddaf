"""Argo CD Applications whose Helm chart is in an OCI registry: the real ``distribution``
registry on loopback, charts pushed with the real ``helm push``, the engine rendering and
syncing into the test's namespace.

Both of Argo CD's documented forms: ``repoURL: host/path`` + ``chart`` with a repository
Secret saying ``enableOCI: "true"``, and ``repoURL: oci://host/path/chart`` (``path: .``).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.dev.registry import Registry, push_chart
from gitsail.kube import Kube
from tests.integration.app.conftest import (
    ApplicationFactory,
    crds,
    engine,
    kube_client,
    make_app,
    reload,
)
from tests.integration.helm.conftest import OCI_USER, write_chart

__all__ = ["crds", "engine", "kube_client", "make_app"]  # re-exported fixtures

pytestmark = pytest.mark.integration

TEMPLATES = {
    "configmap.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  color: {{ .Values.color | quote }}
  chart: {{ .Chart.Version | quote }}
""",
    "service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80}]
""",
}


def publish(registry: Registry, repository: str, tmp_path: Path, *versions: str) -> str:
    """Push chart ``web`` at each version with ``helm push``; returns its oci:// reference."""
    ref = ""
    for version in versions:
        chart = write_chart(tmp_path, "web", version, TEMPLATES)
        ref = push_chart(chart, registry, repository, work=tmp_path)
    return ref


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def repository_secret(kube: Kube, namespace: str, url: str, **values: str) -> None:
    """An Argo CD repository Secret for ``url`` (``values`` as its keys)."""
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"repo-{abs(hash(url)) % 10**8}",
                "namespace": namespace,
                "labels": {"argocd.argoproj.io/secret-type": "repository"},
            },
            "data": {k: b64(v) for k, v in {"url": url, **values}.items()},
        }
    )


async def test_oci_chart_with_enable_oci_secret_syncs_the_highest_matching_version_healthy(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    oci_registry: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    publish(oci_registry, f"{namespace}/charts", tmp_path, "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0")
    repo_url = f"{oci_registry.host}/{namespace}/charts"  # Argo CD's form: no scheme
    await repository_secret(
        kube_client, namespace, repo_url, type="helm", name="oci", enableOCI="true"
    )
    app = await make_app(
        "web-oci",
        {
            "repoURL": repo_url,
            "chart": "web",
            "targetRevision": "1.x",
            "helm": {"valuesObject": {"color": "green"}},
        },
    )
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    assert outcome.revision == "1.1.0"  # not the 1.2.0 pre-release, not 2.0.0
    settings = await kube_client.get("v1", "ConfigMap", "web-oci-settings", namespace)
    assert settings is not None
    assert settings["data"] == {"color": "green", "chart": "1.1.0"}
    await engine.refresh(app)
    status = (await reload(engine, app)).raw["status"]
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    assert status["sourceType"] == "Helm"


async def test_oci_url_form_with_credentials_syncs_an_exact_version(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    oci_registry_auth: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    ref = publish(oci_registry_auth, f"{namespace}/charts", tmp_path, "3.0.0", "3.1.0")
    assert ref == f"oci://{oci_registry_auth.host}/{namespace}/charts/web"
    user, password = OCI_USER
    await repository_secret(kube_client, namespace, ref, username=user, password=password)
    app = await make_app("web-auth", {"repoURL": ref, "path": ".", "targetRevision": "3.0.0"})
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded", outcome.result.message
    settings = await kube_client.get("v1", "ConfigMap", "web-auth-settings", namespace)
    assert settings is not None
    assert settings["data"]["chart"] == "3.0.0"
    await engine.refresh(app)
    status = (await reload(engine, app)).raw["status"]
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")


async def test_oci_chart_without_credentials_is_a_comparison_error_that_changes_nothing(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    oci_registry_auth: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    ref = publish(oci_registry_auth, f"{namespace}/charts", tmp_path, "1.0.0")
    app = await make_app("web-denied", {"repoURL": ref, "path": ".", "targetRevision": "1.0.0"})
    with pytest.raises(ComparisonError, match="requires credentials"):
        await engine.compare(app)
    assert await kube_client.get("v1", "ConfigMap", "web-denied-settings", namespace) is None
