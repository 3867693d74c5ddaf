"""`gitsail seal reseal --to-cert`: a repository moved to another cluster's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app
from gitsail.secrets.keys import SealingKey, key_secret
from gitsail.secrets.sealedsecret import unseal
from gitsail.secrets.sealing import DecryptError

from .test_seal_rotate import _sealed_yaml


def test_reseal_moves_every_value_to_the_other_clusters_key(
    key: SealingKey, other_key: SealingKey, tmp_path: Path
) -> None:
    manifest = tmp_path / "repo" / "db.yaml"
    manifest.parent.mkdir()
    manifest.write_text(_sealed_yaml(key, "db", "moving"))
    keys = tmp_path / "keys.json"
    secret = key_secret(key, namespace="kube-system")
    secret["metadata"]["name"] = "k"
    keys.write_text(json.dumps(secret))
    cert = tmp_path / "other.pem"
    cert.write_bytes(other_key.cert_pem())
    result = CliRunner().invoke(
        app,
        ["seal", "reseal", str(manifest.parent), "--recovery-private-key", str(keys),
         "--to-cert", str(cert)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(manifest.read_text())
    doc["metadata"]["uid"] = "u"
    assert unseal(doc, [other_key.private_key])["data"]["v"] == "bW92aW5n"
    with pytest.raises(DecryptError):  # no longer sealed for the old cluster's key
        unseal(doc, [key.private_key])


def test_reseal_requires_to_cert(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["seal", "reseal", str(tmp_path)])
    assert result.exit_code != 0
    assert "--to-cert" in result.output
