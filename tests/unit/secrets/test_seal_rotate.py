from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app
from gitsail.secrets.keys import KeyRing, SealingKey, generate_key, key_secret
from gitsail.secrets.rotate import keys_in_use, rotate_text
from gitsail.secrets.sealedsecret import seal_secret, unseal

from .conftest import NOW


def _sealed_yaml(key: SealingKey, name: str, value: str) -> str:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns"},
        "stringData": {"v": value, "w": value + "-2"},
    }
    return yaml.safe_dump(seal_secret(key.public_key, secret), sort_keys=False)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def test_rotate_text_reseals_only_values_of_old_keys_and_keeps_the_layout(
    key: SealingKey,
) -> None:
    newer = generate_key(now=NOW + timedelta(days=30), key_size=2048)
    ring = KeyRing((key, newer))
    old_doc = "# team db credentials\n" + _sealed_yaml(key, "old", "one")
    new_doc = _sealed_yaml(newer, "new", "two")
    text = old_doc + "---\n" + new_doc
    rotated_text, rotated = rotate_text(text, ring)
    assert [(r.name, r.keys) for r in rotated] == [("old", ("v", "w"))]
    assert rotated_text.startswith("# team db credentials\n")
    assert new_doc in rotated_text  # untouched bytes
    docs = [d for d in yaml.safe_load_all(rotated_text) if d]
    for doc in docs:
        doc["metadata"]["uid"] = "u"
    assert unseal(docs[0], [newer.private_key])["data"]["v"] == "b25l"
    # A second run changes nothing.
    assert rotate_text(rotated_text, ring) == (rotated_text, [])
    usage = keys_in_use(yaml.safe_load_all(text), [newer, key])
    assert usage == [("ns", "old", key.fingerprint), ("ns", "new", newer.fingerprint)]


@pytest.mark.parametrize("branch", ["rotate", "--orphan=x"])
def test_seal_rotate_commits_once_in_a_checkout(
    key: SealingKey, tmp_path: Path, branch: str
) -> None:
    newer = generate_key(now=NOW + timedelta(days=30), key_size=2048)
    repo = tmp_path / "repo"
    (repo / "apps").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "apps" / "db.yaml").write_text(_sealed_yaml(key, "db", "x"))
    (repo / "apps" / "current.yaml").write_text(_sealed_yaml(newer, "cur", "y"))
    (repo / "apps" / "other.yaml").write_text("kind: ConfigMap\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    keys = tmp_path / "keys.json"
    items = []
    for i, k in enumerate((key, newer)):
        s = key_secret(k, namespace="kube-system")
        s["metadata"]["name"] = f"sealed-secrets-key{i}"
        items.append(s)
    keys.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    result = CliRunner().invoke(
        app,
        ["seal", "rotate", str(repo), "--recovery-private-key", str(keys), "--branch", branch],
    )
    if branch.startswith("-"):  # never handed to git as an option: refused, nothing committed
        assert result.exit_code == 1
        assert "not a valid branch name" in result.output
        assert _git(repo, "rev-list", "--count", "HEAD").strip() == "1"
        return
    assert result.exit_code == 0, result.output
    assert "1 file(s) re-encrypted" in result.output
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "rotate"
    assert _git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["apps/db.yaml"]
    assert _git(repo, "status", "--porcelain") == ""


def test_seal_rotate_refuses_bare_pem_keys(key: SealingKey, tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(key.key_pem())
    result = CliRunner().invoke(
        app, ["seal", "rotate", str(tmp_path), "--recovery-private-key", str(pem)]
    )
    assert result.exit_code == 1
    assert "key Secrets" in result.output


def test_to_cert_reseals_a_repository_for_another_clusters_key(
    key: SealingKey, other_key: SealingKey, tmp_path: Path
) -> None:
    manifest = tmp_path / "db.yaml"
    manifest.write_text(_sealed_yaml(key, "db", "moving"))
    keys = tmp_path / "keys.json"
    secret = key_secret(key, namespace="kube-system")
    secret["metadata"]["name"] = "k"
    keys.write_text(json.dumps(secret))
    cert = tmp_path / "other.pem"
    cert.write_bytes(other_key.cert_pem())
    result = CliRunner().invoke(
        app,
        ["seal", "rotate", str(tmp_path), "--recovery-private-key", str(keys),
         "--to-cert", str(cert)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert other_key.fingerprint in result.output
    doc = yaml.safe_load(manifest.read_text())
    doc["metadata"]["uid"] = "u"
    assert unseal(doc, [other_key.private_key])["data"]["v"] == "bW92aW5n"
