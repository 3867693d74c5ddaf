"""Helpers of the HelmRelease tests: charts packaged with the pinned ``helm``, published as a
HelmChart's artifact, and the real ``helm`` CLI to look at what gitsail released.

``ChartPublisher.publish`` plays source-controller for one HelmChart: it stores the package
in the controller's ``ArtifactStore`` (``put_file``) and writes the HelmChart's
``status.artifact`` as the HelmChart reconciler would, so these tests drive the release
reconciler alone and choose exactly which package each pass sees. The whole chain through the
real HelmRepository and HelmChart reconcilers is tested in ``test_helm_article.py``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.kinds.flux_helmrelease_reconciler import HelmReleaseReconciler
from gitsail.kinds.helm_actions import HelmActions
from gitsail.kube import Kube, load_kubeconfig
from gitsail.model import Obj
from gitsail.source.artifacts import ArtifactStore
from gitsail.toolchain import find_binary

HELMCHART_API = "source.toolkit.fluxcd.io/v1"
HR = "helm.toolkit.fluxcd.io/v2"

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  architecture: {{ .Values.architecture | quote }}
  auth: {{ .Values.auth.enabled | quote }}
  chart: {{ .Chart.Version | quote }}
  extra: {{ .Values.extra | default "" | quote }}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: redis:7
"""

# A post-upgrade hook Job that never runs (no node matches) and fails at its deadline.
FAILING_HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-post-upgrade
  annotations:
    helm.sh/hook: post-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  activeDeadlineSeconds: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {gitsail.test/no-such-node: "true"}
      containers:
        - name: hook
          image: busybox
"""

TEST_JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: test
          image: busybox
"""

# A test hook Job that fails at its deadline (no node matches).
FAILING_TEST = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-fault-test
  annotations:
    helm.sh/hook: test
spec:
  activeDeadlineSeconds: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {gitsail.test/no-such-node: "true"}
      containers:
        - name: test
          image: busybox
"""

VALUES = """\
architecture: replication
auth:
  enabled: false
extra: ""
"""


def package_chart(
    name: str,
    version: str,
    *,
    templates: dict[str, str] | None = None,
    values: str = VALUES,
    app_version: str = "7.0.0",
) -> bytes:
    """A chart package (``.tgz``) made by the pinned ``helm package``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        (root / "templates").mkdir(parents=True)
        (root / "Chart.yaml").write_text(
            yaml.safe_dump(
                {"apiVersion": "v2", "name": name, "version": version, "appVersion": app_version}
            )
        )
        (root / "values.yaml").write_text(values)
        files = (
            templates
            if templates is not None
            else {
                "configmap.yaml": CONFIGMAP,
                "deployment.yaml": DEPLOYMENT,
            }
        )
        for filename, text in files.items():
            (root / "templates" / filename).write_text(textwrap.dedent(text))
        out = Path(tmp) / "out"
        subprocess.run(
            [str(find_binary("helm")), "package", str(root), f"--destination={out}"],
            check=True,
            capture_output=True,
            env=_helm_env(Path(tmp)),
        )
        return (out / f"{name}-{version}.tgz").read_bytes()


@functools.cache
def redis_chart(version: str, configmap_only: bool = False) -> bytes:
    """The test ``redis`` chart (a ConfigMap and a Deployment), packaged once per session."""
    templates = {"configmap.yaml": CONFIGMAP} if configmap_only else None
    return package_chart("redis", version, templates=templates)


def _helm_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


class ChartPublisher:
    """Publishes chart packages as a HelmChart's artifact (see the module docstring)."""

    def __init__(self, kube: Kube, store: ArtifactStore) -> None:
        self.kube = kube
        self.store = store

    async def publish(self, namespace: str, name: str, package: bytes, version: str) -> None:
        chart = await self.kube.get(HELMCHART_API, "HelmChart", name, namespace)
        assert chart is not None, f"HelmChart {namespace}/{name} was not made"
        stored = self.store.put_file(
            "helmchart", namespace, name, package, revision=version, suffix=".tgz"
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = chart["metadata"].get("generation", 1)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "observedChartName": name,
            "artifact": stored.to_status(now),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ChartPullSucceeded",
                    "message": f"pulled '{name}' chart with version '{version}'",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                }
            ],
        }
        await self.kube.merge_patch(
            HELMCHART_API, "HelmChart", name, {"status": status}, namespace, subresource="status"
        )


