"""A Flux Kustomization with SOPS-encrypted Secrets (age), on the real control plane, with
files encrypted by the real ``sops`` and the real ``kustomize`` building them:

- an encrypted Secret manifest, and a ``secretGenerator`` fed by an encrypted dotenv file
  and an encrypted binary file, are applied decrypted; the generated Secret has the name
  (content hash) kustomize gives the plaintext, as with Flux;
- a wrong key is ``Ready=False`` with reason ``DecryptionFailed`` and nothing is applied;
- no plaintext appears in the Kustomization's status, the namespace's Events, or the logs.

The reconciler runs one pass at a time as in ``tests/integration/flux/test_kustomization.py``
(whose ``Flux`` helper and fixtures are reused).
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path

import pytest

from gitsail import toolchain
from gitsail.dev.gitserver import Workdir
from gitsail.secrets import age
from tests.integration.flux.test_kustomization import Flux, ready

pytestmark = pytest.mark.integration

PLAINTEXTS = ("manifest-pw-0x51", "env-api-key-0x52", "binary-cert-0x53")


def secret_manifest(namespace: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: {namespace}
type: Opaque
stringData:
  password: {PLAINTEXTS[0]}
"""


def sops_encrypt(path: Path, fmt: str, recipient: str, *extra: str) -> str:
    proc = subprocess.run(
        [
            str(toolchain.find_binary("sops")),
            "--encrypt",
            "--age",
            recipient,
            "--input-type",
            fmt,
            "--output-type",
            fmt,
            *extra,
            str(path),
        ],
        capture_output=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent)},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def repository(namespace: str, recipient: str, tmp: Path) -> dict[str, str]:
    (tmp / "secret.yaml").write_text(secret_manifest(namespace))
    (tmp / "app.env").write_text(f"API_KEY={PLAINTEXTS[1]}\nMODE=prod\n")
    (tmp / "tls.crt").write_text(PLAINTEXTS[2])
    return {
        "app/kustomization.yaml": (
            "resources: [secret.yaml]\n"
            "secretGenerator:\n"
            "  - name: generated\n"
            f"    namespace: {namespace}\n"
            "    envs: [app.env]\n"
            "    files: [tls.crt=tls.crt.enc]\n"
        ),
        "app/secret.yaml": sops_encrypt(
            tmp / "secret.yaml", "yaml", recipient, "--encrypted-regex", "^(data|stringData)$"
        ),
        "app/app.env": sops_encrypt(tmp / "app.env", "dotenv", recipient),
        "app/tls.crt.enc": sops_encrypt(tmp / "tls.crt", "binary", recipient),
    }


def expected_generated_name(namespace: str, tmp: Path) -> str:
    """The name the real kustomize gives the generated Secret built from the plaintext."""
    plain = tmp / "plain"
    plain.mkdir()
    (plain / "kustomization.yaml").write_text(
        "secretGenerator:\n"
        "  - name: generated\n"
        f"    namespace: {namespace}\n"
        "    envs: [app.env]\n"
        "    files: [tls.crt]\n"
    )
    (plain / "app.env").write_text(f"API_KEY={PLAINTEXTS[1]}\nMODE=prod\n")
    (plain / "tls.crt").write_text(PLAINTEXTS[2])
    out = subprocess.run(
        [str(toolchain.find_binary("kustomize")), "build", str(plain)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    name = next(line.split(": ", 1)[1] for line in out.splitlines() if "name: generated-" in line)
    return name.strip()


async def key_secret(flux: Flux, name: str, key_file: str) -> None:
    await flux.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": flux.ns},
            "stringData": {"identity.agekey": key_file},
        },
        field_manager="test",
    )


async def assert_no_plaintext_anywhere(flux: Flux, caplog: pytest.LogCaptureFixture) -> None:
    obj = await flux.get("app")
    events = await flux.kube.list("v1", "Event", flux.ns)
    haystacks = {
        "status": json.dumps(obj.get("status")),
        "events": json.dumps(events),
        "logs": caplog.text,
    }
    for where, text in haystacks.items():
        for secret in PLAINTEXTS:
            assert secret not in text, f"plaintext found in {where}"


async def test_sops_encrypted_secrets_are_applied_decrypted(
    flux: Flux, git_repo: Workdir, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_line, ident = age.generate()
    sha = git_repo.commit_and_push(repository(flux.ns, ident.recipient, tmp_path), "sops")
    await key_secret(flux, "sops-age", f"# test key\n{key_line}\n")
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "app",
        path="./app",
        decryption={"provider": "sops", "secretRef": {"name": "sops-age"}},
    )

    _, obj = await flux.reconcile("app")

    assert ready(obj)["status"] == "True", obj["status"]
    db = await flux.kube.get("v1", "Secret", "db", flux.ns)
    assert db is not None
    assert "sops" not in db
    assert base64.b64decode(db["data"]["password"]).decode() == PLAINTEXTS[0]
    generated_name = expected_generated_name(flux.ns, tmp_path)
    generated = await flux.kube.get("v1", "Secret", generated_name, flux.ns)
    assert generated is not None, f"{generated_name} (kustomize's name for the plaintext)"
    data = {k: base64.b64decode(v).decode() for k, v in generated["data"].items()}
    assert data == {"API_KEY": PLAINTEXTS[1], "MODE": "prod", "tls.crt": PLAINTEXTS[2]}
    await assert_no_plaintext_anywhere(flux, caplog)


async def test_a_wrong_key_is_ready_false_and_applies_nothing(
    flux: Flux, git_repo: Workdir, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, ident = age.generate()
    wrong_line, _ = age.generate()
    files = repository(flux.ns, ident.recipient, tmp_path)
    files["app/configmap.yaml"] = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alongside\n"
        f"  namespace: {flux.ns}\ndata:\n  a: b\n"
    )
    files["app/kustomization.yaml"] = files["app/kustomization.yaml"].replace(
        "resources: [secret.yaml]", "resources: [secret.yaml, configmap.yaml]"
    )
    sha = git_repo.commit_and_push(files, "sops, wrong key")
    await key_secret(flux, "sops-age", wrong_line + "\n")
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "app",
        path="./app",
        decryption={"provider": "sops", "secretRef": {"name": "sops-age"}},
    )

    _, obj = await flux.reconcile("app")

    condition = ready(obj)
    assert condition["status"] == "False"
    assert condition["reason"] == "DecryptionFailed"
    assert ident.recipient in condition["message"]
    assert "Secret/" in condition["message"]
    assert await flux.kube.get("v1", "Secret", "db", flux.ns) is None
    assert await flux.configmap("alongside") is None  # nothing applied, not even plain objects
    await assert_no_plaintext_anywhere(flux, caplog)


async def test_without_decryption_an_encrypted_secret_is_refused(
    flux: Flux, git_repo: Workdir, tmp_path: Path
) -> None:
    _, ident = age.generate()
    files = repository(flux.ns, ident.recipient, tmp_path)
    files["app/kustomization.yaml"] = "resources: [secret.yaml]\n"
    sha = git_repo.commit_and_push(files, "sops without decryption")
    await flux.git_repository("repo", sha)
    await flux.kustomization("app", path="./app")

    _, obj = await flux.reconcile("app")

    assert ready(obj)["status"] == "False"
    assert "configuring decryption is required" in ready(obj)["message"]
    assert await flux.kube.get("v1", "Secret", "db", flux.ns) is None
