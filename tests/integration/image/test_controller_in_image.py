"""The controller started from the image's filesystem (a chroot of the unpacked image, as
its user, sharing the host's loopback) delivers an Application from the test git server to
the dev cluster: the image works as a pod of the chart would run it."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube as GitsailKube
from tests.integration.app.conftest import crds  # noqa: F401 (fixture)
from tests.integration.chart.lifecycle import chart_lifecycle
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import (  # noqa: F401 (fixtures)
    api,
    control_ns,
    crds_installed,
)
from tests.integration.helpers import Kube, eventually
from tests.integration.image.conftest import Image, devices

pytestmark = [pytest.mark.integration, pytest.mark.image]


@pytest.fixture
def controller_home(rootfs: Path, cluster: Cluster) -> Iterator[Path]:
    devices(rootfs)
    home = rootfs / "home" / "gitsail"
    shutil.copy(cluster.kubeconfig, home / "kubeconfig")
    os.chown(home / "kubeconfig", 65532, 65532)
    yield home
    (home / "kubeconfig").unlink(missing_ok=True)


def test_controller_from_the_image_delivers_an_application(
    crds: None,  # noqa: F811 (the Application CRD: a private cluster starts without it)
    image: Image,
    rootfs: Path,
    controller_home: Path,
    kube: Kube,
    namespace: str,
    git_server: GitServer,
    git_repo: Workdir,
    tmp_path: Path,
) -> None:
    (git_repo.path / "app").mkdir()
    (git_repo.path / "app" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-the-image\ndata:\n  a: '1'\n"
    )
    git_repo.commit("one configmap")
    git_repo.push()

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "loopback-git",
                "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
            },
            "data": {
                "url": b64(git_server.base_url),
                "username": b64(GIT_USER[0]),
                "password": b64(GIT_USER[1]),
            },
        },
    )
    scheme, rest = git_repo.remote.split("://", 1)
    kube.create(
        f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "imaged"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": f"{scheme}://{rest.split('@', 1)[-1]}",
                    "path": "app",
                    "targetRevision": "HEAD",
                },
                "destination": {
                    "server": "https://kubernetes.default.svc",
                    "namespace": namespace,
                },
                "syncPolicy": {"automated": {}},
            },
        },
    )
    (port,) = free_ports(1)
    log = tmp_path / "controller.log"
    argv = [
        "chroot", "--userspec=65532:65532", str(rootfs),
        "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/gitsail",
        "/usr/local/bin/gitsail", "controller", "-n", namespace,
        "--kubeconfig", "/home/gitsail/kubeconfig", "--listen", f"127.0.0.1:{port}",
        "--no-leader-elect", "--resync", "20", "--jitter", "0",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )  # fmt: skip
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"controller exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            return False

        eventually(healthy, timeout=90, what="the controller's /healthz")
        path = f"/api/v1/namespaces/{namespace}/configmaps/from-the-image"
        cm = eventually(lambda: kube.get(path), timeout=120, what=f"the delivered ConfigMap: {log}")
        assert cm["data"] == {"a": "1"}

        def synced() -> bool:
            app = kube.get(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications/imaged")
            status = (app or {}).get("status", {})
            return status.get("sync", {}).get("status") == "Synced"

        eventually(synced, timeout=60, what="the Application Synced")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def test_chart_deployment_spec_run_from_the_image(
    api: GitsailKube,  # noqa: F811
    cluster: Cluster,
    control_ns: str,  # noqa: F811
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,  # noqa: F811
    image: Image,
    rootfs: Path,
) -> None:
    """helm install, then the in-cluster Deployment's container (its arguments, its
    ServiceAccount's token) run from the image's filesystem, then helm upgrade and
    uninstall (tests/integration/chart/lifecycle.py)."""
    devices(rootfs)
    home = rootfs / "home" / "gitsail"

    def run(args: list[str], kubeconfig: str, log: Path) -> subprocess.Popen[bytes]:
        path = home / f"{log.stem}.kubeconfig"
        path.write_text(kubeconfig)
        path.chmod(0o600)
        os.chown(path, 65532, 65532)
        argv = [
            "chroot", "--userspec=65532:65532", str(rootfs),
            "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/gitsail",
            "/usr/local/bin/gitsail", *args, "--kubeconfig", f"/home/gitsail/{path.name}",
        ]  # fmt: skip
        with log.open("ab") as out:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/",
            )  # fmt: skip

    try:
        seen = await chart_lifecycle(
            api, cluster, control_ns, git_repo, tmp_path, run, image="127.0.0.1:5000/gitsail"
        )
    finally:
        for path in home.glob("*.kubeconfig"):
            path.unlink()
    assert seen["container"]["image"] == f"127.0.0.1:5000/gitsail:{image.version}"
