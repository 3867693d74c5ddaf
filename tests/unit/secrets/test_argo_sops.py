"""The SOPS opt-in for Argo CD Applications (gitsail.app.sops): the annotation, the key
Secret in the controller namespace with its allowed projects, in-memory decryption."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from gitsail.app.model import Delivery, Inventory, SourceRef, SyncPolicy
from gitsail.app.sops import ALLOWED_PROJECTS, SOPS_ANNOTATION, decrypt_manifests
from gitsail.errors import Stalled, Transient
from gitsail.kube import Kube
from gitsail.model import Artifact
from gitsail.secrets import age, sops
from gitsail.secrets.sops_encrypt import encrypt_file
from gitsail.sync import ArgoTracking

SECRET = b"""apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: argo-plaintext-7
"""


class Secrets:
    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}

    async def get(
        self, _api: str, _kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.objs.get((namespace or "", name))


def key_secret(key_line: str, allowed: str | None = "default") -> dict[str, Any]:
    annotations = {ALLOWED_PROJECTS: allowed} if allowed is not None else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sops-age", "namespace": "argocd", "annotations": annotations},
        "data": {"keys.agekey": base64.b64encode(key_line.encode()).decode()},
    }


def app(annotation: str | None = "sops-age", project: str = "default") -> Delivery:
    annotations = {SOPS_ANNOTATION: annotation} if annotation else {}
    return Delivery(
        api_version="argoproj.io/v1alpha1",
        kind="Application",
        namespace="argocd",
        name="web",
        generation=1,
        source=SourceRef(url="https://git.example/r.git"),
        render=None,
        destination_server="",
        destination_namespace="prod",
        policy=SyncPolicy(),
        owner=ArgoTracking("web"),
        inventory=Inventory(()),
        origin={"metadata": {"annotations": annotations}, "spec": {"project": project}},
    )


def checkout(tmp_path: Path, recipient: str) -> tuple[Artifact, dict[str, Any]]:
    data = encrypt_file(SECRET, sops.Format.YAML, [recipient], encrypted_regex="^stringData$")
    (tmp_path / "app").mkdir()
    (tmp_path / "app/secret.yaml").write_bytes(data)
    artifact = Artifact("https://git.example/r.git", "c0ffee", "HEAD", tmp_path, "app", "")
    return artifact, yaml.safe_load(data)


async def test_an_opted_in_application_gets_its_secret_decrypted(tmp_path: Path) -> None:
    line, ident = age.generate()
    artifact, doc = checkout(tmp_path, ident.recipient)
    kube = cast(Kube, Secrets(key_secret(line)))
    [out] = await decrypt_manifests(kube, "argocd", app(), artifact, [doc])
    assert out["stringData"] == {"password": "argo-plaintext-7"}
    assert "sops" not in out
    # the checkout (the shared source cache) is left as it was
    assert b"argo-plaintext-7" not in (tmp_path / "app/secret.yaml").read_bytes()


async def test_without_the_annotation_an_encrypted_object_is_refused(tmp_path: Path) -> None:
    _, ident = age.generate()
    artifact, doc = checkout(tmp_path, ident.recipient)
    with pytest.raises(Stalled, match=SOPS_ANNOTATION):
        await decrypt_manifests(cast(Kube, Secrets()), "argocd", app(None), artifact, [doc])


async def test_a_project_the_key_secret_does_not_allow_is_refused(tmp_path: Path) -> None:
    line, ident = age.generate()
    artifact, doc = checkout(tmp_path, ident.recipient)
    kube = cast(Kube, Secrets(key_secret(line, allowed="team-a")))
    with pytest.raises(Stalled, match="does not allow project 'team-b'"):
        await decrypt_manifests(kube, "argocd", app(project="team-b"), artifact, [doc])
    kube = cast(Kube, Secrets(key_secret(line, allowed=None)))
    with pytest.raises(Stalled, match="does not allow"):
        await decrypt_manifests(kube, "argocd", app(), artifact, [doc])


async def test_a_missing_key_secret_and_a_wrong_key_are_transient(tmp_path: Path) -> None:
    _, ident = age.generate()
    artifact, doc = checkout(tmp_path, ident.recipient)
    with pytest.raises(Transient, match="not found"):
        await decrypt_manifests(cast(Kube, Secrets()), "argocd", app(), artifact, [doc])
    wrong, _ = age.generate()
    kube = cast(Kube, Secrets(key_secret(wrong, allowed="*")))
    with pytest.raises(Transient, match="none of the 1 age identities") as err:
        await decrypt_manifests(kube, "argocd", app(), artifact, [doc])
    assert "argo-plaintext" not in str(err.value)
