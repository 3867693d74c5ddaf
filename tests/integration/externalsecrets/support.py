"""Shared parts of the External Secrets integration tests: the CRDs, the controller as a real
process, applying manifests, and the scan for leaked values."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from gitsail.dev.cluster import Cluster, free_ports
from tests.integration.helpers import Kube, eventually

PATHS = {
    "SecretStore": "/apis/external-secrets.io/{v}/namespaces/{ns}/secretstores",
    "ExternalSecret": "/apis/external-secrets.io/{v}/namespaces/{ns}/externalsecrets",
    "ClusterSecretStore": "/apis/external-secrets.io/{v}/clustersecretstores",
    "ClusterExternalSecret": "/apis/external-secrets.io/{v}/clusterexternalsecrets",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def path_of(kind: str, namespace: str, name: str = "", version: str = "v1") -> str:
    base = PATHS[kind].format(v=version, ns=namespace)
    return f"{base}/{name}" if name else base


def apply(kube: Kube, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Server-side apply ``obj`` as a user would (kubectl apply --server-side)."""
    kind = obj["kind"]
    version = obj["apiVersion"].rsplit("/", 1)[-1]
    if kind in PATHS and "{ns}" in PATHS[kind]:
        obj.setdefault("metadata", {}).setdefault("namespace", namespace)
    path = path_of(kind, namespace, obj["metadata"]["name"], version)
    answer = kube.client.patch(
        path,
        content=json.dumps(obj),
        headers={"Content-Type": "application/apply-patch+yaml"},
        params={"fieldManager": "kubectl", "force": "true"},
    )
    if answer.status_code >= 300:
        raise AssertionError(f"apply {kind} {obj['metadata']['name']}: {answer.text}")
    result: dict[str, Any] = answer.json()
    return result


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    secret = kube.get(path_of("Secret", namespace, name))
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def ready(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    es = kube.get(path_of("ExternalSecret", namespace, name))
    for c in ((es or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


class Controller:
    """``gitsail controller --external-secrets -n NAMESPACE`` on loopback."""

    def __init__(self, cluster: Cluster, namespace: str, log: Path, env: Mapping[str, str]) -> None:
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        argv = [
            sys.executable, "-m", "gitsail", "controller", "-n", namespace,
            "--kubeconfig", str(cluster.kubeconfig), "--listen", f"127.0.0.1:{port}",
            "--no-leader-elect", "--no-flux", "--external-secrets", "--log-level", "debug",
        ]  # fmt: skip
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited: {self.output()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, timeout=60, what="the controller's /healthz")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def assert_no_leak(
    values: Iterable[str], *, kube: Kube, namespace: str, controller: Controller
) -> None:
    """None of ``values`` (plain or base64) in the controller's log, the namespace's Events,
    the ExternalSecrets' status, or the metrics."""
    events = kube.get(f"/api/v1/namespaces/{namespace}/events") or {}
    ess = kube.get(path_of("ExternalSecret", namespace)) or {}
    statuses = [i.get("status") for i in ess.get("items") or []]
    places = {
        "controller log": controller.output(),
        "events": json.dumps(events),
        "status": json.dumps(statuses),
        "metrics": controller.metrics(),
    }
    for value in values:
        forms = {value, base64.b64encode(value.encode()).decode()}
        for where, text in places.items():
            for form in forms:
                assert form not in text, f"a secret value leaked into the {where}"
