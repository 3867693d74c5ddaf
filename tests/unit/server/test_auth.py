"""Tokens, passwords, accounts, login limiting, CSRF tokens."""

from __future__ import annotations

import base64
import json

import pytest

from gitsail.server.auth import (
    AuthError,
    LoginLimiter,
    accounts_of,
    csrf_token,
    hash_password,
    issue_token,
    verify_password,
    verify_token,
)

KEY = b"k" * 32


def test_token_round_trip_and_expiry() -> None:
    token, claims = issue_token(KEY, "alice", seconds=60, now=1000)
    assert verify_token(KEY, token, now=1030).subject == "alice"
    assert claims.expires == 1060
    with pytest.raises(AuthError, match="expired"):
        verify_token(KEY, token, now=1060)


def test_forged_and_malformed_tokens_refused() -> None:
    token, _ = issue_token(KEY, "alice", now=1000)
    with pytest.raises(AuthError, match="signature"):
        verify_token(b"x" * 32, token, now=1001)
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        verify_token(KEY, f"{head}.{forged}.{sig}", now=1001)
    for bad in ("", "a.b", "a.b.c.d", "x" * 10000, "!!.??.**"):
        with pytest.raises(AuthError):
            verify_token(KEY, bad, now=1001)


def test_passwords_are_bcrypt() -> None:
    hashed = hash_password("s3cret")
    assert hashed.startswith("$2")
    assert verify_password("s3cret", hashed)
    assert not verify_password("wrong", hashed)
    assert not verify_password("s3cret", "not-a-hash")
    assert not verify_password("s3cret", "")


def test_accounts_from_argocd_cm_and_secret() -> None:
    accounts = accounts_of(
        {
            "accounts.alice": "apiKey, login",
            "accounts.bob": "login",
            "accounts.bob.enabled": "false",
            "accounts.Bad Name": "login",
        },
        {
            "admin.password": "$2a$x",
            "accounts.alice.password": "$2a$y",
            "accounts.alice.tokens": '[{"id": "t1", "iat": 1, "exp": 0}]',
        },
    )
    assert set(accounts) == {"admin", "alice", "bob"}
    assert accounts["alice"].capabilities == {"apiKey", "login"}
    assert accounts["alice"].tokens[0]["id"] == "t1"
    assert not accounts["bob"].enabled
    assert "admin" not in accounts_of({"admin.enabled": "false"}, {})


def test_login_limiter_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=3, window=100, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("bob") == 0
        limiter.failed("bob")
    assert limiter.retry_after("bob") == pytest.approx(100)
    assert limiter.retry_after("alice") == 0
    now[0] = 101
    assert limiter.retry_after("bob") == 0


def test_csrf_token_bound_to_session() -> None:
    assert csrf_token(KEY, "a") == csrf_token(KEY, "a")
    assert csrf_token(KEY, "a") != csrf_token(KEY, "b")
