"""EKS bearer tokens for Argo CD's ``config.awsAuthConfig`` (``clusterName``, ``roleARN``,
``profile``), made as aws-iam-authenticator and ``argocd-k8s-auth aws`` make them.

A token is ``k8s-aws-v1.`` + the unpadded base64url of a **presigned STS
``GetCallerIdentity`` URL** (Signature Version 4 in the query, 60 s validity) whose signed
headers include ``x-k8s-aws-id: <clusterName>``; the cluster's authenticator replays the
URL to STS to learn who signed it. A token is used for 14 minutes (EKS accepts 15).

Credentials, as the AWS SDKs find them: ``profile`` names a section of the shared
credentials file (``AWS_SHARED_CREDENTIALS_FILE``, default ``~/.aws/credentials``); without
one, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``; then a web
identity (``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, as EKS's IRSA sets them:
``AssumeRoleWithWebIdentity``). With ``roleARN`` those credentials first assume that role
(STS ``AssumeRole``, signed). STS is ``AWS_ENDPOINT_URL_STS``, then ``AWS_ENDPOINT_URL``,
then the regional endpoint of ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else
``https://sts.amazonaws.com`` (``us-east-1``).

Secrets (keys, session tokens, the token) never appear in ``repr`` or in an error message.
Why not botocore: it is not a dependency of the controller (tens of MB of models for two
calls); the signature is checked against botocore's in the unit tests.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import datetime as dt
import hashlib
import hmac
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import httpx

from gitsail.kube.errors import ConfigError

__all__ = [
    "AWSAuthConfig",
    "AWSCredentials",
    "EKSTokenSource",
    "eks_token",
    "presign_caller_identity",
]

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format prefix, not a secret
CLUSTER_HEADER = "x-k8s-aws-id"
TOKEN_LIFETIME = 14 * 60.0  # EKS accepts a token for 15 minutes
PRESIGN_EXPIRES = 60
STS_VERSION = "2011-06-15"
MAX_STS_BODY = 64 * 1024
STS_TIMEOUT = 10.0
_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


@dataclass(frozen=True)
class AWSAuthConfig:
    """Argo CD's ``awsAuthConfig``."""

    cluster_name: str
    role_arn: str = ""
    profile: str = ""


@dataclass(frozen=True)
class AWSCredentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def _q(text: str) -> str:
    return quote(text, safe="-_.~")


