"""Argo CD's ``awsAuthConfig`` against a real STS API (moto on loopback): a cluster Secret
with ``clusterName`` and ``roleARN`` gives a client whose bearer token is an EKS token, and
a loopback "apiserver" that authenticates as EKS's authenticator does (decode the token,
replay the presigned GetCallerIdentity URL to STS with the ``x-k8s-aws-id`` header, read
who signed it) lets the request in as the assumed role. moto checks no signature (the
signature is compared with botocore's in the unit tests); it does check the call's shape."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gitsail.kinds.argo_cluster import read_cluster_secret
from gitsail.kube import Kube, Unauthorized
from tests.integration.externalsecrets.conftest import Moto, moto

__all__ = ["moto"]

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/argocd-deployer"


class EKSLikeAuthenticator(BaseHTTPRequestHandler):
    """``/version`` for a caller whose EKS token STS accepts for cluster ``prod-eks``."""

    seen: list[dict[str, str]] = []  # noqa: RUF012 - one test's record

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ")
        if not token.startswith("k8s-aws-v1."):
            return self._answer(401, {"reason": "Unauthorized"})
        body = token.removeprefix("k8s-aws-v1.")
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        query = parse_qs(urlsplit(url).query)
        if query.get("X-Amz-SignedHeaders") != ["host;x-k8s-aws-id"]:
            return self._answer(401, {"reason": "Unauthorized"})
        # moto picks the service (and the caller) from an Authorization header's credential
        # scope and checks no signature: the presigned URL's scope is repeated there.
        scope = query["X-Amz-Credential"][0]
        headers = {
            "x-k8s-aws-id": "prod-eks",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
            f"Signature={query['X-Amz-Signature'][0]}",
        }
        answer = httpx.get(url, headers=headers, timeout=30)
        if answer.status_code != 200 or "<Arn>" not in answer.text:
            return self._answer(401, {"reason": "Unauthorized"})
        arn = answer.text.split("<Arn>", 1)[1].split("</Arn>", 1)[0]
        credential = query["X-Amz-Credential"][0]
        self.seen.append({"arn": arn, "credential": credential, "action": query["Action"][0]})
        return self._answer(200, {"major": "1", "minor": "36", "gitVersion": "v1.36.0-eks"})

    def _answer(self, code: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def apiserver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EKSLikeAuthenticator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_aws_auth_config_cluster_is_reached_as_the_assumed_role(
    moto: Moto, apiserver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.address)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCONTROLLER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "controller-secret-key")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = {"awsAuthConfig": {"clusterName": "prod-eks", "roleARN": ROLE}}
    entry = read_cluster_secret(
        {
            "metadata": {"name": "eks", "namespace": "argocd"},
            "stringData": {"name": "eks", "server": apiserver, "config": json.dumps(config)},
        }
    )
    EKSLikeAuthenticator.seen.clear()
    async with Kube(entry.config) as kube:
        version = await kube.server_version()
    assert version["gitVersion"] == "v1.36.0-eks"
    (seen,) = EKSLikeAuthenticator.seen
    assert seen["action"] == "GetCallerIdentity"
    assert seen["arn"].startswith("arn:aws:sts::123456789012:assumed-role/argocd-deployer/")
    assert not seen["credential"].startswith("AKIDCONTROLLER/")  # signed with the role's keys
    assert seen["credential"].endswith("/us-west-2/sts/aws4_request")

    # Without credentials the client says so, naming no secret.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    async with Kube(entry.config) as kube:
        with pytest.raises(Exception, match="no AWS credentials") as raised:
            await kube.server_version()
    assert "controller-secret-key" not in str(raised.value)
    assert not isinstance(raised.value, Unauthorized)
