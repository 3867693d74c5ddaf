"""The ``aws`` provider: Secrets Manager and Parameter Store over their JSON APIs, with STS.

Why not botocore: it would be the controller's largest import (tens of MB of service models,
a second or more of start-up) for three JSON calls; the three calls, Signature Version 4 and
STS's one XML answer fit in this module (the signature is checked against botocore's in the
unit tests). Calls: ``secretsmanager.GetSecretValue`` / ``DescribeSecret`` / ``ListSecrets``,
``AmazonSSM.GetParameter``, and STS ``AssumeRoleWithWebIdentity`` (Query API, unsigned).

Endpoints: ``AWS_ENDPOINT_URL_<SERVICE>`` (``SECRETS_MANAGER``, ``SSM``, ``STS``), then
``AWS_ENDPOINT_URL``, then ``https://<service>.<region>.amazonaws.com`` — the SDKs' standard
settings, read from the controller's environment (``endpoints``).

Authentication: ``auth.secretRef`` (static keys, optional session token) or ``auth.jwt``
(``serviceAccountRef``: a TokenRequest for the ServiceAccount with audience
``sts.amazonaws.com``, then ``AssumeRoleWithWebIdentity`` for the role in its
``eks.amazonaws.com/role-arn`` annotation, or the store's ``role``). Temporary credentials
are kept until five minutes before they expire.

Versions: Secrets Manager ``version`` is a stage (``AWSCURRENT``) unless it starts with
``uuid/`` (a VersionId); Parameter Store ``version`` is the parameter's version number.
``current_version`` is DescribeSecret's ``AWSCURRENT`` VersionId (Secrets Manager only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from gitsail.secrets.external.provider import (
    Credentials,
    Find,
    ProviderError,
    Remote,
    RemoteNotFound,
)
from gitsail.secrets.external.values import go_regexp
from gitsail.secrets.external.vault import SecretRef

__all__ = ["AWSAuth", "AWSConfig", "AWSProvider", "sign_v4"]

MAX_BODY = 1 << 20
MAX_FIND = 1000
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}-[0-9]")
_SERVICE_ENV = {"secretsmanager": "SECRETS_MANAGER", "ssm": "SSM", "sts": "STS"}


@dataclass(frozen=True)
class AWSAuth:
    method: str  # default | secretRef | jwt
    access_key: SecretRef | None = None
    secret_key: SecretRef | None = None
    session_token: SecretRef | None = None
    service_account: tuple[str, str] | None = None  # (namespace, name)


@dataclass(frozen=True)
class AWSConfig:
    service: str  # SecretsManager | ParameterStore
    region: str
    auth: AWSAuth
    role: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class _Keys:
    access_key: str
    secret_key: str
    session_token: str = ""
    until: float = float("inf")


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    service: str,
    access_key: str,
    secret_key: str,
    session_token: str = "",
    now: datetime,
) -> dict[str, str]:
    """The headers to add for AWS Signature Version 4 (``Authorization``, ``X-Amz-Date``,
    ``X-Amz-Security-Token``); ``headers`` must include ``Host``."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    added = {"X-Amz-Date": amz_date}
    if session_token:
        added["X-Amz-Security-Token"] = session_token
    signed = {k.lower(): " ".join(str(v).split()) for k, v in {**headers, **added}.items()}
    names = sorted(signed)
    parts = urlsplit(url)
    query = "&".join(
        sorted(
            f"{_q(k)}={_q(v)}"
            for k, v in (p.split("=", 1) if "=" in p else (p, "") for p in parts.query.split("&"))
            if k
        )
    )
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            query,
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return added


def _q(text: str) -> str:
    from urllib.parse import quote, unquote

    return quote(unquote(text), safe="-_.~")


