"""SOPS-encrypted ``secretGenerator`` inputs of an opted-in Argo CD Application, on the real
control plane, with files encrypted by the real ``sops`` and built by the real ``kustomize``:

- a generator fed by an encrypted dotenv file and an encrypted binary file is applied
  decrypted, under the name (content hash) kustomize gives the plaintext, and compares as in
  sync afterwards;
- the plaintext never lands in the shared source cache or the renderer's work directory,
  and never appears in a diff, the Application's status, the namespace's Events or the logs;
- a wrong key is ``DecryptionFailed`` with nothing applied.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.app.sops import ALLOWED_PROJECTS, SOPS_ANNOTATION
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube
from gitsail.secrets import age
from tests.integration.app.conftest import public_url

from .test_sops_argo import application
from .test_sops_flux import PLAINTEXTS, expected_generated_name, sops_encrypt

pytestmark = pytest.mark.integration

GENERATED = PLAINTEXTS[1:]  # the dotenv and binary values


def repository(namespace: str, recipient: str, tmp: Path) -> dict[str, str]:
    (tmp / "app.env").write_text(f"API_KEY={PLAINTEXTS[1]}\nMODE=prod\n")
    (tmp / "tls.crt").write_text(PLAINTEXTS[2])
    return {
        "app/kustomization.yaml": (
            "resources: [configmap.yaml]\n"
            "secretGenerator:\n"
            "  - name: generated\n"
            f"    namespace: {namespace}\n"
            "    envs: [app.env]\n"
            "    files: [tls.crt=tls.crt.enc]\n"
        ),
        "app/configmap.yaml": (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alongside\n"
            f"  namespace: {namespace}\ndata:\n  a: b\n"
        ),
        "app/app.env": sops_encrypt(tmp / "app.env", "dotenv", recipient),
        "app/tls.crt.enc": sops_encrypt(tmp / "tls.crt", "binary", recipient),
    }


async def key_secret(kube: Kube, namespace: str, key_line: str) -> None:
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "sops-age",
                "namespace": namespace,
                "annotations": {ALLOWED_PROJECTS: "default"},
            },
            "stringData": {"keys.agekey": key_line + "\n"},
        }
    )


def files_holding(directory: Path, values: tuple[str, ...]) -> list[str]:
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {v}" for v in values if v.encode() in data]
    return found


async def assert_no_plaintext(
    kube: Kube, engine: AppEngine, namespace: str, name: str, text: str
) -> None:
    obj = await engine.get_application(name, namespace)
    events = await kube.list("v1", "Event", namespace)
    haystacks = {
        "status": json.dumps((obj or {}).get("status")),
        "events": json.dumps(events),
        "logs and diffs": text,
    }
    for where, haystack in haystacks.items():
        for secret in GENERATED:
            assert secret not in haystack, f"plaintext found in {where}"


async def test_encrypted_generator_inputs_are_applied_decrypted(
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_line, ident = age.generate()
    git_repo.commit_and_push(repository(namespace, ident.recipient, tmp_path), "sops gen")
    await key_secret(kube_client, namespace, key_line)
    app = await application(
        kube_client, namespace, "gen", public_url(git_repo), {SOPS_ANNOTATION: "sops-age"}
    )

    assert (await engine.sync(app)).result.phase == "Succeeded"

    name = expected_generated_name(namespace, tmp_path)
    generated = await kube_client.get("v1", "Secret", name, namespace)
    assert generated is not None, f"{name} (kustomize's name for the plaintext)"
    data = {k: base64.b64decode(v).decode() for k, v in generated["data"].items()}
    assert data == {"API_KEY": PLAINTEXTS[1], "MODE": "prod", "tls.crt": PLAINTEXTS[2]}
    obj = await engine.get_application("gen", namespace)
    assert obj is not None
    comparison = await engine.compare(App.from_application(obj))
    assert {d.status for d in comparison.diffs} == {"Synced"}
    # Never written to the shared checkout, nor left in the renderer's work directory.
    assert files_holding(tmp_path / "source-cache", GENERATED) == []
    assert files_holding(engine.renderer.work_dir, GENERATED) == []
    shown = json.dumps([[d.unified, d.desired, d.live] for d in comparison.diffs])
    await assert_no_plaintext(kube_client, engine, namespace, "gen", shown + caplog.text)


async def test_a_wrong_key_fails_and_applies_nothing(
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, ident = age.generate()
    wrong, _ = age.generate()
    git_repo.commit_and_push(repository(namespace, ident.recipient, tmp_path), "sops gen")
    await key_secret(kube_client, namespace, wrong)
    app = await application(
        kube_client, namespace, "gen", public_url(git_repo), {SOPS_ANNOTATION: "sops-age"}
    )

    with pytest.raises(ComparisonError) as err:
        await engine.compare(app)
    assert err.value.reason == "DecryptionFailed"
    assert ident.recipient in err.value.message

    outcome = await engine.sync(app)  # recorded in the Application's status

    assert outcome.result.phase in ("Failed", "Error")
    assert "DecryptionFailed" in outcome.result.message or ident.recipient in (
        outcome.result.message
    )
    assert await kube_client.get("v1", "ConfigMap", "alongside", namespace) is None
    secrets = await kube_client.list("v1", "Secret", namespace)
    assert [s for s in secrets if s["metadata"]["name"].startswith("generated")] == []
    assert files_holding(tmp_path / "source-cache", GENERATED) == []
    shown = err.value.message + outcome.result.message + caplog.text
    await assert_no_plaintext(kube_client, engine, namespace, "gen", shown)
