"""Helpers for unit tests of gitsail.kube: kubeconfig dicts and a tiny exec plugin."""

from __future__ import annotations

import base64
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.pki import ClusterPKI, make_pki


def kubeconfig(user: Mapping[str, Any], cluster: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://k.test:6443", **(cluster or {})}}
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "apps"}}
        ],
        "current-context": "ctx",
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), cluster_name="unit")


PLUGIN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    counter = Path(os.environ["PLUGIN_COUNTER"])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if os.environ.get("PLUGIN_FAIL"):
        print("plugin: login required", file=sys.stderr)
        sys.exit(3)
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    Path(os.environ["PLUGIN_SEEN"]).write_text(json.dumps({"info": info, "argv": sys.argv[1:]}))
    status = {"token": f"tok-{n}"}
    if os.environ.get("PLUGIN_EXPIRES"):
        status["expirationTimestamp"] = os.environ["PLUGIN_EXPIRES"]
    if os.environ.get("PLUGIN_CERT"):
        status = {
            "clientCertificateData": Path(os.environ["PLUGIN_CERT"]).read_text(),
            "clientKeyData": Path(os.environ["PLUGIN_KEY"]).read_text(),
        }
    out = {"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}
    print(json.dumps(out))
    """
)


def exec_user(
    tmp_path: Path, *, api_version: str = "client.authentication.k8s.io/v1", **env: str
) -> dict[str, Any]:
    """A kubeconfig user whose exec plugin is a Python script counting its runs."""
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    env = {
        "PLUGIN_COUNTER": str(tmp_path / "count"),
        "PLUGIN_SEEN": str(tmp_path / "seen.json"),
        **env,
    }
    return {
        "exec": {
            "apiVersion": api_version,
            "command": sys.executable,
            "args": [str(script), "--flag"],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "provideClusterInfo": True,
        }
    }


def runs(tmp_path: Path) -> int:
    counter = tmp_path / "count"
    return int(counter.read_text()) if counter.exists() else 0
