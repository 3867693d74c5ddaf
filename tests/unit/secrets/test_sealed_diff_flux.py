"""``gitsail diff kustomization`` compares SealedSecrets as ``app diff`` does: with the
Sealed Secrets keys, a value re-sealed with the same plaintext is not a change; either way,
ciphertext is never printed as a value (``gitsail.diff.redact`` masks it)."""

from __future__ import annotations

import copy
import json
from typing import Any

from gitsail.diff import diff_resource
from gitsail.diff.compare import SYNCED
from gitsail.diff.redact import redact_secret
from gitsail.diff.sealed import opener_for
from gitsail.kinds.flux_inspect import DRIFTED, compare_build, render_changes
from gitsail.secrets.keys import KeyRing, SealingKey
from gitsail.secrets.sealedsecret import seal_secret
from gitsail.sync import Inventory
from tests.unit.secrets.test_sealed_diff import opener
from tests.unit.test_flux_cli import OWNER_LABELS, FakeKube, ks


def sealed(key: SealingKey, *, labels: bool = False, **values: str) -> dict[str, Any]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "web"},
        "stringData": values,
    }
    out = seal_secret(key.public_key, secret)
    if labels:
        out["metadata"]["labels"] = dict(OWNER_LABELS)
    return out


def ciphertexts(*objs: dict[str, Any]) -> list[str]:
    return [v for o in objs for v in o["spec"]["encryptedData"].values()]


async def test_a_resealed_unchanged_sealedsecret_is_not_a_change(key: SealingKey) -> None:
    live = sealed(key, labels=True, password="pw-0x51", user="bob")
    desired = sealed(key, password="pw-0x51", user="bob")
    assert set(ciphertexts(live)).isdisjoint(ciphertexts(desired))

    with_keys = await compare_build(
        FakeKube(live),  # type: ignore[arg-type]
        ks(),
        Inventory.of([live]),
        [desired],
        open_sealed=opener(key),
    )
    without_keys = await compare_build(
        FakeKube(live),  # type: ignore[arg-type]
        ks(),
        Inventory.of([live]),
        [desired],
    )

    assert with_keys == []
    # Without the keys every value churns, but no ciphertext is printed as a value.
    [change] = without_keys
    assert change.action == DRIFTED
    assert sorted(f.path for f in change.fields) == [
        "spec.encryptedData.password",
        "spec.encryptedData.user",
    ]
    shown = render_changes(without_keys) + json.dumps([c.to_dict() for c in without_keys])
    for value in ciphertexts(live, desired):
        assert value not in shown
    for field in change.fields:
        assert set(str(field.live)) == set(str(field.desired)) == {"+"}
        assert field.live != field.desired


async def test_a_changed_plaintext_shows_only_that_value_masked(key: SealingKey) -> None:
    live = sealed(key, labels=True, password="pw-0x51", user="bob")
    desired = sealed(key, password="pw-0x52", user="bob")

    changes = await compare_build(
        FakeKube(live),  # type: ignore[arg-type]
        ks(),
        Inventory.of([live]),
        [desired],
        open_sealed=opener(key),
    )

    [change] = changes
    assert [f.path for f in change.fields] == ["spec.encryptedData.password"]
    shown = render_changes(changes) + json.dumps([c.to_dict() for c in changes])
    for value in [*ciphertexts(live, desired), "pw-0x51", "pw-0x52"]:
        assert value not in shown


def test_sealed_ciphertext_is_masked_with_equality_kept(key: SealingKey) -> None:
    obj = sealed(key, a="same", b="other")
    obj["spec"]["encryptedData"]["c"] = obj["spec"]["encryptedData"]["a"]
    obj["spec"]["data"] = "bGVnYWN5"
    masked = redact_secret(obj)
    values = masked["spec"]["encryptedData"]
    assert values["a"] == values["c"] != values["b"]
    assert set(values["a"]) == {"+"}
    assert masked["spec"]["data"] != "bGVnYWN5"
    assert obj["spec"]["data"] == "bGVnYWN5"  # the input is not modified
    # The template (not secret) is left as it is; other kinds are untouched.
    assert masked["spec"]["template"] == obj["spec"]["template"]
    other = copy.deepcopy(obj)
    other["apiVersion"] = "example.com/v1"
    assert redact_secret(other) == other


def test_the_argo_diff_masks_ciphertext_too(key: SealingKey) -> None:
    live = sealed(key, password="pw")
    desired = sealed(key, password="pw2")
    result = diff_resource(desired, live)
    for value in ciphertexts(live, desired):
        assert value not in result.unified
        assert value not in json.dumps([result.desired, result.live])
    assert result.changed_paths == ("/spec/encryptedData/password",)


def test_a_reseal_onto_a_newer_key_is_a_change_onto_the_same_or_older_is_not(
    key: SealingKey, other_key: SealingKey
) -> None:
    ring = KeyRing((key, other_key))  # oldest first: other_key is the newest
    open_value = opener_for(ring)
    assert open_value is not None
    on_old = sealed(key, password="pw")
    on_new = sealed(other_key, password="pw")
    # seal rotate after a renewal: the rotation must be applied (automated sync needs a diff)
    rotated = diff_resource(on_new, on_old, open_sealed=open_value)
    assert rotated.changed_paths == ("/spec/encryptedData/password",)
    # re-sealed with the same key, or onto an older one: in sync
    again = sealed(other_key, password="pw")
    assert diff_resource(again, on_new, open_sealed=open_value).status == SYNCED
    assert diff_resource(on_old, on_new, open_sealed=open_value).status == SYNCED
