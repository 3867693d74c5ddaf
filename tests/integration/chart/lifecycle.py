"""The chart's life in the dev cluster with its controller running as its pod would:
`helm install` (least-privilege RBAC, one delivery namespace), the controller and the server
started with the live Deployments' arguments and tokens of their ServiceAccounts (kwok runs
no containers, so the caller runs them: from the source checkout or from the image's
filesystem), an Application delivered into the delivery namespace and one refused
elsewhere, the server listing them and requesting a sync with its own rights, `helm upgrade`
adding that namespace (the refused app then syncs), and `helm uninstall` leaving no object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube, KubeError
from tests.integration.app.conftest import configmap, public_url
from tests.integration.chart.test_chart import CHART, helm
from tests.integration.controller.conftest import AUTOMATED, app_status, create_app, eventually

# (controller arguments, kubeconfig text, log) -> the running controller
Runner = Callable[[list[str], str, Path], "subprocess.Popen[bytes]"]


def token_kubeconfig(cluster: Cluster, token: str) -> str:
    """A kubeconfig of the cluster's API server (and CA) with a ServiceAccount token."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    name = admin["clusters"][0]["name"]
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": name, "user": "sa"}}],
            "current-context": "sa",
        }
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def _refused(api: Kube, ns: str, name: str) -> str | None:
    status = await app_status(api, ns, name)
    state = status.get("operationState") or {}
    if state.get("phase") in ("Failed", "Error"):
        return str(state.get("message") or "")
    for condition in status.get("conditions") or []:
        if "forbidden" in str(condition.get("message")).lower():
            return str(condition["message"])
    return None


async def _synced(api: Kube, ns: str, name: str) -> bool:
    status = await app_status(api, ns, name)
    state = status.get("operationState") or {}
    return state.get("phase") == "Succeeded" and (status.get("sync") or {}).get("status") == (
        "Synced"
    )


async def _start(
    api: Kube, cluster: Cluster, ns: str, name: str, run: Runner, log: Path
) -> tuple[subprocess.Popen[bytes], str, dict[str, Any]]:
    """Deployment ``name``'s container run by ``run`` with its ServiceAccount's token on a
    loopback port; returns the process, its URL and the container spec."""
    deployment = await api.get("apps/v1", "Deployment", name, ns)
    assert deployment is not None, name
    pod = deployment["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    # The pod's ServiceAccount mount is replaced by a kubeconfig with a token of the same
    # account (``run`` adds --kubeconfig), so the server's --in-cluster goes.
    args = [a for a in container["args"] if a != "--in-cluster"]
    (port,) = free_ports(1)
    args[args.index("--listen") + 1] = f"127.0.0.1:{port}"  # loopback, not the pod's IP
    answer = await api.create_subresource(
        "v1",
        "ServiceAccount",
        pod["serviceAccountName"],
        "token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        ns,
    )
    proc = run(args, token_kubeconfig(cluster, str(answer["status"]["token"])), log)
    return proc, f"http://127.0.0.1:{port}", container


async def _healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"exited: {await asyncio.to_thread(log.read_text)}")
    async with httpx.AsyncClient() as client:
        with contextlib.suppress(httpx.HTTPError):
            return (await client.get(f"{url}/healthz", timeout=2)).status_code == 200
    return False


