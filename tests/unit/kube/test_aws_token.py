"""EKS tokens for Argo CD's ``awsAuthConfig``: the presigned GetCallerIdentity URL equals
botocore's presigned URL for the same request (botocore is a test dependency through moto;
the controller does not import it), the token's shape is aws-iam-authenticator's, and the
credential chain and STS calls run over an in-memory transport."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import botocore.auth as botocore_auth  # pinned in requirements.lock (moto depends on it)
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gitsail.kinds.argo_cluster import ClusterConfigError, read_cluster_secret
from gitsail.kube import ConfigError
from gitsail.kube.aws import (
    AWSAuthConfig,
    AWSCredentials,
    EKSTokenSource,
    eks_token,
    presign_caller_identity,
    sign_headers,
    sts_endpoint,
)

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("token", ["", "session/token+xyz="])
def test_presigned_url_matches_botocore(token: str) -> None:
    url = "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
    request = AWSRequest(method="GET", url=url, headers={"x-k8s-aws-id": "prod-eks"})
    creds = Credentials(KEY, SECRET, token or None)
    botocore_auth.SigV4QueryAuth(creds, "sts", "eu-west-1", expires=60).add_auth(request)
    theirs = request.url
    signed_at = parse_qs(urlsplit(theirs).query)["X-Amz-Date"][0]
    now = dt.datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    ours = presign_caller_identity(
        AWSCredentials(KEY, SECRET, token),
        "prod-eks",
        endpoint="https://sts.eu-west-1.amazonaws.com",
        region="eu-west-1",
        now=now,
    )
    assert parse_qs(urlsplit(ours).query) == parse_qs(urlsplit(theirs).query)
    assert urlsplit(ours)[:3] == urlsplit(theirs)[:3]


def test_sts_post_signature_matches_botocore() -> None:
    url = "https://sts.amazonaws.com/"
    body = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx"
    form = "application/x-www-form-urlencoded; charset=utf-8"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": form, "Host": "sts.amazonaws.com"},
    )
    botocore_auth.SigV4Auth(Credentials(KEY, SECRET, "tok"), "sts", "us-east-1").add_auth(request)
    # Sign at the second botocore signed at.
    now = dt.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    ours = sign_headers(
        AWSCredentials(KEY, SECRET, "tok"),
        url,
        body,
        region="us-east-1",
        now=now.replace(tzinfo=dt.UTC),
    )
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == request.headers["X-Amz-Security-Token"]


def test_the_token_is_the_prefixed_unpadded_base64url_of_the_url() -> None:
    url = "https://sts.amazonaws.com/?Action=GetCallerIdentity&X=1"
    token = eks_token(url)
    assert token.startswith("k8s-aws-v1.")
    assert "=" not in token
    body = token.removeprefix("k8s-aws-v1.")
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode() == url


def test_endpoint_from_the_sdks_settings() -> None:
    assert sts_endpoint({}) == ("https://sts.amazonaws.com", "us-east-1")
    assert sts_endpoint({"AWS_REGION": "eu-west-1"}) == (
        "https://sts.eu-west-1.amazonaws.com",
        "eu-west-1",
    )
    assert sts_endpoint(
        {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5000/", "AWS_REGION": "x-y-1"}
    ) == (
        "http://127.0.0.1:5000",
        "x-y-1",
    )


ASSUMED = b"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>
<SecretAccessKey>rolesecret</SecretAccessKey><SessionToken>rolesession</SessionToken>
</Credentials></AssumeRoleResult></AssumeRoleResponse>"""


class FakeSTS(httpx.AsyncBaseTransport):
    def __init__(self, status: int = 200, body: bytes = ASSUMED) -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.body = status, body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, content=self.body)


async def test_a_role_is_assumed_with_the_base_keys_and_the_token_is_kept() -> None:
    sts = FakeSTS()
    clock = [1_800_000_000.0]
    source = EKSTokenSource(
        AWSAuthConfig("prod", role_arn="arn:aws:iam::123456789012:role/deployer"),
        env={"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
        clock=lambda: clock[0],
        transport=sts,
    )
    token = await source.token()
    (call,) = sts.requests
    assert call.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert b"Action=AssumeRole" in call.content
    body = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Credential"][0].startswith("ASIAROLE/")  # signed as the role
    assert query["X-Amz-Security-Token"] == ["rolesession"]
    assert query["X-Amz-SignedHeaders"] == ["host;x-k8s-aws-id"]
    assert await source.token() == token  # kept
    assert len(sts.requests) == 1
    clock[0] += 14 * 60
    assert await source.token() != token  # renewed before EKS's 15 minutes
    assert "rolesecret" not in repr(source)


async def test_profile_keys_and_missing_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"[ops]\naws_access_key_id = AKIAOPS\naws_secret_access_key = {SECRET}\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    token = await EKSTokenSource(AWSAuthConfig("c", profile="ops"), env=env).token()
    body = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    assert "AKIAOPS%2F" in url
    with pytest.raises(ConfigError, match="profile 'nope' is not in"):
        await EKSTokenSource(AWSAuthConfig("c", profile="nope"), env=env).token()
    with pytest.raises(ConfigError, match="no AWS credentials"):
        await EKSTokenSource(AWSAuthConfig("c"), env={}).token()


async def test_an_sts_refusal_names_the_code_not_the_secret() -> None:
    error = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error>"
    error += b"</ErrorResponse>"
    source = EKSTokenSource(
        AWSAuthConfig("c", role_arn="arn:aws:iam::123456789012:role/x"),
        env={"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
        transport=FakeSTS(403, error),
    )
    with pytest.raises(ConfigError) as raised:
        await source.token()
    assert str(raised.value) == "awsAuthConfig: STS AssumeRole answered HTTP 403: AccessDenied"
    assert SECRET not in str(raised.value)


def cluster(config: str) -> dict[str, object]:
    return {
        "metadata": {"name": "eks", "namespace": "argocd"},
        "stringData": {"server": "https://eks.example", "name": "eks", "config": config},
    }


def test_a_cluster_secret_with_aws_auth_config() -> None:
    entry = read_cluster_secret(
        cluster(
            '{"awsAuthConfig": {"clusterName": "prod-1", '
            '"roleARN": "arn:aws:iam::123456789012:role/argocd"}, '
            '"tlsClientConfig": {"insecure": false}}'
        )
    )
    assert entry.config.aws == AWSAuthConfig("prod-1", "arn:aws:iam::123456789012:role/argocd")
    assert entry.config.auth_kind == "aws"
    for bad, field in (
        (
            '{"awsAuthConfig": {"roleARN": "arn:aws:iam::123456789012:role/x"}}',
            "clusterName is required",
        ),
        ('{"awsAuthConfig": {"clusterName": "a b"}}', "clusterName is not a valid"),
        ('{"awsAuthConfig": {"clusterName": "a", "roleARN": "role/x"}}', "roleARN is not a valid"),
        ('{"awsAuthConfig": {"clusterName": "a", "profile": "../x"}}', "profile is not a valid"),
    ):
        with pytest.raises(ClusterConfigError, match=field):
            read_cluster_secret(cluster(bad))