def _signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def presign_caller_identity(
    creds: AWSCredentials,
    cluster_name: str,
    *,
    endpoint: str,
    region: str,
    now: dt.datetime,
    expires: int = PRESIGN_EXPIRES,
) -> str:
    """The presigned ``GET <endpoint>/?Action=GetCallerIdentity…`` URL (SigV4 query
    signing; signed headers ``host`` and ``x-k8s-aws-id``)."""
    parts = urlsplit(endpoint)
    host = parts.netloc
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    scope = f"{day}/{region}/sts/aws4_request"
    params = {
        "Action": "GetCallerIdentity",
        "Version": STS_VERSION,
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{creds.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": f"host;{CLUSTER_HEADER}",
    }
    if creds.session_token:
        params["X-Amz-Security-Token"] = creds.session_token
    query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(params.items()))
    path = parts.path or "/"
    canonical = "\n".join(
        [
            "GET",
            path,
            query,
            f"host:{host}\n{CLUSTER_HEADER}:{cluster_name}\n",
            f"host;{CLUSTER_HEADER}",
            hashlib.sha256(b"").hexdigest(),  # an empty body (UNSIGNED-PAYLOAD is S3's)
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(creds.secret_key, day, region, "sts")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"


def eks_token(presigned_url: str) -> str:
    """``k8s-aws-v1.`` + base64url (no padding) of the presigned URL."""
    encoded = base64.urlsafe_b64encode(presigned_url.encode()).decode().rstrip("=")
    return TOKEN_PREFIX + encoded


def sign_headers(
    creds: AWSCredentials,
    url: str,
    body: bytes,
    *,
    region: str,
    now: dt.datetime,
) -> dict[str, str]:
    """SigV4 headers for a form-encoded STS POST (``AssumeRole``)."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "host": parts.netloc,
        "x-amz-date": amz_date,
    }
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    names = sorted(headers)
    canonical = "\n".join(
        [
            "POST",
            parts.path or "/",
            "",
            "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/sts/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(creds.secret_key, day, region, "sts")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def sts_endpoint(env: Mapping[str, str]) -> tuple[str, str]:
    """(endpoint URL, signing region) from the SDKs' standard settings."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    custom = env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL") or ""
    if custom:
        return custom.rstrip("/"), region or "us-east-1"
    if region:
        return f"https://sts.{region}.amazonaws.com", region
    return "https://sts.amazonaws.com", "us-east-1"


def profile_credentials(profile: str, env: Mapping[str, str]) -> AWSCredentials:
    """A profile of the shared credentials file; ``ConfigError`` when it has no keys."""
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.RawConfigParser()
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise ConfigError(
            f"awsAuthConfig: cannot read AWS credentials file {path}: {exc}"
        ) from None
    if not parser.has_section(profile):
        raise ConfigError(f"awsAuthConfig: profile {profile!r} is not in {path}")
    section = parser[profile]
    access, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not access or not secret:
        raise ConfigError(f"awsAuthConfig: profile {profile!r} in {path} has no access keys")
    return AWSCredentials(access, secret, section.get("aws_session_token") or "")


class EKSTokenSource:
    """Tokens for one ``awsAuthConfig``, kept for ``TOKEN_LIFETIME``."""

    def __init__(
        self,
        config: AWSAuthConfig,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.env = env if env is not None else os.environ
        self.clock = clock
        self.transport = transport
        self._token = ""
        self._until = 0.0

    def __repr__(self) -> str:
        return f"EKSTokenSource({self.config.cluster_name!r})"

    async def token(self, *, refresh: bool = False) -> str:
        now = self.clock()
        if self._token and not refresh and now < self._until:
            return self._token
        endpoint, region = sts_endpoint(self.env)
        creds = await self._credentials(endpoint, region)
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        url = presign_caller_identity(
            creds, self.config.cluster_name, endpoint=endpoint, region=region, now=when
        )
        self._token, self._until = eks_token(url), now + TOKEN_LIFETIME
        return self._token

    async def _credentials(self, endpoint: str, region: str) -> AWSCredentials:
        env = self.env
        if self.config.profile:
            base = profile_credentials(self.config.profile, env)
        elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            base = AWSCredentials(
                env["AWS_ACCESS_KEY_ID"],
                env["AWS_SECRET_ACCESS_KEY"],
                env.get("AWS_SESSION_TOKEN") or "",
            )
        elif env.get("AWS_ROLE_ARN") and env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
            path = Path(env["AWS_WEB_IDENTITY_TOKEN_FILE"])
            try:
                identity = (await asyncio.to_thread(path.read_text, encoding="utf-8")).strip()
            except OSError as exc:
                raise ConfigError(
                    f"awsAuthConfig: cannot read web identity token {path}: {exc.strerror}"
                ) from None
            form = {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": STS_VERSION,
                "RoleArn": env["AWS_ROLE_ARN"],
                "RoleSessionName": "gitsail",
                "WebIdentityToken": identity,
            }
            base = await self._sts(endpoint, form, None, region)
        else:
            raise ConfigError(
                "awsAuthConfig: no AWS credentials (a profile, AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)"
            )
        if not self.config.role_arn:
            return base
        form = {
            "Action": "AssumeRole",
            "Version": STS_VERSION,
            "RoleArn": self.config.role_arn,
            "RoleSessionName": "gitsail",
        }
        return await self._sts(endpoint, form, base, region)

    async def _sts(
        self, endpoint: str, form: dict[str, str], creds: AWSCredentials | None, region: str
    ) -> AWSCredentials:
        """An STS call answering ``Credentials`` (signed with ``creds`` when given)."""
        action = form["Action"]
        body = urlencode(form).encode()
        url = endpoint + "/"
        if creds is None:
            headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
        else:
            now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
            headers = sign_headers(creds, url, body, region=region, now=now)
        try:
            async with httpx.AsyncClient(
                timeout=STS_TIMEOUT, transport=self.transport, follow_redirects=False
            ) as client:
                response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ConfigError(f"awsAuthConfig: STS {action}: {type(exc).__name__}") from None
        content = response.content[:MAX_STS_BODY]
        if response.status_code != 200:
            raise ConfigError(
                f"awsAuthConfig: STS {action} answered HTTP {response.status_code}"
                f"{_sts_error(content)}"
            )
        try:
            root = ET.fromstring(content)  # noqa: S314 - STS's own answer, bounded in size
        except ET.ParseError:
            raise ConfigError(f"awsAuthConfig: STS {action} answered no XML") from None
        found = root.find(f".//{_NS}Credentials")
        if found is None:
            found = root.find(".//Credentials")
        if found is None:
            raise ConfigError(f"awsAuthConfig: STS {action} answered no Credentials")

        def text(name: str) -> str:
            node = found.find(f"{_NS}{name}")
            if node is None:
                node = found.find(name)
            return (node.text or "").strip() if node is not None else ""

        if not text("AccessKeyId") or not text("SecretAccessKey"):
            raise ConfigError(f"awsAuthConfig: STS {action} answered incomplete Credentials")
        return AWSCredentials(text("AccessKeyId"), text("SecretAccessKey"), text("SessionToken"))


def _sts_error(content: bytes) -> str:
    """``: <Code>`` of an STS error (the code only; messages may echo input)."""
    try:
        root = ET.fromstring(content)  # noqa: S314 - bounded STS answer
    except ET.ParseError:
        return ""
    for node in root.iter():
        if node.tag.endswith("Code") and node.text:
            return f": {node.text.strip()[:100]}"
    return ""