def helm_cli(kubeconfig: str | Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The real ``helm`` with the test cluster's kubeconfig."""
    return subprocess.run(
        [str(find_binary("helm")), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        env=_helm_env(home),
        timeout=120,
    )


@pytest.fixture
async def hr_kube(cluster: Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await install_crds(kube, families=["flux"])
        yield kube


class Env:
    """One test's HelmReleases: write them, publish charts, run passes, ask helm."""

    def __init__(self, kube: Kube, ns: str, tmp: Path, kubeconfig: Path) -> None:
        self.kube = kube
        self.ns = ns
        self.tmp = tmp
        self.kubeconfig = kubeconfig
        self.store = ArtifactStore(tmp / "artifacts", base_url="http://gitsail.invalid")
        self.actions = HelmActions(kube.config, work_dir=tmp / "helm")
        self.events: list[tuple[str, str, str]] = []

        async def record(obj: Obj, type_: str, reason: str, message: str) -> None:
            self.events.append((type_, reason, message))

        self.reconciler = HelmReleaseReconciler(
            kube, actions=self.actions, artifacts=self.store, record=record
        )
        self.publisher = ChartPublisher(kube, self.store)

    async def apply(self, text_or_obj: str | Obj, **spec: Any) -> Obj:
        obj = yaml.safe_load(text_or_obj) if isinstance(text_or_obj, str) else text_or_obj
        obj["metadata"]["namespace"] = self.ns
        if obj["spec"].get("chart"):
            obj["spec"]["chart"]["spec"]["sourceRef"]["namespace"] = self.ns
        obj["spec"].update(spec)
        return await self.kube.apply(obj, field_manager="test", force=True)

    def release(self, name: str, chart: str = "redis", **spec: Any) -> Obj:
        return {
            "apiVersion": HR,
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "interval": "1h",
                "timeout": "60s",
                "chart": {
                    "spec": {
                        "chart": chart,
                        "version": "*",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
                **spec,
            },
        }

    async def get(self, name: str, api: str = HR) -> Obj:
        obj = await self.kube.get(api, "HelmRelease", name, self.ns)
        assert obj is not None
        return obj

    async def reconcile(self, name: str) -> tuple[float | None, Obj]:
        obj = await self.get(name)
        delay = await self.reconciler.reconcile(obj, ())
        return delay, await self.get(name)

    async def publish(self, hr_name: str, package: bytes, version: str) -> None:
        await self.publisher.publish(self.ns, f"{self.ns}-{hr_name}", package, version)

    async def installed(self, name: str, package: bytes, version: str) -> Obj:
        """First pass (makes the HelmChart, waits for it), publish, second pass."""
        _, obj = await self.reconcile(name)
        assert ready(obj)["reason"] == "ArtifactFailed", ready(obj)
        await self.publish(name, package, version)
        _, obj = await self.reconcile(name)
        return obj

    def helm(self, *args: str) -> str:
        done = helm_cli(self.kubeconfig, *args, home=self.tmp / "cli")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def helm_json(self, *args: str) -> Any:
        return json.loads(self.helm(*args, "-o", "json"))

    async def configmap(self, name: str) -> Obj | None:
        return await self.kube.get("v1", "ConfigMap", name, self.ns)


@pytest.fixture
async def env(hr_kube: Kube, namespace: str, tmp_path: Path, cluster: Cluster) -> Env:
    return Env(hr_kube, namespace, tmp_path, Path(cluster.kubeconfig))


def condition(obj: Obj, type_: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == type_), {})


def ready(obj: Obj) -> dict[str, Any]:
    return condition(obj, "Ready")
