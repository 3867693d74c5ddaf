"""The controller as the chart's least-privilege ServiceAccount: charts/gitsail installed
with default RBAC (one delivery namespace), then `gitsail controller` run with a token of
that ServiceAccount (what its pod would use), delivering Applications: into the delivery
namespace it syncs; into another namespace the sync fails with the API server's Forbidden
and nothing is written there."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube, KubeError
from tests.integration.app.conftest import configmap, public_url
from tests.integration.chart.test_chart import CHART, helm
from tests.integration.controller.conftest import (  # noqa: F401 (fixtures)
    AUTOMATED,
    api,
    app_status,
    control_ns,
    crds_installed,
    create_app,
    eventually,
)

pytestmark = pytest.mark.integration


def _token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    name = admin["clusters"][0]["name"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": name, "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _spawn(kubeconfig: Path, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    (port,) = free_ports(1)
    argv = [
        sys.executable, "-m", "gitsail", "controller", "--kubeconfig", str(kubeconfig),
        "-n", namespace, "--no-leader-elect", "--listen", f"127.0.0.1:{port}",
        "--resync", "20", "--jitter", "0",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


async def test_the_least_privilege_controller_delivers_only_where_it_may(
    api: Kube,  # noqa: F811
    cluster: Cluster,
    control_ns: str,  # noqa: F811
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,  # noqa: F811
) -> None:
    deliver = f"{control_ns}-d"[:63]
    elsewhere = f"{control_ns}-x"[:63]
    for ns in (deliver, elsewhere):
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    role = f"gitsail-{control_ns}"
    home = tmp_path / "helm"
    args = ["install", "gitsail", str(CHART), "-n", control_ns, "--wait=false"]
    for v in (
        "crds.install=false",
        f"rbac.clusterRoleName={role}",
        f"server.clusterRoleName={role}-server",
        f"rbac.deliverNamespaces={{{deliver}}}",
    ):
        args += ["--set", v]
    helm(home, *args, kubeconfig=cluster.kubeconfig)
    proc: subprocess.Popen[bytes] | None = None
    log = tmp_path / "controller.log"
    try:
        answer = await api.create_subresource(
            "v1",
            "ServiceAccount",
            "gitsail-controller",
            "token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            control_ns,
        )
        token = str(answer["status"]["token"])
        kubeconfig = _token_kubeconfig(cluster, token, tmp_path / "sa-kubeconfig")
        git_repo.commit_and_push(
            {"in/cm.yaml": configmap("inside", v="1"), "out/cm.yaml": configmap("outside", v="1")},
            "two apps",
        )
        proc = _spawn(kubeconfig, control_ns, log)
        repo = public_url(git_repo)
        dest = {"server": "https://kubernetes.default.svc"}
        await create_app(
            api,
            control_ns,
            "inside",
            repo,
            path="in",
            syncPolicy=AUTOMATED,
            destination={**dest, "namespace": deliver},
        )
        await create_app(
            api,
            control_ns,
            "outside",
            repo,
            path="out",
            syncPolicy=AUTOMATED,
            destination={**dest, "namespace": elsewhere},
        )

        async def synced() -> bool:
            status = await app_status(api, control_ns, "inside")
            state = status.get("operationState") or {}
            return state.get("phase") == "Succeeded" and status["sync"]["status"] == "Synced"

        await eventually(synced, timeout=90, what=f"inside synced; log: {log}")
        assert await api.get("v1", "ConfigMap", "inside", deliver) is not None

        last: dict[str, object] = {}

        async def refused() -> str | None:
            status = await app_status(api, control_ns, "outside")
            last.update(status)
            state = status.get("operationState") or {}
            if state.get("phase") in ("Failed", "Error"):
                return str(state.get("message") or "")
            for condition in status.get("conditions") or []:
                if "forbidden" in str(condition.get("message")).lower():
                    return str(condition["message"])
            return None

        try:
            message = await eventually(refused, timeout=90, what="outside refused")
        except AssertionError:
            raise AssertionError(f"outside not refused: {last}") from None
        assert "forbidden" in message.lower(), message
        assert await api.get("v1", "ConfigMap", "outside", elsewhere) is None
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        helm(
            home, "uninstall", "gitsail", "-n", control_ns, "--wait", kubeconfig=cluster.kubeconfig
        )
        for ns in (deliver, elsewhere):
            with contextlib.suppress(KubeError):
                await api.delete("v1", "Namespace", ns, propagation="Background")