async def chart_lifecycle(
    api: Kube,
    cluster: Cluster,
    control_ns: str,
    git_repo: Workdir,
    tmp_path: Path,
    run: Runner,
    *,
    image: str = "",
) -> dict[str, Any]:
    """The whole life (module docstring); returns what the checks saw, for the caller's own."""
    deliver = f"{control_ns}-d"[:63]
    elsewhere = f"{control_ns}-x"[:63]
    for ns in (deliver, elsewhere):
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    role = f"gitsail-{control_ns}"
    home = tmp_path / "helm"
    kc = cluster.kubeconfig
    common = ["-n", control_ns]
    for v in (
        "crds.install=false",  # the shared cluster serves them already
        f"rbac.clusterRoleName={role}",
        f"server.clusterRoleName={role}-server",
        *([f"image.repository={image}"] if image else []),
    ):
        common += ["--set", v]
    one = ["--set", f"rbac.deliverNamespaces={{{deliver}}}"]
    helm(home, "install", "gitsail", str(CHART), *common, *one, "--wait=false", kubeconfig=kc)
    proc: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    log = tmp_path / "controller.log"
    server_log = tmp_path / "server.log"
    seen: dict[str, Any] = {}
    try:
        proc, _, seen["container"] = await _start(
            api, cluster, control_ns, "gitsail-controller", run, log
        )
        git_repo.commit_and_push(
            {"in/cm.yaml": configmap("inside", v="1"), "out/cm.yaml": configmap("outside", v="1")},
            "two apps",
        )
        repo = public_url(git_repo)
        dest = {"server": "https://kubernetes.default.svc"}
        for name, path, ns in (("inside", "in", deliver), ("outside", "out", elsewhere)):
            await create_app(
                api,
                control_ns,
                name,
                repo,
                path=path,
                syncPolicy=AUTOMATED,
                destination={**dest, "namespace": ns},
            )

        async def inside() -> bool:
            assert proc is not None
            assert proc.poll() is None, f"controller exited: {log.read_text()[-3000:]}"
            return await _synced(api, control_ns, "inside")

        await eventually(inside, timeout=120, what=f"inside synced ({log})")
        assert await api.get("v1", "ConfigMap", "inside", deliver) is not None
        seen["refused"] = await eventually(
            lambda: _refused(api, control_ns, "outside"), timeout=90, what="outside refused"
        )
        assert "forbidden" in seen["refused"].lower(), seen["refused"]
        assert await api.get("v1", "ConfigMap", "outside", elsewhere) is None

        # The server with its own rights: lists the apps, requests a sync (operation field).
        server, url, _ = await _start(api, cluster, control_ns, "gitsail-server", run, server_log)
        await eventually(
            lambda: _healthy(server, url, server_log), timeout=90, what="server /healthz"
        )
        secret = await eventually(
            lambda: api.get("v1", "Secret", "argocd-initial-admin-secret", control_ns),
            timeout=30,
            what="the admin's first password",
        )
        password = base64.b64decode(secret["data"]["password"]).decode()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            login = await client.post(
                "/api/v1/session", json={"username": "admin", "password": password}
            )
            assert login.status_code == 200, login.text
            auth = {"Authorization": f"Bearer {login.json()['token']}"}
            listed = await client.get("/api/v1/applications", headers=auth)
            assert listed.status_code == 200, listed.text
            names = {a["metadata"]["name"] for a in listed.json()["items"]}
            assert names == {"inside", "outside"}
            first = (await app_status(api, control_ns, "inside"))["operationState"]
            assert (first["operation"].get("initiatedBy") or {}).get("automated"), first
            synced = await client.post("/api/v1/applications/inside/sync", json={}, headers=auth)
            assert synced.status_code == 200, synced.text

        async def resynced() -> bool:
            # The admin's operation, not the first (automated) one: their startedAt may be
            # the same second (RFC 3339 without fractions), so it cannot tell them apart.
            state = (await app_status(api, control_ns, "inside")).get("operationState") or {}
            by = ((state.get("operation") or {}).get("initiatedBy") or {}).get("username")
            return by == "admin" and state.get("phase") == "Succeeded"

        await eventually(resynced, timeout=90, what="the sync the server requested")
        assert "forbidden" not in server_log.read_text().lower(), server_log.read_text()[-3000:]

        # helm upgrade: a second delivery namespace; a refresh of the refused app syncs it.
        two = ["--set", f"rbac.deliverNamespaces={{{deliver},{elsewhere}}}"]
        helm(home, "upgrade", "gitsail", str(CHART), *common, *two, kubeconfig=kc)
        await api.merge_patch(
            "argoproj.io/v1alpha1",
            "Application",
            "outside",
            {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
            control_ns,
        )
        await eventually(
            lambda: _synced(api, control_ns, "outside"), timeout=120, what="outside after upgrade"
        )
        assert await api.get("v1", "ConfigMap", "outside", elsewhere) is not None
        assert await _synced(api, control_ns, "inside")
    finally:
        for running in (proc, server):
            if running is not None:
                stop(running)
        helm(home, "uninstall", "gitsail", "-n", control_ns, "--wait", kubeconfig=kc)
    # Nothing of the release is left (the CRDs were not its own here; crds.keep anyway).
    rbac = "rbac.authorization.k8s.io/v1"
    for kind, name, ns in (
        *[("ClusterRole", n, None) for n in (role, f"{role}-deliver", f"{role}-server")],
        ("ClusterRole", f"{role}-server-control", None),
        *[("ClusterRoleBinding", n, None) for n in (role, f"{role}-server")],
        ("RoleBinding", "gitsail-controller-deliver", deliver),
        ("RoleBinding", "gitsail-controller-deliver", elsewhere),
        ("RoleBinding", "gitsail-server-control", control_ns),
    ):
        assert await api.get(rbac, kind, name, ns) is None, (kind, name, ns)
    for kind in ("Deployment", "Service", "ServiceAccount"):
        api_version = "apps/v1" if kind == "Deployment" else "v1"
        for name in ("gitsail-controller", "gitsail-server"):
            assert await api.get(api_version, kind, name, control_ns) is None, (kind, name)
    helm_secrets = await api.list("v1", "Secret", control_ns, label_selector="owner=helm")
    assert helm_secrets == []
    for ns in (deliver, elsewhere):
        with contextlib.suppress(KubeError):
            await api.delete("v1", "Namespace", ns, propagation="Background")
    await asyncio.sleep(0)
    return seen
