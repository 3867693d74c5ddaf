"""``gitsail diff kustomization`` with SealedSecrets, as a user runs it, on the shared dev
cluster: a SealedSecret re-sealed with the same plaintext is no difference when the sealing
keys are readable (as ``app diff``); a changed plaintext is one drifted value; ciphertext and
plaintext are never printed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from gitsail.secrets.keys import SealingKey, generate_key, key_secret
from gitsail.secrets.sealedsecret import seal_secret
from tests.integration.flux.test_kustomization import Flux, ready
from tests.integration.test_flux_diff_tree import api, flux, gitsail  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

PLAIN = "sealed-diff-plain-0x7a"
CHANGED = "sealed-diff-changed-0x7b"


@pytest.fixture(scope="module")
def sealing_key() -> SealingKey:
    return generate_key(now=datetime.now(UTC), key_size=2048)


def sealed_yaml(key: SealingKey, namespace: str, **values: str) -> tuple[str, list[str]]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": namespace},
        "stringData": values,
    }
    obj: dict[str, Any] = seal_secret(key.public_key, secret)
    return yaml.safe_dump(obj), list(obj["spec"]["encryptedData"].values())


async def test_a_resealed_sealedsecret_is_no_diff_and_ciphertext_is_never_printed(
    cluster: Cluster,
    api: Kube,  # noqa: F811 - the fixture
    flux: Flux,  # noqa: F811 - the fixture
    git_repo: Workdir,
    sealing_key: SealingKey,
) -> None:
    ns = flux.ns
    await install_crds(api, families=["sealed-secrets"])
    await api.create(key_secret(sealing_key, namespace=ns))
    first, first_cipher = sealed_yaml(sealing_key, ns, password=PLAIN, user="app")
    sha = git_repo.commit_and_push({"apps/db.yaml": first}, "sealed")
    await flux.git_repository("repo", sha)
    await flux.kustomization("apps", path="./apps", targetNamespace=ns)
    _, obj = await flux.reconcile("apps")
    assert ready(obj)["status"] == "True", obj["status"]

    # Re-sealed with the same plaintext: every ciphertext differs.
    again, again_cipher = sealed_yaml(sealing_key, ns, password=PLAIN, user="app")
    assert set(again_cipher).isdisjoint(first_cipher)
    sha = git_repo.commit_and_push({"apps/db.yaml": again}, "re-sealed")
    await flux.git_repository("repo", sha)
    base = ("diff", "kustomization", "apps", "-n", ns, "--no-progress-bar")

    code, out, err = await gitsail(cluster, *base, "--sealed-secrets-keys-namespace", ns)
    assert (code, out) == (0, ""), (out, err)

    # Without readable keys (none in that namespace): churn, but masked.
    no_keys = ("--sealed-secrets-keys-namespace", f"{ns}-no-keys")
    code, out, err = await gitsail(cluster, *base, *no_keys, "-o", "json")
    assert code == 1, (out, err)
    [change] = [c for c in json.loads(out) if c["action"] == "drifted"]
    assert change["object"] == f"SealedSecret/{ns}/db"
    assert sorted(f["path"] for f in change["fields"]) == [
        "spec.encryptedData.password",
        "spec.encryptedData.user",
    ]
    for value in [*first_cipher, *again_cipher, PLAIN]:
        assert value not in out + err

    # A changed plaintext: one drifted value, neither ciphertext nor plaintext shown.
    changed, changed_cipher = sealed_yaml(sealing_key, ns, password=CHANGED, user="app")
    sha = git_repo.commit_and_push({"apps/db.yaml": changed}, "changed")
    await flux.git_repository("repo", sha)
    code, out, err = await gitsail(cluster, *base, "--sealed-secrets-keys-namespace", ns)
    assert code == 1, (out, err)
    assert f"SealedSecret/{ns}/db drifted" in out
    assert "spec.encryptedData.password" in out
    assert "spec.encryptedData.user" not in out
    for value in [*first_cipher, *changed_cipher, PLAIN, CHANGED]:
        assert value not in out + err
