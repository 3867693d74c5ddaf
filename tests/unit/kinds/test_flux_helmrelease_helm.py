"""Helm's release storage read back, and the argv, files and environment helm is given."""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.kinds.helm_actions import (
    HelmActionError,
    HelmActions,
    InstallRequest,
    kubeconfig_document,
)
from gitsail.kinds.helm_storage import StorageError, config_digest, decode_release
from gitsail.kube import KubeConfig
from gitsail.policy import Policy

RELEASE: dict[str, Any] = {
    "name": "redis",
    "namespace": "redis",
    "version": 3,
    "info": {
        "first_deployed": "2026-12-01T10:00:00.123456789+01:00",
        "last_deployed": "2026-12-02T07:00:01.5Z",
        "deleted": "",
        "description": "Upgrade complete",
        "status": "deployed",
    },
    "chart": {"metadata": {"name": "redis", "version": "17.1.0", "appVersion": "7.0.0"}},
    "config": {"architecture": "standalone"},
    "manifest": "---\n# Source: redis/templates/cm.yaml\n",
    "hooks": [
        {
            "name": "redis-test",
            "events": ["test"],
            "last_run": {
                "started_at": "2026-12-02T07:00:02Z",
                "completed_at": "2026-12-02T07:00:04Z",
                "phase": "Succeeded",
            },
        },
        {
            "name": "redis-never",
            "events": ["test"],
            "last_run": {"started_at": "0001-01-01T00:00:00Z", "phase": ""},
        },
        {"name": "redis-migrate", "events": ["pre-upgrade"], "last_run": {"phase": "Succeeded"}},
    ],
}


def storage_secret(body: Any, *, compress: bool = True) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    helm_encoded = base64.b64encode(gzip.compress(raw) if compress else raw)
    return {
        "metadata": {"name": "sh.helm.release.v1.redis.v3", "labels": {"owner": "helm"}},
        "type": "helm.sh/release.v1",
        "data": {"release": base64.b64encode(helm_encoded).decode()},
    }


def test_release_secret_is_read_as_helm_writes_it() -> None:
    release = decode_release(storage_secret(RELEASE))
    assert (release.name, release.namespace, release.version, release.status) == (
        "redis",
        "redis",
        3,
        "deployed",
    )
    assert (release.chart_name, release.chart_version, release.app_version) == (
        "redis",
        "17.1.0",
        "7.0.0",
    )
    assert release.first_deployed == "2026-12-01T09:00:00Z"
    assert release.last_deployed == "2026-12-02T07:00:01Z"
    assert release.config == {"architecture": "standalone"}
    assert [h.name for h in release.test_hooks] == ["redis-never", "redis-test"]
    assert release.tests_ran
    assert release.tests_failed == []
    assert release.digest.startswith("sha256:")
    snapshot = release.snapshot("sha256:abc")
    assert snapshot["testHooks"] == {
        "redis-never": {},
        "redis-test": {
            "lastStarted": "2026-12-02T07:00:02Z",
            "lastCompleted": "2026-12-02T07:00:04Z",
            "phase": "Succeeded",
        },
    }
    assert snapshot["configDigest"] == "sha256:abc"
    assert decode_release(storage_secret(RELEASE, compress=False)).digest == release.digest


@pytest.mark.parametrize(
    "secret",
    [
        {"metadata": {"name": "x"}, "data": {}},
        {"metadata": {"name": "x"}, "data": {"release": "not base64!"}},
        storage_secret(["a list"]),
        {
            "metadata": {"name": "x"},
            "data": {"release": base64.b64encode(b"bm90IGpzb24=").decode()},
        },
    ],
)
def test_storage_that_is_not_helms_is_refused(secret: dict[str, Any]) -> None:
    with pytest.raises(StorageError):
        decode_release(secret)


def test_a_release_that_decompresses_beyond_the_limit_is_refused() -> None:
    body = {**RELEASE, "manifest": "x" * (3 << 20)}
    with pytest.raises(StorageError, match="over"):
        decode_release(storage_secret(body), Policy(render_output_bytes=1 << 20))


def test_config_digest_is_canonical() -> None:
    assert config_digest({"a": 1, "b": {"c": 2}}) == config_digest({"b": {"c": 2}, "a": 1})
    assert config_digest({"a": 1}) != config_digest({"a": 2})


CONFIG = KubeConfig(
    server="https://127.0.0.1:6443",
    ca_data=b"CA",
    client_cert_data=b"CERT",
    client_key_data=b"KEY",
    token="s3cret-token",
)


def test_kubeconfig_document_is_equivalent_to_the_config() -> None:
    doc = kubeconfig_document(CONFIG)
    back = KubeConfig.from_dict(doc)
    assert (back.server, back.ca_data, back.client_cert_data, back.client_key_data, back.token) == (
        CONFIG.server,
        b"CA",
        b"CERT",
        b"KEY",
        "s3cret-token",
    )


@pytest.fixture
def fake_helm(tmp_path: Path) -> Path:
    """A helm that records its argv, environment and kubeconfig, then fails or succeeds."""
    script = tmp_path / "helm"
    log = tmp_path / "calls.jsonl"
    script.write_text(
        f"""#!{sys.executable}
import json, os, stat, sys
argv = sys.argv[1:]
kubeconfig = next(a.split("=", 1)[1] for a in argv if a.startswith("--kubeconfig="))
mode = stat.S_IMODE(os.stat(kubeconfig).st_mode)
with open({str(log)!r}, "a") as out:
    out.write(json.dumps({{"argv": argv, "env": dict(os.environ), "mode": mode,
                          "kubeconfig": open(kubeconfig).read()}}) + "\\n")
if "--fail" in os.environ.get("FAKE", ""):
    sys.exit(1)
"""
    )
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


