"""The SOPS opt-in for Argo CD Applications on the real control plane: a Secret encrypted by
the real ``sops`` is synced decrypted by an annotated Application (keys in a Secret of the
control namespace that allows the project), compares as in sync afterwards, and never shows
its value in a diff or the Application's status; without the annotation the comparison fails
with ``DecryptionFailed`` and nothing is applied."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.app.sops import ALLOWED_PROJECTS, SOPS_ANNOTATION
from gitsail.dev.gitserver import Workdir
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube
from gitsail.secrets import age
from tests.integration.app.conftest import public_url

from .test_sops_flux import sops_encrypt

pytestmark = pytest.mark.integration

PLAINTEXT = "argo-sops-value-0x61"


def encrypted_secret(namespace: str, recipient: str, tmp: Path) -> str:
    plain = tmp / "secret.yaml"
    plain.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n"
        f"  namespace: {namespace}\ntype: Opaque\nstringData:\n  token: {PLAINTEXT}\n"
    )
    return sops_encrypt(plain, "yaml", recipient, "--encrypted-regex", "^(data|stringData)$")


async def application(
    kube: Kube, namespace: str, name: str, repo: str, annotations: dict[str, str]
) -> App:
    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "path": "app"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        },
    }
    return App.from_application(await kube.create(body))


async def test_an_annotated_application_syncs_the_decrypted_secret(
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
) -> None:
    key_line, ident = age.generate()
    git_repo.commit_and_push(
        {"app/secret.yaml": encrypted_secret(namespace, ident.recipient, tmp_path)}, "sops"
    )
    await kube_client.create(
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
    app = await application(
        kube_client, namespace, "web", public_url(git_repo), {SOPS_ANNOTATION: "sops-age"}
    )

    assert (await engine.sync(app)).result.phase == "Succeeded"

    live = await kube_client.get("v1", "Secret", "api", namespace)
    assert live is not None
    assert "sops" not in live
    assert base64.b64decode(live["data"]["token"]).decode() == PLAINTEXT
    obj = await engine.get_application("web", namespace)
    assert obj is not None
    comparison = await engine.compare(App.from_application(obj))
    assert {d.status for d in comparison.diffs} == {"Synced"}
    shown = json.dumps([[d.unified, d.desired, d.live] for d in comparison.diffs])
    assert PLAINTEXT not in shown
    assert PLAINTEXT not in json.dumps(obj.get("status"))


async def test_without_the_annotation_nothing_is_applied(
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
) -> None:
    _, ident = age.generate()
    git_repo.commit_and_push(
        {"app/secret.yaml": encrypted_secret(namespace, ident.recipient, tmp_path)}, "sops"
    )
    app = await application(kube_client, namespace, "plain", public_url(git_repo), {})

    with pytest.raises(ComparisonError) as err:
        await engine.compare(app)

    assert err.value.reason == "DecryptionFailed"
    assert SOPS_ANNOTATION in err.value.message
    assert await kube_client.get("v1", "Secret", "api", namespace) is None
