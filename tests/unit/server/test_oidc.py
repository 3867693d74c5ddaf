"""OIDC: reading ``oidc.config``, the state cookie, and the code flow against the test
issuer (in memory, through ``httpx.ASGITransport``; real RSA keys and RS256 tokens)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gitsail.server.oidc import (
    OidcConfig,
    OidcError,
    OidcProvider,
    StateCookie,
    claim_values,
    parse_oidc_config,
    pkce_challenge,
)
from tests.unit.server.oidc_issuer import CLIENT_ID, CLIENT_SECRET, Issuer

URL = "http://127.0.0.1:9"
REDIRECT = "http://127.0.0.1:8080/auth/callback"


def provider(issuer: Issuer) -> OidcProvider:
    config = OidcConfig("Test", URL, CLIENT_ID, CLIENT_SECRET, ("openid", "groups"))
    return OidcProvider(config, transport=httpx.ASGITransport(app=issuer.app()))


async def sign_in(issuer: Issuer, p: OidcProvider, state: StateCookie) -> str:
    """What the browser does: follow the authorization URL, return the code."""
    target = await p.authorization_url(REDIRECT, state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer.app())) as client:
        answer = await client.get(target)
    assert answer.status_code == 302, answer.text
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert back["state"] == [state.state]
    return back["code"][0]


async def test_the_code_flow_gives_verified_claims() -> None:
    issuer = Issuer(URL)
    p = provider(issuer)
    state = StateCookie.fresh("/applications")
    code = await sign_in(issuer, p, state)
    token = await p.exchange(code, REDIRECT, state.verifier)
    claims = await p.verify(token, state.nonce)
    assert claims["sub"] == "sso-user-1"
    assert claims["groups"] == ["team-a-devs", "everyone"]


async def test_the_authorization_url_carries_pkce_nonce_and_requested_claims() -> None:
    issuer = Issuer(URL)
    config = OidcConfig(
        "Test", URL, CLIENT_ID, CLIENT_SECRET, ("openid",), {"groups": {"essential": True}}
    )
    p = OidcProvider(config, transport=httpx.ASGITransport(app=issuer.app()))
    state = StateCookie.fresh("/")
    q = parse_qs(urlsplit(await p.authorization_url(REDIRECT, state)).query)
    assert q["code_challenge"] == [pkce_challenge(state.verifier)]
    assert q["code_challenge_method"] == ["S256"]
    assert q["nonce"] == [state.nonce]
    assert q["state"] == [state.state]
    assert q["claims"] == ['{"id_token":{"groups":{"essential":true}}}']


async def test_a_wrong_verifier_is_refused_by_the_issuer() -> None:
    issuer = Issuer(URL)
    p = provider(issuer)
    state = StateCookie.fresh("/")
    code = await sign_in(issuer, p, state)
    with pytest.raises(OidcError, match="HTTP 400: invalid_grant"):
        await p.exchange(code, REDIRECT, "another-verifier-" + "x" * 40)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"aud": "another-client"}, "another client"),
        ({"iss": "http://127.0.0.1:10"}, "another issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "replayed"}, "nonce"),
        ({"aud": [CLIENT_ID, "other"]}, "azp"),
    ],
)
async def test_a_tampered_id_token_is_refused(tamper: dict[str, object], message: str) -> None:
    issuer = Issuer(URL, tamper=tamper)
    p = provider(issuer)
    state = StateCookie.fresh("/")
    token = await p.exchange(await sign_in(issuer, p, state), REDIRECT, state.verifier)
    with pytest.raises(OidcError, match=message):
        await p.verify(token, state.nonce)


async def test_a_token_signed_with_an_unpublished_key_is_refused() -> None:
    issuer = Issuer(URL, sign_with_unpublished_key=True)
    p = provider(issuer)
    state = StateCookie.fresh("/")
    token = await p.exchange(await sign_in(issuer, p, state), REDIRECT, state.verifier)
    with pytest.raises(OidcError, match="signature"):
        await p.verify(token, state.nonce)


async def test_hs256_and_none_are_refused_whatever_the_key() -> None:
    import jwt

    issuer = Issuer(URL)
    p = provider(issuer)
    claims = {"iss": URL, "aud": CLIENT_ID, "sub": "x", "iat": 1, "exp": 2**40, "nonce": "n"}
    # The classic confusion: the issuer's *public* key used as an HMAC secret.
    forged = jwt.encode(claims, CLIENT_SECRET * 2, algorithm="HS256")
    with pytest.raises(OidcError, match="not RS256"):
        await p.verify(forged, "n")
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(OidcError, match="not RS256"):
        await p.verify(unsigned, "n")


async def test_a_discovery_document_naming_another_issuer_is_refused() -> None:
    issuer = Issuer("http://127.0.0.1:10")  # serves a document for another issuer URL
    with pytest.raises(OidcError, match="another issuer"):
        await provider(issuer).discovery()


def test_the_state_cookie_is_signed_and_short_lived() -> None:
    key = b"k" * 32
    state = StateCookie.fresh("/applications/argocd/x", now=1000.0)
    value = state.encode(key)
    assert StateCookie.decode(key, value, now=1100.0) == state
    with pytest.raises(OidcError, match="too long"):
        StateCookie.decode(key, value, now=1000.0 + 301)
    with pytest.raises(OidcError, match="not valid"):
        StateCookie.decode(b"o" * 32, value, now=1100.0)
    body, mac = value.split(".")
    with pytest.raises(OidcError, match="not valid"):
        StateCookie.decode(key, body[:-2] + "AA." + mac, now=1100.0)


def test_oidc_config_reads_argo_cds_keys_and_the_secret_reference() -> None:
    cm = {
        "oidc.config": (
            "name: Okta\nissuer: https://idp.example.com\nclientID: abc\n"
            "clientSecret: $oidc.okta.clientSecret\n"
            "requestedScopes: [profile, groups]\n"
            "requestedIDTokenClaims: {groups: {essential: true}}\n"
        )
    }
    config = parse_oidc_config(cm, {"oidc.okta.clientSecret": "s3"})
    assert config is not None
    assert (config.name, config.issuer, config.client_id, config.client_secret) == (
        "Okta",
        "https://idp.example.com",
        "abc",
        "s3",
    )
    assert config.scopes == ("openid", "profile", "groups")
    assert config.id_token_claims == {"groups": {"essential": True}}
    assert parse_oidc_config({}, {}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("issuer: https://i\n", "issuer and clientID"),
        ("issuer: http://idp.example.com\nclientID: a\n", "https"),
        ("issuer: https://u:p@i.example\nclientID: a\n", "credentials"),
        ("issuer: https://i.example\nclientID: a\nclientSecret: $missing\n", "no key missing"),
        ("issuer: https://i.example\nclientID: a\nclientSecret: $other:key\n", "not supported"),
        ("[not, a, mapping]", "mapping"),
    ],
)
def test_a_bad_oidc_config_is_refused(text: str, message: str) -> None:
    with pytest.raises(OidcError, match=message):
        parse_oidc_config({"oidc.config": text}, {})


def test_claim_values_take_strings_and_lists_and_refuse_too_many() -> None:
    claims = {"groups": ["a", "b", 3], "email": "c@x", "other": {"x": 1}}
    assert claim_values(claims, ("groups", "email", "other", "absent")) == {
        "groups": ["a", "b"],
        "email": ["c@x"],
    }
    with pytest.raises(OidcError, match="more than"):
        claim_values({"groups": [f"g{i}" for i in range(500)]}, ("groups",))
