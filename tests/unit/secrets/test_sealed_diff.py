"""A re-sealed SealedSecret whose plaintext did not change diffs as in sync
(gitsail.diff.sealed through diff_resource's ``open_sealed``)."""

from __future__ import annotations

import copy
from typing import Any, cast

from gitsail.diff import diff_resource
from gitsail.diff.compare import OUT_OF_SYNC, SYNCED
from gitsail.diff.sealed import Opened, opener_from_cluster
from gitsail.kube import Kube
from gitsail.secrets.keys import SealingKey, key_secret
from gitsail.secrets.sealedsecret import seal_secret
from gitsail.secrets.sealing import SealingError, hybrid_decrypt


def sealed(key: SealingKey, **values: str) -> dict[str, Any]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "apps"},
        "stringData": values,
    }
    return seal_secret(key.public_key, secret)


def opener(key: SealingKey) -> Any:
    def open_value(ciphertext: str, label: bytes) -> Opened | None:
        try:
            return Opened(hybrid_decrypt([key.private_key], ciphertext, label), 0)
        except SealingError:
            return None

    return open_value


def test_resealing_the_same_plaintext_is_in_sync(key: SealingKey) -> None:
    live = sealed(key, password="pw", user="bob")
    desired = sealed(key, password="pw", user="bob")
    assert desired["spec"]["encryptedData"] != live["spec"]["encryptedData"]
    assert diff_resource(desired, live).status == OUT_OF_SYNC  # without the keys: churn
    result = diff_resource(desired, live, open_sealed=opener(key))
    assert result.status == SYNCED
    assert result.unified == ""


def test_a_changed_plaintext_is_still_out_of_sync_and_only_that_key(key: SealingKey) -> None:
    live = sealed(key, password="pw", user="bob")
    desired = sealed(key, password="new-pw", user="bob")
    result = diff_resource(desired, live, open_sealed=opener(key))
    assert result.status == OUT_OF_SYNC
    assert result.changed_paths == ("/spec/encryptedData/password",)
    assert "new-pw" not in result.unified


def test_values_the_keys_cannot_open_are_compared_as_they_are(
    key: SealingKey, other_key: SealingKey
) -> None:
    live = sealed(key, password="pw")
    desired = sealed(other_key, password="pw")
    assert diff_resource(desired, live, open_sealed=opener(key)).status == OUT_OF_SYNC


def test_a_moved_sealedsecret_is_not_unified(key: SealingKey) -> None:
    live = sealed(key, password="pw")
    desired = copy.deepcopy(sealed(key, password="pw"))
    desired["metadata"]["annotations"] = {"sealedsecrets.bitnami.com/cluster-wide": "true"}
    assert diff_resource(desired, live, open_sealed=opener(key)).status == OUT_OF_SYNC


class KeySecrets:
    def __init__(self, *secrets: dict[str, Any]) -> None:
        self.secrets = list(secrets)
        self.asked: list[tuple[str, str | None]] = []

    async def list(
        self, _api: str, _kind: str, namespace: str, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.asked.append((namespace, label_selector))
        return self.secrets


async def test_the_cli_reads_the_cluster_keys_for_the_diff(key: SealingKey) -> None:
    fake = KeySecrets(key_secret(key, namespace="kube-system"))
    open_value = await opener_from_cluster(cast(Kube, fake), "kube-system")
    assert open_value is not None
    assert fake.asked == [("kube-system", "sealedsecrets.bitnami.com/sealed-secrets-key=active")]
    live, desired = sealed(key, password="pw"), sealed(key, password="pw")
    assert diff_resource(desired, live, open_sealed=open_value).status == SYNCED


async def test_no_readable_keys_means_no_opener() -> None:
    assert await opener_from_cluster(cast(Kube, KeySecrets()), "kube-system") is None
