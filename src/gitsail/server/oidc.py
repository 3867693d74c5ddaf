"""OIDC sign-in (``oidc.config`` in ``argocd-cm``): the authorization-code flow with PKCE.

The configuration is Argo CD's:

.. code-block:: yaml

    url: https://gitsail.example.com          # the server's external URL (redirects)
    oidc.config: |
      name: Okta
      issuer: https://example.okta.com
      clientID: aaabbbccc
      clientSecret: $oidc.okta.clientSecret   # a key of argocd-secret
      requestedScopes: ["openid", "profile", "email", "groups"]
      requestedIDTokenClaims: {"groups": {"essential": true}}

The flow: ``/auth/login`` sends the browser to the issuer's ``authorization_endpoint`` (from
its discovery document) with a fresh ``state``, ``nonce`` and PKCE ``code_challenge``
(S256); these travel in a short-lived cookie signed with ``server.secretkey``.
``/auth/callback`` checks ``state``, exchanges the code (with the ``code_verifier`` and the
client secret) at the ``token_endpoint`` and verifies the ID token: RS256 only, a key of the
issuer's JWKS (``jwks_uri``), ``iss``, ``aud`` (and ``azp`` when there are several
audiences), ``exp``/``iat`` and the ``nonce``. The user is then signed in with a gitsail
session token whose subject is the ID token's ``sub`` and which carries the values of the
claims ``argocd-rbac-cm`` names in ``scopes`` (``[groups]`` by default): those are the
user's RBAC subjects besides the name.

Everything fetched from the issuer is bounded (size, time) and the issuer and its endpoints
must be ``https`` URLs (``http`` only on a loopback host, for tests and local issuers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
import yaml

__all__ = [
    "OidcConfig",
    "OidcError",
    "OidcProvider",
    "StateCookie",
    "claim_values",
    "parse_oidc_config",
    "pkce_challenge",
]

DEFAULT_SCOPES = ("openid", "profile", "email")
MAX_DOCUMENT_BYTES = 1024 * 1024
HTTP_TIMEOUT = 10.0
DISCOVERY_SECONDS = 3600.0  # the discovery document is read again after this
JWKS_REFETCH_SECONDS = 30.0  # an unknown key id refetches the JWKS at most this often
LEEWAY_SECONDS = 60
STATE_SECONDS = 300  # the browser has this long to come back from the issuer
MAX_CLAIM_VALUES = 200
MAX_CLAIM_VALUE_CHARS = 256


class OidcError(Exception):
    """Sign-in through the issuer failed; the message says why, never a secret."""


@dataclass(frozen=True)
class OidcConfig:
    name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    id_token_claims: Mapping[str, Any] = field(default_factory=dict)


def _check_url(url: str, what: str) -> str:
    """An ``https`` URL (``http`` on a loopback host only), without credentials or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise OidcError(f"{what} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise OidcError(f"{what} must be an https URL")
    if parts.username or parts.password or parts.fragment:
        raise OidcError(f"{what} must not carry credentials or a fragment")
    if parts.scheme == "http":
        loopback = host == "localhost"
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        if not loopback:
            raise OidcError(f"{what} must be an https URL (http only on a loopback host)")
    return url


def parse_oidc_config(
    cm: Mapping[str, str] | None, secret: Mapping[str, str] | None
) -> OidcConfig | None:
    """The OIDC configuration of ``argocd-cm`` (None when there is none); OidcError when it
    cannot be read, names a missing secret key, or lacks issuer/clientID."""
    text = (cm or {}).get("oidc.config")
    if not text or not str(text).strip():
        return None
    try:
        data = yaml.safe_load(str(text))
    except yaml.YAMLError:
        raise OidcError("oidc.config in argocd-cm is not YAML") from None
    if not isinstance(data, dict):
        raise OidcError("oidc.config in argocd-cm is a mapping")
    issuer = data.get("issuer")
    client_id = data.get("clientID")
    if not isinstance(issuer, str) or not issuer or not isinstance(client_id, str) or not client_id:
        raise OidcError("oidc.config needs issuer and clientID")
    _check_url(issuer, "oidc.config issuer")
    client_secret = data.get("clientSecret") or ""
    if not isinstance(client_secret, str):
        raise OidcError("oidc.config clientSecret is a string")
    if client_secret.startswith("$"):
        ref = client_secret[1:]
        if ":" in ref:
            raise OidcError(
                "oidc.config clientSecret: references to Secrets other than argocd-secret "
                "($secret:key) are not supported; use a key of argocd-secret ($key)"
            )
        value = (secret or {}).get(ref)
        if not value:
            raise OidcError(f"oidc.config clientSecret: argocd-secret has no key {ref}")
        client_secret = value
    scopes = data.get("requestedScopes") or list(DEFAULT_SCOPES)
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise OidcError("oidc.config requestedScopes is a list of strings")
    if "openid" not in scopes:
        scopes = ["openid", *scopes]
    claims = data.get("requestedIDTokenClaims") or {}
    if not isinstance(claims, dict):
        raise OidcError("oidc.config requestedIDTokenClaims is a mapping")
    return OidcConfig(
        name=str(data.get("name") or "SSO"),
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        id_token_claims=claims,
    )


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claim_values(claims: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, list[str]]:
    """The string values of the named claims (a string, or a list of strings); OidcError
    when there are more than a session can hold: dropping some could drop a deny."""
    out: dict[str, list[str]] = {}
    total = 0
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, list):
            values = [v for v in value if isinstance(v, str)]
        else:
            continue
        if any(len(v) > MAX_CLAIM_VALUE_CHARS for v in values):
            raise OidcError(f"a value of the {name} claim is longer than {MAX_CLAIM_VALUE_CHARS}")
        total += len(values)
        if total > MAX_CLAIM_VALUES:
            raise OidcError(f"the ID token has more than {MAX_CLAIM_VALUES} group values")
        out[name] = values
    return out


