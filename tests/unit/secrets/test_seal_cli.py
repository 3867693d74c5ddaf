from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gitsail import toolchain
from gitsail.cli.main import app
from gitsail.secrets.keys import SealingKey
from gitsail.secrets.sealedsecret import unseal


@pytest.fixture
def files(tmp_path: Path, key: SealingKey) -> dict[str, Path]:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(key.cert_pem())
    private = tmp_path / "key.pem"
    private.write_bytes(key.key_pem())
    return {"cert": cert, "key": private, "dir": tmp_path}


def _secret(namespace: str | None = "ns", **values: str) -> str:
    meta: dict[str, Any] = {"name": "db"}
    if namespace:
        meta["namespace"] = namespace
    return json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": values}
    )


def run(args: list[str], stdin: str = "") -> Any:
    return CliRunner().invoke(app, ["seal", *args], input=stdin)


def test_seals_stdin_to_stdout_as_json_by_default_and_yaml_with_separator(
    files: dict[str, Path], key: SealingKey
) -> None:
    out = run(["--cert", str(files["cert"])], _secret(password="p1"))
    assert out.exit_code == 0, out.output
    sealed = json.loads(out.stdout)
    assert sealed["kind"] == "SealedSecret"
    sealed["metadata"]["uid"] = "u"
    assert unseal(sealed, [key.private_key])["data"]["password"] == "cDE="
    as_yaml = run(["--cert", str(files["cert"]), "-o", "yaml"], _secret(password="p1"))
    assert as_yaml.stdout.startswith("---\n")


def test_multi_document_input_is_sealed_object_by_object(files: dict[str, Path]) -> None:
    two = (
        yaml.safe_dump(json.loads(_secret(a="1")))
        + "---\n"
        + yaml.safe_dump(json.loads(_secret(b="2")))
    )
    out = run(["--cert", str(files["cert"]), "-o", "yaml"], two)
    assert out.exit_code == 0, out.output
    assert len([d for d in yaml.safe_load_all(out.stdout) if d]) == 2


def test_strict_scope_without_a_namespace_is_refused(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(files["dir"] / "none"))
    out = run(["--cert", str(files["cert"])], _secret(namespace=None, password="secret-xyz"))
    assert out.exit_code == 1
    assert "no namespace" in out.output
    assert "secret-xyz" not in out.output
    ok = run(
        ["--cert", str(files["cert"]), "--scope", "cluster-wide"],
        _secret(namespace=None, password="x"),
    )
    assert ok.exit_code == 0, ok.output


def test_namespace_flag_fills_in_and_must_not_contradict(files: dict[str, Path]) -> None:
    out = run(["--cert", str(files["cert"]), "-n", "team"], _secret(namespace=None, p="x"))
    assert json.loads(out.stdout)["metadata"]["namespace"] == "team"
    clash = run(["--cert", str(files["cert"]), "-n", "team"], _secret(namespace="ns", p="x"))
    assert clash.exit_code == 1


def test_raw_needs_name_and_namespace_for_strict(files: dict[str, Path]) -> None:
    value = files["dir"] / "v"
    value.write_text("raw")
    missing = run(["--raw", "--cert", str(files["cert"]), "--from-file", str(value)])
    assert missing.exit_code == 1
    assert "--namespace" in missing.output
    ok = run(
        ["--raw", "--cert", str(files["cert"]), "--from-file", str(value), "-n", "a", "--name", "b"]
    )
    assert ok.exit_code == 0
    assert not ok.stdout.endswith("\n")


def test_merge_into_keeps_ciphertext_of_unchanged_values(files: dict[str, Path]) -> None:
    target = files["dir"] / "sealed.yaml"
    first = run(["--cert", str(files["cert"]), "-o", "yaml"], _secret(a="same", b="old"))
    target.write_text(first.stdout)
    before = yaml.safe_load(first.stdout)["spec"]["encryptedData"]
    merged = run(
        [
            "--cert",
            str(files["cert"]),
            "--merge-into",
            str(target),
            "--recovery-private-key",
            str(files["key"]),
        ],
        _secret(a="same", b="new", c="added"),
    )
    assert merged.exit_code == 0, merged.output
    after = yaml.safe_load(target.read_text())["spec"]["encryptedData"]
    assert after["a"] == before["a"]
    assert after["b"] != before["b"]
    assert set(after) == {"a", "b", "c"}


def test_recovery_unseal_prints_the_secret(files: dict[str, Path]) -> None:
    sealed = run(["--cert", str(files["cert"])], _secret(password="p1")).stdout
    out = run(["--recovery-unseal", "--recovery-private-key", str(files["key"])], sealed)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["data"] == {"password": "cDE="}


def test_an_expired_or_missing_cert_is_an_error(files: dict[str, Path]) -> None:
    out = run(["--cert", str(files["dir"] / "missing.pem")], _secret(p="x"))
    assert out.exit_code == 1


def test_the_sealed_secrets_tools_are_test_only() -> None:
    tool = next(t for t in toolchain.TOOLS if t.name == "sealed-secrets")
    assert tool.test_only
    assert tool.binaries == ("kubeseal", "controller")
    assert tool.version.startswith("v0.40.")
    names = [t.name for t in toolchain.TOOLS if not t.test_only]
    assert "sealed-secrets" not in names


def test_install_sealed_secrets_prints_the_crd_and_the_controller_flag() -> None:
    out = CliRunner().invoke(app, ["install", "--sealed-secrets", "--print"])
    assert out.exit_code == 0, out.output
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    crds = [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert crds == ["sealedsecrets.bitnami.com"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert "--sealed-secrets" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    plain = CliRunner().invoke(app, ["install", "--flux", "--print"])
    assert "--sealed-secrets" not in plain.stdout
    assert "sealedsecrets.bitnami.com" not in plain.stdout
