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
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from gitsail.dev.cluster import Cluster, free_ports
from tests.integration.helpers import Kube as RawKube
from tests.integration.helpers import condition, eventually

from .conftest import plain_secret

pytestmark = pytest.mark.integration

PLAINTEXT = "controller-flow-secret-81hd"


@pytest.fixture
def controller_url(
    cluster: Cluster, namespace: str, sealed_crd: None, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    (port,) = free_ports(1)
    log = tmp_path / "controller.log"
    argv = [
        sys.executable, "-m", "gitsail", "controller", "-n", namespace,
        "--kubeconfig", str(cluster.kubeconfig), "--listen", f"127.0.0.1:{port}",
        "--no-leader-elect", "--no-flux", "--log-level", "debug",
        "--sealed-secrets", "--sealed-secrets-key-namespace", namespace,
        "--rate-limit-burst", "10",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", log, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _wait_for_cert(url: str, log: Path, proc: subprocess.Popen[bytes]) -> bytes:
    """The controller's certificate once it serves one; fails at once with the controller's
    log when the process died, and with the log at the deadline."""

    def cert() -> bytes | None:
        if proc.poll() is not None:
            raise AssertionError(
                f"the controller exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        return _cert(url)

    try:
        return eventually(cert, timeout=120, what="the controller's key")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ncontroller log:\n{log.read_text()[-3000:]}") from None


def test_kubeseal_with_the_controllers_cert_is_unsealed_by_gitsails_controller(
    kube: RawKube,
    cluster: Cluster,
    kubeseal: Path,
    namespace: str,
    controller_url: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, log, proc = controller_url
    pem = _wait_for_cert(url, log, proc)
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


class _ServiceProxy(ThreadingHTTPServer):
    """The two API server paths kubeseal uses, on loopback, in front of gitsail's controller:
    ``GET services/<name>`` (for the port name) and ``services/http:<name>:http/proxy/...``
    (forwarded). The dev cluster's API server will not proxy to a loopback address
    (Endpoints may not be in 127.0.0.0/8), so this stands in for that one hop; any other
    GET (discovery) goes to the real API server."""

    def __init__(self, target: str, namespace: str, name: str, upstream: httpx.Client) -> None:
        self.target, self.namespace, self.name = target, namespace, name
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ServiceProxy

    def log_message(self, *_args: object) -> None:
        return None

    def _answer(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        s = self.server
        base = f"/api/v1/namespaces/{s.namespace}/services/"
        path = self.path.split("?")[0]
        if method == "GET" and path == base + s.name:
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {"ports": [{"name": "http", "port": 8080}]},
            }
            return self._answer(200, json.dumps(service).encode())
        prefix = base + f"http:{s.name}:http/proxy"
        if not path.startswith(prefix + "/"):
            if method != "GET":
                return self._answer(404, b'{"kind":"Status","code":404}')
            real = s.upstream.get(self.path, headers={"Accept": self.headers.get("Accept", "")})
            ctype = real.headers.get("content-type", "application/json")
            return self._answer(real.status_code, real.content, ctype)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        answer = httpx.request(
            method,
            s.target + path[len(prefix) :],
            content=body,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
            timeout=30,
        )
        ctype = answer.headers.get("content-type", "text/plain")
        return self._answer(answer.status_code, answer.content, ctype)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


def test_kubeseal_fetch_cert_validate_and_re_encrypt_against_gitsails_controller(
    kube: RawKube,
    cluster: Cluster,
    kubeseal: Path,
    namespace: str,
    controller_url: tuple[str, Path, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    url, log, proc = controller_url
    pem = _wait_for_cert(url, log, proc)
    upstream = cluster.http(timeout=30)
    proxy = _ServiceProxy(url, "sealing", "gitsail-sealer", upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "p", "cluster": {"server": proxy.url}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [
                        {"name": "p", "context": {"cluster": "p", "user": "u",
                                                  "namespace": namespace}}
                    ],
                    "current-context": "p",
                }
            )
        )  # fmt: skip
        flags = ["--controller-namespace", "sealing", "--controller-name", "gitsail-sealer"]
        env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}

        def ks(
            *args: str, stdin: bytes = b"", check: bool = True
        ) -> subprocess.CompletedProcess[bytes]:
            proc = subprocess.run(
                [str(kubeseal), *flags, *args], input=stdin, capture_output=True,
                check=False, timeout=60, env=env,
            )  # fmt: skip
            if check:
                assert proc.returncode == 0, proc.stderr.decode()
            return proc

        assert ks("--fetch-cert").stdout == pem
        # gitsail seal takes the same path (Service, then the proxy) for its certificate.
        ours = subprocess.run(
            [sys.executable, "-m", "gitsail", "seal", "--fetch-cert", *flags,
             "--kubeconfig", str(kubeconfig)],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        assert ours == pem

        secret = plain_secret("fetched", namespace, token=PLAINTEXT)
        sealed = ks(stdin=json.dumps(secret).encode()).stdout  # cert fetched from gitsail
        assert ks("--validate", stdin=sealed).returncode == 0
        renamed = json.loads(sealed)
        renamed["metadata"]["name"] = "renamed"
        invalid = ks("--validate", stdin=json.dumps(renamed).encode(), check=False)
        assert invalid.returncode != 0
        rotated = json.loads(ks("--re-encrypt", stdin=sealed).stdout)
        assert (
            rotated["spec"]["encryptedData"]["token"]
            != json.loads(sealed)["spec"]["encryptedData"]["token"]
        )
        kube.create(f"/apis/bitnami.com/v1alpha1/namespaces/{namespace}/sealedsecrets", rotated)
        produced = eventually(
            lambda: kube.get(f"/api/v1/namespaces/{namespace}/secrets/fetched"),
            timeout=60,
            what="the Secret of the re-encrypted SealedSecret",
        )
        assert base64.b64decode(produced["data"]["token"]).decode() == PLAINTEXT
    finally:
        proxy.shutdown()
        proxy.server_close()
        upstream.close()
    assert PLAINTEXT not in log.read_text()


def _cert(url: str) -> bytes | None:
    try:
        answer = httpx.get(f"{url}/v1/cert.pem", timeout=5)
    except httpx.HTTPError:
        return None
    return answer.content if answer.status_code == 200 else None
