"""``gitsail controller --sealed-secrets`` as a real process: it generates its key in the key
namespace, serves ``/v1/cert.pem``, and unseals what the real ``kubeseal`` sealed with that
certificate into the Secret, with ``Synced=True``; its log never holds the plaintext."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitsail.dev.cluster import Cluster, free_ports
from tests.integration.helpers import Kube as RawKube
from tests.integration.helpers import condition, eventually

from .conftest import plain_secret

pytestmark = pytest.mark.integration

PLAINTEXT = "controller-flow-secret-81hd"


@pytest.fixture
def controller_url(
    cluster: Cluster, namespace: str, sealed_crd: None, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    (port,) = free_ports(1)
    log = tmp_path / "controller.log"
    argv = [
        sys.executable, "-m", "gitsail", "controller", "-n", namespace,
        "--kubeconfig", str(cluster.kubeconfig), "--listen", f"127.0.0.1:{port}",
        "--no-leader-elect", "--no-flux", "--log-level", "debug",
        "--sealed-secrets", "--sealed-secrets-key-namespace", namespace,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def test_kubeseal_with_the_controllers_cert_is_unsealed_by_gitsails_controller(
    kube: RawKube,
    cluster: Cluster,
    kubeseal: Path,
    namespace: str,
    controller_url: tuple[str, Path],
) -> None:
    url, log = controller_url

    def cert() -> bytes | None:
        try:
            answer = httpx.get(f"{url}/v1/cert.pem", timeout=5)
        except httpx.HTTPError:
            return None
        return answer.content if answer.status_code == 200 else None

    pem = eventually(cert, timeout=120, what=f"the controller's key\n{log.read_text()[-3000:]}")
    keys = kube.get(
        f"/api/v1/namespaces/{namespace}/secrets"
        "?labelSelector=sealedsecrets.bitnami.com/sealed-secrets-key%3Dactive"
    )
    assert keys is not None
    assert len(keys["items"]) == 1
    assert keys["items"][0]["type"] == "kubernetes.io/tls"
    assert keys["items"][0]["metadata"]["name"].startswith("sealed-secrets-key")
    assert base64.b64decode(keys["items"][0]["data"]["tls.crt"]) == pem

    secret = plain_secret("from-kubeseal", namespace, token=PLAINTEXT)
    sealed = subprocess.run(
        [str(kubeseal), "--cert", f"{url}/v1/cert.pem", "-o", "json"],
        input=json.dumps(secret).encode(),
        capture_output=True,
        check=True,
        timeout=60,
        env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
    ).stdout
    kube.create(
        f"/apis/bitnami.com/v1alpha1/namespaces/{namespace}/sealedsecrets", json.loads(sealed)
    )

    def unsealed() -> dict[str, object] | None:
        return kube.get(f"/api/v1/namespaces/{namespace}/secrets/from-kubeseal")

    produced = eventually(unsealed, timeout=60, what=f"the Secret\n{log.read_text()[-3000:]}")
    assert base64.b64decode(produced["data"]["token"]).decode() == PLAINTEXT  # type: ignore[index]
    sealed_obj = eventually(
        lambda: (
            o
            if condition(
                o := kube.get(
                    f"/apis/bitnami.com/v1alpha1/namespaces/{namespace}/sealedsecrets/from-kubeseal"
                ),
                "Synced",
            )
            == "True"
            else None
        ),
        timeout=30,
        what="Synced=True",
    )
    assert sealed_obj["status"]["observedGeneration"] == 1
    assert PLAINTEXT not in log.read_text()
