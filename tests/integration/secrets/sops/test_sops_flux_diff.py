"""``gitsail diff kustomization`` on a Kustomization with SOPS decryption, as a user runs it:
the build is decrypted as the controller's (no difference once applied), a hand-edited
decrypted Secret is one drifted, masked value, and no plaintext (nor its base64) is printed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.secrets import age
from tests.integration.flux.test_kustomization import Flux, ready
from tests.integration.test_flux_diff_tree import gitsail

from .test_sops_flux import PLAINTEXTS, key_secret, repository

pytestmark = pytest.mark.integration


async def test_diff_of_a_sops_kustomization_never_prints_plaintext(
    cluster: Cluster, flux: Flux, git_repo: Workdir, tmp_path: Path
) -> None:
    key_line, ident = age.generate()
    sha = git_repo.commit_and_push(repository(flux.ns, ident.recipient, tmp_path), "sops")
    await key_secret(flux, "sops-age", key_line + "\n")
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "app", path="./app", decryption={"provider": "sops", "secretRef": {"name": "sops-age"}}
    )
    _, obj = await flux.reconcile("app")
    assert ready(obj)["status"] == "True", obj["status"]
    base = ("diff", "kustomization", "app", "-n", flux.ns, "--no-progress-bar")

    code, out, err = await gitsail(cluster, *base)
    assert (code, out) == (0, ""), (out, err)

    hand = base64.b64encode(b"hand-set-0x99").decode()
    await flux.kube.merge_patch("v1", "Secret", "db", {"data": {"password": hand}}, flux.ns)
    code, out, err = await gitsail(cluster, *base, "-o", "json")

    assert code == 1, (out, err)
    [change] = json.loads(out)
    assert (change["object"], change["action"]) == (f"Secret/{flux.ns}/db", "drifted")
    assert [f["path"] for f in change["fields"]] == ["data.password"]
    printed = out + err
    for secret in (*PLAINTEXTS, "hand-set-0x99"):
        assert secret not in printed
        assert base64.b64encode(secret.encode()).decode() not in printed
