"""Key renewal -> ``gitsail seal rotate`` -> one commit; the values decrypt to the same
plaintext with the new key, and the report names the objects still on the old key until
the rotated manifests are applied."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube
from gitsail.secrets.keys import generate_key, key_secret
from gitsail.secrets.keystore import KeyStore
from gitsail.secrets.sealedsecret import seal_secret, unseal

from .conftest import plain_secret

pytestmark = pytest.mark.integration


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _rotate(cluster: Cluster, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", "seal", "rotate", *args,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_renewal_then_rotate_commits_once_and_the_report_empties(
    api: Kube, cluster: Cluster, namespace: str, sealed_crd: None, tmp_path: Path
) -> None:
    store = KeyStore(api, namespace=namespace, key_size=2048)
    old = (await store.ensure()).newest
    assert old is not None
    sealed = seal_secret(old.public_key, plain_secret("db", namespace, password="rotate-me"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "db.yaml").write_text(yaml.safe_dump(sealed, sort_keys=False))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    await api.create(json.loads(json.dumps(sealed)))
    # Renewal: a newer key (what the controller adds every renewal period).
    newer = generate_key(now=datetime.now(UTC) + timedelta(seconds=1), key_size=2048)
    await api.create(key_secret(newer, namespace=namespace))

    out = _rotate(cluster, str(repo), "--controller-namespace", namespace, "--commit", "--report")
    assert "1 file(s) re-encrypted" in out
    assert f"still on an old key: SealedSecret {namespace}/db ({old.fingerprint})" in out
    assert _git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    rotated = yaml.safe_load((repo / "db.yaml").read_text())
    rotated["metadata"]["uid"] = "u"
    assert unseal(rotated, [newer.private_key])["data"]["password"] == "cm90YXRlLW1l"

    # Applied (as the GitOps sync would): nothing depends on the old key any more.
    live = await api.get("bitnami.com/v1alpha1", "SealedSecret", "db", namespace)
    assert live is not None
    live["spec"] = rotated["spec"]
    await api.replace(live)
    again = _rotate(cluster, str(repo), "--controller-namespace", namespace, "--report")
    assert "0 file(s) re-encrypted" in again
    assert f"SealedSecret {namespace}/db" not in again
