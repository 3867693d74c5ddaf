from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gitsail.dev.pki import ClusterPKI
from gitsail.kube.auth import ssl_context
from gitsail.kube.client import Kube
from gitsail.kube.config import KubeConfig
from gitsail.kube.errors import ConfigError, Unauthorized
from gitsail.kube.retry import RetryPolicy
from tests.unit.kube.conftest import b64, exec_user, kubeconfig, runs

VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.3"}


class Recorder:
    """A MockTransport handler that remembers Authorization headers and refuses some."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.seen: list[str | None] = []
        self.refuse = refuse or set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization")
        self.seen.append(header)
        if header in self.refuse:
            return httpx.Response(401, json={"kind": "Status", "code": 401, "message": "nope"})
        return httpx.Response(200, json=VERSION)


def kube_for(user: Mapping[str, object], handler: Recorder) -> Kube:
    cfg = KubeConfig.from_dict(kubeconfig(user))
    return Kube(cfg, transport=httpx.MockTransport(handler), retry=RetryPolicy(attempts=1))


async def test_static_token_is_sent_as_bearer() -> None:
    rec = Recorder()
    async with kube_for({"token": "abc"}, rec) as kube:
        await kube.server_version()
    assert rec.seen == ["Bearer abc"]


async def test_basic_auth_header() -> None:
    rec = Recorder()
    async with kube_for({"username": "admin", "password": "pw"}, rec) as kube:
        await kube.server_version()
    assert rec.seen == ["Basic " + base64.b64encode(b"admin:pw").decode()]


async def test_client_certificate_sends_no_authorization_header(pki: ClusterPKI) -> None:
    rec = Recorder()
    user = {
        "client-certificate-data": b64(pki.admin_cert.read_bytes()),
        "client-key-data": b64(pki.admin_key.read_bytes()),
    }
    async with kube_for(user, rec) as kube:
        await kube.server_version()
    assert rec.seen == [None]


async def test_token_file_is_reread_after_a_401(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("old\n")
    rec = Recorder()
    async with kube_for({"tokenFile": str(token)}, rec) as kube:
        await kube.server_version()
        # Rotated on disk and revoked; the cached copy is still the old one.
        token.write_text("new\n")
        rec.refuse.add("Bearer old")
        await kube.server_version()
    assert rec.seen == ["Bearer old", "Bearer old", "Bearer new"]


async def test_static_token_refused_raises_unauthorized_without_the_token() -> None:
    rec = Recorder(refuse={"Bearer sekrit"})
    async with kube_for({"token": "sekrit"}, rec) as kube:
        with pytest.raises(Unauthorized) as info:
            await kube.server_version()
    assert "sekrit" not in str(info.value)
    assert "sekrit" not in repr(info.value)
    assert rec.seen == ["Bearer sekrit"]


async def test_exec_plugin_token_is_cached_and_gets_exec_info(tmp_path: Path) -> None:
    rec = Recorder()
    async with kube_for(exec_user(tmp_path), rec) as kube:
        await kube.server_version()
        await kube.server_version()
    assert rec.seen == ["Bearer tok-1", "Bearer tok-1"]
    assert runs(tmp_path) == 1
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["argv"] == ["--flag"]
    assert seen["info"]["kind"] == "ExecCredential"
    assert seen["info"]["apiVersion"] == "client.authentication.k8s.io/v1"
    assert seen["info"]["spec"]["interactive"] is False
    assert seen["info"]["spec"]["cluster"]["server"] == "https://k.test:6443"


async def test_exec_plugin_v1beta1(tmp_path: Path) -> None:
    rec = Recorder()
    user = exec_user(tmp_path, api_version="client.authentication.k8s.io/v1beta1")
    async with kube_for(user, rec) as kube:
        await kube.server_version()
    assert rec.seen == ["Bearer tok-1"]


async def test_exec_plugin_reruns_on_401_and_repeats_the_request(tmp_path: Path) -> None:
    rec = Recorder(refuse={"Bearer tok-1"})
    async with kube_for(exec_user(tmp_path), rec) as kube:
        assert (await kube.server_version())["gitVersion"] == "v1.36.3"
    assert rec.seen == ["Bearer tok-1", "Bearer tok-2"]
    assert runs(tmp_path) == 2


async def test_exec_credential_is_reused_until_it_expires(tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    rec = Recorder()
    async with kube_for(exec_user(tmp_path, PLUGIN_EXPIRES=soon), rec) as kube:
        await kube.server_version()
        await kube.server_version()
    # Expiring within the refresh margin: each request runs the plugin again.
    assert rec.seen == ["Bearer tok-1", "Bearer tok-2"]

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    other = tmp_path / "later"
    other.mkdir()
    rec = Recorder()
    async with kube_for(exec_user(other, PLUGIN_EXPIRES=later), rec) as kube:
        await kube.server_version()
        await kube.server_version()
    assert rec.seen == ["Bearer tok-1", "Bearer tok-1"]


async def test_exec_plugin_failure_is_a_config_error_with_its_stderr(tmp_path: Path) -> None:
    rec = Recorder()
    async with kube_for(exec_user(tmp_path, PLUGIN_FAIL="1"), rec) as kube:
        with pytest.raises(ConfigError, match="exited with code 3: plugin: login required"):
            await kube.server_version()
    assert rec.seen == []


async def test_missing_exec_command_shows_install_hint(tmp_path: Path) -> None:
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(tmp_path / "no-such-plugin"),
            "installHint": "install it with: brew install thing",
        }
    }
    async with kube_for(user, Recorder()) as kube:
        with pytest.raises(ConfigError, match="brew install thing"):
            await kube.server_version()


async def test_exec_plugin_client_certificate(tmp_path: Path, pki: ClusterPKI) -> None:
    rec = Recorder()
    user = exec_user(tmp_path, PLUGIN_CERT=str(pki.admin_cert), PLUGIN_KEY=str(pki.admin_key))
    async with kube_for(user, rec) as kube:
        await kube.server_version()
    assert rec.seen == [None]
    assert runs(tmp_path) == 1


async def test_exec_plugin_certificate_without_matching_key_is_refused(
    tmp_path: Path, pki: ClusterPKI
) -> None:
    user = exec_user(tmp_path, PLUGIN_CERT=str(pki.admin_cert), PLUGIN_KEY=str(pki.serving_key))
    async with kube_for(user, Recorder()) as kube:
        with pytest.raises(ConfigError, match="not a valid PEM pair"):
            await kube.server_version()


def test_ssl_context_trusts_the_configured_ca(pki: ClusterPKI) -> None:
    cfg = KubeConfig.from_dict(
        kubeconfig({}, {"certificate-authority-data": b64(pki.ca_cert.read_bytes())})
    )
    ctx = ssl_context(cfg)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    subjects = [str(c["subject"]) for c in ctx.get_ca_certs()]
    assert any("gitsail-dev-ca-unit" in s for s in subjects)


def test_ssl_context_insecure_skips_verification() -> None:
    ctx = ssl_context(KubeConfig.from_dict(kubeconfig({}, {"insecure-skip-tls-verify": True})))
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


def test_bad_ca_is_a_config_error() -> None:
    cfg = KubeConfig.from_dict(kubeconfig({}, {"certificate-authority-data": b64(b"junk")}))
    with pytest.raises(ConfigError, match="certificate-authority"):
        ssl_context(cfg)


def test_certificate_data_goes_through_a_private_file_that_is_removed(
    pki: ClusterPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[tuple[int, int]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, *args: object, **kw: object) -> None:
        path = Path(certfile)
        seen.append((path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777))
        original(self, certfile, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    cfg = KubeConfig.from_dict(
        kubeconfig(
            {
                "client-certificate-data": b64(pki.admin_cert.read_bytes()),
                "client-key-data": b64(pki.admin_key.read_bytes()),
            }
        )
    )
    ssl_context(cfg)
    assert seen == [(0o600, 0o700)]
    assert list(tmp_path.iterdir()) == []


def test_client_certificate_files_load_directly(pki: ClusterPKI) -> None:
    user = {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}
    ctx = ssl_context(KubeConfig.from_dict(kubeconfig(user)))
    assert isinstance(ctx, ssl.SSLContext)


async def test_exec_plugin_that_must_prompt_is_refused(tmp_path: Path) -> None:
    user = exec_user(tmp_path)
    user["exec"]["interactiveMode"] = "Always"
    async with kube_for(user, Recorder()) as kube:
        with pytest.raises(ConfigError, match="interactive terminal"):
            await kube.server_version()
    assert runs(tmp_path) == 0