class AWSProvider:
    """See the module docstring."""

    kind = "aws"

    def __init__(
        self,
        config: AWSConfig,
        credentials: Credentials,
        *,
        endpoints: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        if not _REGION.fullmatch(config.region):
            raise ProviderError(
                f"region {config.region[:40]!r} is not an AWS region",
                reason="InvalidProviderConfig",
            )
        self.config = config
        self.credentials = credentials
        self.endpoints = dict(endpoints or {})
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.clock = clock
        self._keys: _Keys | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._own_http:
            await self.http.aclose()

    def endpoint(self, service: str) -> str:
        specific = self.endpoints.get(f"AWS_ENDPOINT_URL_{_SERVICE_ENV[service]}")
        url = specific or self.endpoints.get("AWS_ENDPOINT_URL")
        return (url or f"https://{service}.{self.config.region}.amazonaws.com").rstrip("/") + "/"

    # -- credentials -------------------------------------------------------------------------

    async def _credentials(self) -> _Keys:
        async with self._lock:
            if self._keys is not None and self.clock() < self._keys.until:
                return self._keys
            auth = self.config.auth
            if auth.method == "secretRef":
                if auth.access_key is None or auth.secret_key is None:
                    raise ProviderError(
                        "auth.secretRef needs accessKeyIDSecretRef and secretAccessKeySecretRef",
                        reason="InvalidProviderConfig",
                    )
                self._keys = _Keys(
                    await self._secret(auth.access_key),
                    await self._secret(auth.secret_key),
                    await self._secret(auth.session_token) if auth.session_token else "",
                    self.clock() + 300,
                )
            elif auth.method == "jwt":
                self._keys = await self._web_identity()
            else:
                raise ProviderError(
                    "the store names no auth: gitsail does not read the controller's own AWS "
                    "credentials for tenants (set auth.secretRef or auth.jwt)",
                    reason="InvalidProviderConfig",
                )
            return self._keys

    async def _secret(self, ref: SecretRef) -> str:
        return (
            (await self.credentials.secret_key(ref.namespace, ref.name, ref.key)).decode().strip()
        )

    async def _web_identity(self) -> _Keys:
        if self.config.auth.service_account is None:
            raise ProviderError("auth.jwt needs serviceAccountRef", reason="InvalidProviderConfig")
        namespace, name = self.config.auth.service_account
        annotations = await self.credentials.service_account_annotations(namespace, name)
        role = annotations.get("eks.amazonaws.com/role-arn") or self.config.role
        if not role:
            raise ProviderError(
                f"ServiceAccount {namespace}/{name} has no eks.amazonaws.com/role-arn annotation "
                "and the store names no role",
                reason="InvalidProviderConfig",
            )
        token = await self.credentials.service_account_token(
            namespace, name, ("sts.amazonaws.com",), 3600
        )
        form = urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": "2011-06-15",
                "RoleArn": role,
                "RoleSessionName": f"gitsail-{namespace}-{name}"[:64],
                "WebIdentityToken": token,
            }
        ).encode()
        answer = await self._send(
            "sts",
            self.endpoint("sts"),
            form,
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            signed=False,
        )
        if answer.status_code >= 300:
            raise ProviderError(
                f"STS AssumeRoleWithWebIdentity for {role} refused ({answer.status_code}): "
                f"{_xml_error(answer.content)}",
                reason="AuthFailed",
            )
        try:
            root = ET.fromstring(answer.content)  # noqa: S314 - bounded answer of the STS endpoint
        except ET.ParseError:
            raise ProviderError(
                "STS answered something that is not XML", reason="AuthFailed"
            ) from None
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if not values.get("AccessKeyId") or not values.get("SecretAccessKey"):
            raise ProviderError("STS answered no credentials", reason="AuthFailed")
        expires = self.clock() + 900
        with_z = values.get("Expiration", "").replace("Z", "+00:00")
        with contextlib.suppress(ValueError):
            expires = datetime.fromisoformat(with_z).timestamp()
        return _Keys(
            values["AccessKeyId"],
            values["SecretAccessKey"],
            values.get("SessionToken", ""),
            expires - 300,
        )

    # -- calls --------------------------------------------------------------------------------

    async def _send(
        self, service: str, url: str, body: bytes, headers: dict[str, str], *, signed: bool = True
    ) -> httpx.Response:
        headers = {**headers, "Host": urlsplit(url).netloc}
        if signed:
            keys = await self._credentials()
            headers.update(
                sign_v4(
                    "POST",
                    url,
                    headers,
                    body,
                    region=self.config.region,
                    service=service,
                    access_key=keys.access_key,
                    secret_key=keys.secret_key,
                    session_token=keys.session_token,
                    now=datetime.fromtimestamp(self.clock(), UTC),
                )
            )
        try:
            answer = await self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"cannot reach {service} at {urlsplit(url).netloc}: {type(exc).__name__}",
                reason="ProviderDown",
            ) from None
        if len(answer.content) > MAX_BODY:
            raise ProviderError(f"{service} answered over {MAX_BODY} bytes")
        return answer

    async def _json(self, service: str, target: str, payload: dict[str, Any], key: str) -> Any:
        answer = await self._send(
            service,
            self.endpoint(service),
            json.dumps(payload).encode(),
            {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
        )
        try:
            doc = answer.json() if answer.content else {}
        except ValueError:
            doc = {}
        if answer.status_code < 300:
            return doc
        code = str(doc.get("__type") or doc.get("code") or "").rsplit("#", 1)[-1]
        if code in ("ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"):
            raise RemoteNotFound(f"key {key!r} not found")
        reason = (
            "Throttled"
            if "Throttl" in code
            else "AuthFailed"
            if "Denied" in code or "Token" in code
            else "ProviderError"
        )
        # AWS messages name ARNs and keys; they do not carry secret values.
        message = str(doc.get("message") or doc.get("Message") or "")[:200]
        raise ProviderError(
            f"{target.split('.')[-1]} {key!r}: {code or answer.status_code} {message}".rstrip(),
            reason=reason,
        )

    def _name(self, key: str) -> str:
        name = self.config.prefix + key
        if not name or len(name) > 2048 or any(ord(c) < 32 for c in name):
            raise ProviderError(f"key {key[:80]!r} is not a valid AWS name", reason="InvalidKey")
        return name

    async def read(self, key: str, version: str, *, metadata: bool = False) -> Remote:
        name = self._name(key)
        if self.config.service == "ParameterStore":
            ref = f"{name}:{version}" if version else name
            doc = await self._json(
                "ssm", "AmazonSSM.GetParameter", {"Name": ref, "WithDecryption": True}, key
            )
            param = doc.get("Parameter") or {}
            return Remote(str(param.get("Value") or "").encode(), str(param.get("Version") or ""))
        payload: dict[str, Any] = {"SecretId": name}
        if version.startswith("uuid/"):
            payload["VersionId"] = version[len("uuid/") :]
        else:
            payload["VersionStage"] = version or "AWSCURRENT"
        if metadata:
            doc = await self._json(
                "secretsmanager", "secretsmanager.DescribeSecret", {"SecretId": name}, key
            )
            tags = {
                t.get("Key"): t.get("Value") for t in doc.get("Tags") or [] if isinstance(t, dict)
            }
            return Remote(json.dumps(tags, sort_keys=True).encode(), "")
        doc = await self._json("secretsmanager", "secretsmanager.GetSecretValue", payload, key)
        if doc.get("SecretString") is not None:
            value = str(doc["SecretString"]).encode()
        elif doc.get("SecretBinary") is not None:
            value = base64.b64decode(str(doc["SecretBinary"]))
        else:
            raise RemoteNotFound(f"key {key!r} has no value")
        return Remote(value, str(doc.get("VersionId") or ""))

    async def current_version(self, key: str) -> str | None:
        if self.config.service != "SecretsManager":
            return None
        doc = await self._json(
            "secretsmanager", "secretsmanager.DescribeSecret", {"SecretId": self._name(key)}, key
        )
        for version_id, stages in (doc.get("VersionIdsToStages") or {}).items():
            if isinstance(stages, list) and "AWSCURRENT" in stages:
                return str(version_id)
        return None

    async def find(self, find: Find) -> dict[str, bytes]:
        if self.config.service != "SecretsManager":
            raise ProviderError("find is implemented for SecretsManager", reason="InvalidKey")
        pattern = go_regexp(find.name, where="find.name.regexp") if find.name else None
        filters: list[dict[str, Any]] = [
            f
            for k, v in find.tags
            for f in ({"Key": "tag-key", "Values": [k]}, {"Key": "tag-value", "Values": [v]})
        ]
        if find.path:
            filters.append({"Key": "name", "Values": [find.path]})
        names: list[str] = []
        token = ""
        while len(names) < MAX_FIND:
            payload: dict[str, Any] = {
                "MaxResults": 100,
                **({"Filters": filters} if filters else {}),
            }
            if token:
                payload["NextToken"] = token
            doc = await self._json(
                "secretsmanager", "secretsmanager.ListSecrets", payload, find.path or "*"
            )
            for entry in doc.get("SecretList") or []:
                tags = {t.get("Key"): t.get("Value") for t in entry.get("Tags") or []}
                if any(tags.get(k) != v for k, v in find.tags):
                    continue
                name = str(entry.get("Name") or "")
                if name and (pattern is None or pattern.search(name)):
                    names.append(name)
            token = str(doc.get("NextToken") or "")
            if not token:
                break
        out: dict[str, bytes] = {}
        for name in names[:MAX_FIND]:
            key = name[len(self.config.prefix) :] if name.startswith(self.config.prefix) else name
            out[key] = (await self.read(key, "")).value
        return out


def _xml_error(body: bytes) -> str:
    codes = re.findall(rb"<(Code|Message)>([^<]{0,200})</", body[:4096])
    return " ".join(v.decode(errors="replace") for _, v in codes) or "no detail"