@dataclass(frozen=True)
class StateCookie:
    """What the browser carries to the issuer and back: signed, short-lived."""

    state: str
    nonce: str
    verifier: str
    next: str
    expires: int

    @classmethod
    def fresh(cls, next_path: str, now: float | None = None) -> StateCookie:
        issued = time.time() if now is None else now
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 allows 43-128
            next=next_path,
            expires=int(issued) + STATE_SECONDS,
        )

    def encode(self, key: bytes) -> str:
        body = base64.urlsafe_b64encode(
            json.dumps(
                [self.state, self.nonce, self.verifier, self.next, self.expires],
                separators=(",", ":"),
            ).encode()
        ).decode()
        mac = hmac.new(key, f"oidc-state:{body}".encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    @classmethod
    def decode(cls, key: bytes, value: str, now: float | None = None) -> StateCookie:
        if not value or len(value) > 2048 or value.count(".") != 1:
            raise OidcError("the sign-in state is missing: start again")
        body, mac = value.split(".")
        expected = hmac.new(key, f"oidc-state:{body}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            raise OidcError("the sign-in state is not valid: start again")
        try:
            state, nonce, verifier, next_path, expires = json.loads(base64.urlsafe_b64decode(body))
        except (ValueError, TypeError):
            raise OidcError("the sign-in state is not valid: start again") from None
        if (time.time() if now is None else now) > int(expires):
            raise OidcError("the sign-in took too long: start again")
        return cls(str(state), str(nonce), str(verifier), str(next_path), int(expires))


@dataclass
class OidcProvider:
    """One issuer: its discovery document and keys (cached), the authorization URL, the
    code exchange and the ID token's verification."""

    config: OidcConfig
    clock: Callable[[], float] = time.time
    transport: httpx.AsyncBaseTransport | None = None  # unit tests: an in-memory issuer
    _discovery: tuple[float, dict[str, Any]] | None = None
    _jwks: tuple[float, jwt.PyJWKSet] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, follow_redirects=False, transport=self.transport
        )

    async def _json(
        self, client: httpx.AsyncClient, request: httpx.Request, what: str
    ) -> dict[str, Any]:
        try:
            response = await client.send(request, stream=True)
            try:
                raw = b""
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_DOCUMENT_BYTES:
                        raise OidcError(f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise OidcError(f"{what}: {type(exc).__name__}") from None
        if response.status_code != 200:
            detail = ""
            try:
                body = json.loads(raw)
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    detail = f": {body['error'][:100]}"
            except ValueError:
                pass
            raise OidcError(f"{what} answered HTTP {response.status_code}{detail}")
        try:
            value = json.loads(raw)
        except ValueError:
            raise OidcError(f"{what} is not JSON") from None
        if not isinstance(value, dict):
            raise OidcError(f"{what} is not a JSON object")
        return value

    async def discovery(self) -> dict[str, Any]:
        """The issuer's ``/.well-known/openid-configuration`` (its ``issuer`` must be the
        configured one, as OIDC Discovery requires)."""
        cached = self._discovery
        if cached is not None and self.clock() - cached[0] < DISCOVERY_SECONDS:
            return cached[1]
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with self._client() as client:
            doc = await self._json(
                client, client.build_request("GET", url), "the discovery document"
            )
        if doc.get("issuer") != self.config.issuer:
            raise OidcError("the discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str):
                raise OidcError(f"the discovery document has no {key}")
            _check_url(value, f"the issuer's {key}")
        self._discovery = (self.clock(), doc)
        return doc

    async def authorization_url(self, redirect_uri: str, state: StateCookie) -> str:
        doc = await self.discovery()
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state.state,
            "nonce": state.nonce,
            "code_challenge": pkce_challenge(state.verifier),
            "code_challenge_method": "S256",
        }
        if self.config.id_token_claims:
            params["claims"] = json.dumps(
                {"id_token": self.config.id_token_claims}, separators=(",", ":")
            )
        endpoint = str(doc["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    async def exchange(self, code: str, redirect_uri: str, verifier: str) -> str:
        """The ID token the issuer gives for ``code`` (client_secret_basic and PKCE)."""
        if not code or len(code) > 4096:
            raise OidcError("the issuer sent no usable authorization code")
        doc = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        auth = httpx.BasicAuth(self.config.client_id, self.config.client_secret)
        async with self._client() as client:
            request = client.build_request("POST", str(doc["token_endpoint"]), data=form)
            request = next(auth.auth_flow(request))
            answer = await self._json(client, request, "the token endpoint")
        token = answer.get("id_token")
        if not isinstance(token, str) or not token:
            raise OidcError("the token endpoint gave no id_token")
        return token

    async def _keys(self, refetch: bool) -> jwt.PyJWKSet:
        async with self._lock:
            cached = self._jwks
            if cached is not None and (
                not refetch or self.clock() - cached[0] < JWKS_REFETCH_SECONDS
            ):
                return cached[1]
            doc = await self.discovery()
            async with self._client() as client:
                data = await self._json(
                    client, client.build_request("GET", str(doc["jwks_uri"])), "the JWKS"
                )
            try:
                keys = jwt.PyJWKSet.from_dict(data)
            except jwt.PyJWTError as exc:
                raise OidcError(f"the JWKS cannot be read: {exc}") from None
            self._jwks = (self.clock(), keys)
            return keys

    async def _key_for(self, kid: str | None) -> jwt.PyJWK:
        for refetch in (False, True):
            keys = await self._keys(refetch)
            signing = [k for k in keys.keys if k.public_key_use in (None, "sig")]
            if kid is None and len(signing) == 1:
                return signing[0]
            for key in signing:
                if key.key_id == kid:
                    return key
        raise OidcError("the ID token is signed with a key the issuer does not publish")

    async def verify(self, token: str, nonce: str | None) -> dict[str, Any]:
        """The claims of an ID token this issuer signed for this client and this sign-in
        (``nonce``; None for a bearer ID token, whose sign-in was not this server's)."""
        if len(token) > 16384:
            raise OidcError("the ID token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("the ID token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise OidcError(f"the ID token's algorithm {header.get('alg')!r} is not RS256")
        kid = header.get("kid")
        key = await self._key_for(kid if isinstance(kid, str) else None)
        if key.key_type != "RSA":
            raise OidcError("the issuer's key for the ID token is not an RSA key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("the ID token is expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("the ID token is for another client (aud)") from None
        except jwt.InvalidIssuerError:
            raise OidcError("the ID token is from another issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise OidcError("the ID token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is not valid: {exc}") from None
        audience = claims.get("aud")
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and claims.get("azp") != self.config.client_id
        ):
            raise OidcError("the ID token has several audiences and azp is not this client")
        got = claims.get("nonce")
        if nonce is not None and (not isinstance(got, str) or not hmac.compare_digest(got, nonce)):
            raise OidcError("the ID token's nonce does not match this sign-in")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise OidcError("the ID token has no usable sub claim")
        return claims
