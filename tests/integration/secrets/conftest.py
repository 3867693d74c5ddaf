"""Fixtures for the Sealed Secrets interop tests: the CRD, gitsail's key, and Bitnami's real
controller (the pinned test-only build) running against the shared dev cluster.

The real controller only knows in-cluster configuration: it reads its token and CA from
``/var/run/secrets/kubernetes.io/serviceaccount/`` and the API server from
``KUBERNETES_SERVICE_HOST``/``PORT``. It is started in a private mount namespace
(``unshare -m``) with a tmpfs over ``/run`` holding a bound token of a ServiceAccount of the
test's namespace, so nothing outside the process sees those files. It runs with
``--all-namespaces=false`` and ``POD_NAMESPACE`` = the test namespace (its keys and the
SealedSecrets it unseals live there), listening on loopback ports.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail import toolchain
from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster, free_ports
from gitsail.kube import Kube, load_kubeconfig
from gitsail.secrets.keys import SealingKey, generate_key, key_secret
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kubeseal() -> Path:
    return toolchain.find_binary("kubeseal")


@pytest.fixture(scope="session")
def gitsail_key() -> SealingKey:
    # A real 4096-bit key, as gitsail's controller makes them.
    return generate_key(now=datetime.now(UTC))


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        yield kube


@pytest.fixture
async def sealed_crd(api: Kube) -> None:
    await install_crds(api, families=["sealed-secrets"])


@dataclass
class RealController:
    namespace: str
    url: str
    log: Path

    def cert(self) -> bytes:
        response = httpx.get(f"{self.url}/v1/cert.pem", timeout=10)
        response.raise_for_status()
        return response.content

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


async def _service_account_token(api: Kube, namespace: str) -> str:
    await api.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "sealed-secrets", "namespace": namespace},
        }
    )
    await api.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "sealed-secrets", "namespace": namespace},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        }
    )
    await api.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "sealed-secrets", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "sealed-secrets",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "sealed-secrets", "namespace": namespace}
            ],
        }
    )
    answer = await api.create_subresource(
        "v1",
        "ServiceAccount",
        "sealed-secrets",
        "token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
        namespace,
    )
    return str(answer["status"]["token"])


@pytest.fixture
async def real_controller(
    api: Kube,
    cluster: Cluster,
    namespace: str,
    sealed_crd: None,
    gitsail_key: SealingKey,
    tmp_path: Path,
) -> AsyncIterator[RealController]:
    """Bitnami's controller in ``namespace``, holding two active keys: gitsail's (created
    first, as a user brings their own) and one it generates itself at start (forced by
    ``--key-cutoff-time`` = now), which is then its newest."""
    if shutil.which("unshare") is None:
        pytest.fail("the real controller needs unshare(1) (util-linux) for its in-cluster files")
    created = await api.create(key_secret(gitsail_key, namespace=namespace))
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(await _service_account_token(api, namespace))
    shutil.copy(cluster.pki.ca_cert, sa / "ca.crt")
    (sa / "namespace").write_text(namespace)
    http, metrics = free_ports(2)
    binary = toolchain.find_binary("controller")
    target = "/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f'mount -t tmpfs tmpfs /run && mkdir -p {target} && cp {sa}/* {target}/ && exec "$0" "$@"'
    )
    # Strictly after gitsail's key (timestamps have whole seconds): a cutoff in the same
    # second as its creationTimestamp is not "after" it, and the controller then keeps
    # gitsail's key as its newest instead of generating its own.
    born = datetime.fromisoformat(created["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    cutoff = format_datetime(born + timedelta(seconds=1)).replace("GMT", "+0000")
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived server, not awaited
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(binary),
                "--all-namespaces=false",
                f"--listen-addr=127.0.0.1:{http}",
                f"--listen-metrics-addr=127.0.0.1:{metrics}",
                f"--key-cutoff-time={cutoff}",
            ],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(cluster.ports["apiserver"]),
                "POD_NAMESPACE": namespace,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    controller = RealController(namespace, f"http://127.0.0.1:{http}", log)
    try:

        def two_keys() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the real controller exited:\n{controller.logs()}")
            try:
                served = controller.cert()
            except httpx.HTTPError:
                return False
            return served != gitsail_key.cert_pem()

        eventually(two_keys, timeout=120, what="the real controller's own key")
        yield controller
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def plain_secret(name: str, namespace: str | None, **values: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: b64(v) for k, v in values.items()},
    }
