"""gitsail doctor --fix: a plain Secret is replaced by its SealedSecret, the rest kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app
from gitsail.secrets.keys import SealingKey, generate_key
from gitsail.secrets.sealedsecret import unseal
from gitsail.secrets.sealing import public_key_from_pem
from gitsail.workflow.doctor import doctor
from gitsail.workflow.doctor_fix import seal_plain_secrets

CONFIGMAP = (
    "# the app's settings\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n"
)
SECRET = (
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: web\n"
    "stringData:\n  password: hunter2\n"
)


@pytest.fixture(scope="module")
def key() -> SealingKey:
    return generate_key(now=datetime.now(UTC), key_size=2048)


def test_the_secret_document_is_sealed_and_the_others_kept(tmp_path: Path, key: SealingKey) -> None:
    path = tmp_path / "apps/web/all.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(CONFIGMAP + "---\n" + SECRET + "---\n# trailing comment\n")
    findings = doctor(tmp_path)
    assert [f.rule for f in findings] == ["plain-secret"]

    report = seal_plain_secrets(tmp_path, findings, public_key_from_pem(key.cert_pem()))
    assert len(report.fixed) == 1
    assert report.skipped == ()
    text = path.read_text()
    assert text.startswith(CONFIGMAP + "---\n")  # byte for byte
    assert text.endswith("---\n# trailing comment\n")
    assert "hunter2" not in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    sealed = docs[1]
    assert sealed["kind"] == "SealedSecret"
    assert unseal(sealed, [key.private_key])["data"]["password"] == "aHVudGVyMg=="
    assert doctor(tmp_path) == []


def test_a_secret_without_namespace_is_not_guessed(tmp_path: Path, key: SealingKey) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(SECRET.replace("  namespace: web\n", ""))
    report = seal_plain_secrets(tmp_path, doctor(tmp_path), public_key_from_pem(key.cert_pem()))
    assert report.fixed == ()
    assert "no namespace" in report.skipped[0]
    assert "hunter2" in path.read_text()  # untouched


def test_cli_fix_needs_a_cert_and_exit_codes(tmp_path: Path, key: SealingKey) -> None:
    (tmp_path / "secret.yaml").write_text(SECRET)
    runner = CliRunner()
    no_cert = runner.invoke(app, ["doctor", str(tmp_path), "--fix", "--no-render"])
    assert no_cert.exit_code == 2
    assert "--cert" in no_cert.output

    cert = tmp_path.parent / f"{tmp_path.name}-cert.pem"
    cert.write_bytes(key.cert_pem())
    fixed = runner.invoke(
        app, ["doctor", str(tmp_path), "--fix", "--cert", str(cert), "--no-render"]
    )
    assert fixed.exit_code == 0, fixed.output
    assert "fixed secret.yaml" in fixed.output
    assert "rotate" in fixed.output
    assert "hunter2" not in (tmp_path / "secret.yaml").read_text()


def test_fail_on_chooses_what_fails_the_build(tmp_path: Path) -> None:
    deployment = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n"
        "    - name: c\n      image: busybox:latest\n"
    )
    (tmp_path / "pod.yaml").write_text(deployment)  # a warning only
    runner = CliRunner()
    base = ["doctor", str(tmp_path), "--no-render", "-o", "json"]
    assert runner.invoke(app, base).exit_code == 1
    assert runner.invoke(app, [*base, "--fail-on", "error"]).exit_code == 0
    (tmp_path / "secret.yaml").write_text(SECRET)  # an error
    assert runner.invoke(app, [*base, "--fail-on", "error"]).exit_code == 1
    assert runner.invoke(app, [*base, "--fail-on", "never"]).exit_code == 0