async def test_helm_gets_checked_argv_a_private_kubeconfig_and_no_credentials(
    fake_helm: Path, tmp_path: Path
) -> None:
    chart = tmp_path / "redis-17.1.0.tgz"
    chart.write_bytes(b"package")
    actions = HelmActions(CONFIG, work_dir=tmp_path / "work", helm=fake_helm)
    request = InstallRequest(chart=chart, values={"a": 1}, timeout=60, max_history=5)
    await actions.upgrade("redis", "redis", request, user="system:serviceaccount:redis:deployer")
    (call,) = calls(tmp_path)
    argv = call["argv"]
    assert argv[0] == "upgrade"
    assert argv[argv.index("--") + 1 :][0] == "redis"
    assert argv[-1].endswith("chart.tgz")
    assert "--kube-as-user=system:serviceaccount:redis:deployer" in argv
    assert {
        "--namespace=redis",
        "--wait",
        "--wait-for-jobs",
        "--reset-values",
        "--history-max=5",
    } <= set(argv)
    assert all(a.startswith("--") for a in argv[1 : argv.index("--")])
    assert call["mode"] == 0o600
    assert "s3cret-token" in call["kubeconfig"]
    assert not any("s3cret-token" in a for a in argv)
    assert not any("s3cret-token" in v for v in call["env"].values())
    assert call["env"]["HELM_CONFIG_HOME"].startswith(str(tmp_path / "work"))
    assert "KUBERNETES_SERVICE_HOST" not in call["env"]
    # The private directory (kubeconfig, values) is gone after the call.
    assert list((tmp_path / "work").glob("helm-*")) == []


@pytest.mark.parametrize(
    ("name", "namespace", "user"),
    [
        ("--dry-run", "redis", None),
        ("Redis", "redis", None),
        ("redis", "-n=kube-system", None),
        ("redis", "redis", "admin"),
        ("redis", "redis", "system:serviceaccount:a:b,c"),
    ],
)
async def test_values_that_helm_would_read_as_flags_are_refused(
    fake_helm: Path, tmp_path: Path, name: str, namespace: str, user: str | None
) -> None:
    actions = HelmActions(CONFIG, work_dir=tmp_path / "work", helm=fake_helm)
    with pytest.raises(HelmActionError):
        await actions.uninstall(name, namespace, helm_timeout=5, user=user)
    assert not (tmp_path / "calls.jsonl").exists()


async def test_a_failing_helm_is_an_error_without_the_private_path(
    fake_helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = HelmActions(CONFIG, work_dir=tmp_path / "work", helm=fake_helm)
    monkeypatch.setattr(
        actions.runner,
        "environment",
        lambda extra=None: {**os.environ, **(extra or {}), "FAKE": "--fail"},
    )
    with pytest.raises(HelmActionError, match="helm rollback failed") as caught:
        await actions.rollback("redis", "redis", 1, helm_timeout=5, max_history=5)
    assert "helm-" not in str(caught.value)


def test_a_release_is_decoded_once_per_resource_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from gitsail.kinds import helm_storage

    decoded: list[str] = []
    real = helm_storage.decode_release

    def counting(secret: dict[str, Any], policy: Policy) -> Any:
        decoded.append(secret["metadata"]["resourceVersion"])
        return real(secret, policy)

    monkeypatch.setattr(helm_storage, "decode_release", counting)
    cache = helm_storage.DecodedReleases(size=1)
    secret = storage_secret(RELEASE)
    secret["metadata"].update(uid="u1", resourceVersion="1")
    first = cache.decode(secret, Policy())
    assert cache.decode(secret, Policy()) is first
    secret["metadata"]["resourceVersion"] = "2"
    cache.decode(secret, Policy())
    assert decoded == ["1", "2"]


def test_post_render_sets_common_metadata_then_owner_labels() -> None:
    from gitsail.kinds.helm_postrender import NAME_LABEL, NAMESPACE_LABEL, post_render

    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {keep: 'yes'}\n"
    config = {
        "max_bytes": 1 << 20,
        "labels": {"team": "cache", NAME_LABEL: "spoofed"},
        "annotations": {"note": "x"},
        "owner": {NAME_LABEL: "app", NAMESPACE_LABEL: "ns"},
    }
    out = yaml.safe_load(post_render(text, config))
    assert out["metadata"]["labels"] == {
        "keep": "yes",
        "team": "cache",
        NAME_LABEL: "app",
        NAMESPACE_LABEL: "ns",
    }
    assert out["metadata"]["annotations"] == {"note": "x"}


def test_post_render_refuses_input_over_its_limit(tmp_path: Path) -> None:
    import io

    from gitsail.kinds import helm_postrender

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"max_bytes": 10}))
    stdin = sys.stdin
    try:
        sys.stdin = io.TextIOWrapper(io.BytesIO(b"x" * 100))
        assert helm_postrender.main([str(config)]) == 1
    finally:
        sys.stdin = stdin
    assert helm_postrender.main([]) == 2
