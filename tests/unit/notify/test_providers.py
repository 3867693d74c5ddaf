"""The request of each provider type (pure): shapes, signatures, address checks."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from gitsail.notify.flux import FluxEvent, ProviderSpec
from gitsail.notify.providers import (
    DeliveryError,
    ProviderCredentials,
    build_request,
    commit_sha,
    credentials_from_secret,
    safe_address,
    validate_address,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "s3cr3t-token-value"


def event(severity: str = "error", revision: str = f"main@sha1:{SHA}") -> FluxEvent:
    return FluxEvent(
        involved=(
            ("apiVersion", "kustomize.toolkit.fluxcd.io/v1"),
            ("kind", "Kustomization"),
            ("name", "webapp"),
            ("namespace", "apps"),
            ("uid", "u-1"),
        ),
        severity=severity,
        reason="BuildFailed",
        message="kustomize build failed",
        timestamp=datetime(2026, 12, 2, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        reporting_controller="kustomize-controller",
        metadata=(("kustomize.toolkit.fluxcd.io/revision", revision),) if revision else (),
    )


def spec(ptype: str, address: str = "https://hooks.example.com/flux", **kw: str) -> ProviderSpec:
    return ProviderSpec(
        namespace="apps", name="p", uid="abcdef0123456789", type=ptype, address=address, **kw
    )  # type: ignore[arg-type]


def test_generic_posts_the_event_json() -> None:
    creds = credentials_from_secret({"headers": "X-Team: ops\nAuthorization: Bearer abc"})
    req = build_request(spec("generic"), creds, event())
    assert req.method == "POST"
    assert req.url == "https://hooks.example.com/flux"
    assert json.loads(req.body) == event().payload()
    headers = dict(req.headers)
    assert headers["Gotk-Component"] == "kustomize-controller"
    assert headers["X-Team"] == "ops"
    assert "X-Signature" not in headers


def test_generic_hmac_signs_the_body() -> None:
    req = build_request(spec("generic-hmac"), ProviderCredentials(token=TOKEN), event())
    expected = hmac.new(TOKEN.encode(), req.body, hashlib.sha256).hexdigest()
    assert dict(req.headers)["X-Signature"] == f"sha256={expected}"
    assert TOKEN.encode() not in req.body
    with pytest.raises(DeliveryError, match="needs a token"):
        build_request(spec("generic-hmac"), ProviderCredentials(), event())


def test_secret_address_overrides_spec_address() -> None:
    creds = ProviderCredentials(address="https://other.example.com/hook?token=abc")
    assert build_request(spec("generic"), creds, event()).url.startswith(
        "https://other.example.com"
    )


def test_slack_message() -> None:
    req = build_request(spec("slack", channel="ops"), ProviderCredentials(token=TOKEN), event())
    body = json.loads(req.body)
    assert body["channel"] == "ops"
    assert body["username"] == "kustomize-controller"
    [attachment] = body["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["author_name"] == "Kustomization/webapp.apps"
    assert attachment["text"] == "kustomize build failed"
    assert dict(req.headers)["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in req.body.decode()


def test_msteams_card() -> None:
    body = json.loads(build_request(spec("msteams"), ProviderCredentials(), event("info")).body)
    card = body["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["body"][2]["facts"][0]["title"] == "kustomize.toolkit.fluxcd.io/revision"


def test_github_commit_status() -> None:
    p = spec("github", address="https://github.com/acme/manifests.git")
    req = build_request(p, ProviderCredentials(token=TOKEN), event())
    assert req.url == f"https://api.github.com/repos/acme/manifests/statuses/{SHA}"
    assert json.loads(req.body) == {
        "state": "failure",
        "context": "kustomization/webapp/abcdef01",
        "description": "kustomize build failed",
    }
    assert dict(req.headers)["Authorization"] == f"Bearer {TOKEN}"
    enterprise = spec("github", address="http://127.0.0.1:8080/acme/manifests")
    req = build_request(enterprise, ProviderCredentials(token=TOKEN), event("info"))
    assert req.url == f"http://127.0.0.1:8080/api/v3/repos/acme/manifests/statuses/{SHA}"
    assert json.loads(req.body)["state"] == "success"


def test_gitlab_commit_status() -> None:
    p = spec("gitlab", address="https://gitlab.example.com/group/sub/manifests")
    req = build_request(p, ProviderCredentials(token=TOKEN), event())
    assert req.url == (
        f"https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fmanifests/statuses/{SHA}"
    )
    assert json.loads(req.body)["state"] == "failed"
    assert dict(req.headers)["PRIVATE-TOKEN"] == TOKEN


@pytest.mark.parametrize(
    "address",
    ["https://github.com/acme", "https://github.com/acme/../x", "https://github.com/a/b/c"],
)
def test_commit_status_needs_a_repository(address: str) -> None:
    with pytest.raises(DeliveryError, match="does not name a repository"):
        build_request(spec("github", address=address), ProviderCredentials(token=TOKEN), event())


def test_commit_status_needs_a_commit_and_a_token() -> None:
    p = spec("github", address="https://github.com/acme/m")
    with pytest.raises(DeliveryError, match="no commit"):
        build_request(p, ProviderCredentials(token=TOKEN), event(revision="main"))
    with pytest.raises(DeliveryError, match="token"):
        build_request(p, ProviderCredentials(), event())


@pytest.mark.parametrize(
    ("revision", "sha"),
    [
        (f"main@sha1:{SHA}", SHA),
        (f"main/{SHA}", SHA),
        (SHA, SHA),
        ("v1@sha256:" + "f" * 64, "f" * 64),
    ],
)
def test_commit_sha(revision: str, sha: str) -> None:
    assert commit_sha(revision) == sha


@pytest.mark.parametrize(
    "url",
    ["", "ftp://h/x", "file:///etc/passwd", "https://", "https://h/a b", "https://h/\r\nX: y"],
)
def test_addresses_refused(url: str) -> None:
    with pytest.raises(DeliveryError):
        validate_address(url)


def test_errors_and_logs_never_show_userinfo_or_query() -> None:
    url = "https://user:hunter2@hooks.example.com/x?token=abc"
    assert safe_address(url) == "https://hooks.example.com"
    assert safe_address("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com"
    with pytest.raises(DeliveryError) as exc:
        validate_address("gopher://user:hunter2@h/x")
    assert "hunter2" not in str(exc.value)
    assert "hunter2" not in repr(ProviderCredentials(token="hunter2"))


@pytest.mark.parametrize(
    "headers",
    ["Host: evil", "X-Bad\nY: z", "not a map", 'X-A: "a\\r\\nb"', "[1, 2]"],
)
def test_secret_headers_refused(headers: str) -> None:
    with pytest.raises(DeliveryError):
        credentials_from_secret({"headers": headers})


def test_secret_proxy_refused() -> None:
    with pytest.raises(DeliveryError, match="proxy"):
        credentials_from_secret({"proxy": "http://u:p@proxy:3128"})
