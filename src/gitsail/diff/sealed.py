"""SealedSecrets compared by plaintext: a re-sealed value that did not change is in sync.

A SealedSecret's values are sealed with a fresh session key each time, so re-sealing the same
plaintext (``kubeseal`` again, a key renewal, another machine) changes every byte of
``spec.encryptedData`` while the Secret the controller writes stays the same (Bitnami issues
#376, #1468: Argo CD flapping OutOfSync). Before comparing, ``unify_resealed`` opens each value
that differs between the desired and the live SealedSecret with the controller's keys; when
both open, under the scope label of the same object, to the same plaintext, the desired side
takes the live ciphertext. What remains different is a real change: another plaintext, a value
added or removed, a value no key opens, or a change of scope or identity (different labels:
nothing is unified).

The keys come through ``SealedOpener`` (a ciphertext and an OAEP label → the plaintext, or
None), supplied by whoever holds them (the controller's key store): this module never sees a
key, returns no plaintext, and compares plaintexts only with each other. Without an opener a
SealedSecret is compared as any object.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable
from typing import Any

from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets.keys import KEY_LABEL_SELECTOR, KeyRing, keyring_from_secrets
from gitsail.secrets.sealedsecret import sealed_identity
from gitsail.secrets.sealing import SealingError, hybrid_decrypt

__all__ = [
    "SealedOpener",
    "is_sealed_secret",
    "opener_for",
    "opener_from_cluster",
    "unify_resealed",
]

SealedOpener = Callable[[str, bytes], "bytes | None"]

_GROUP = "bitnami.com/"


def is_sealed_secret(obj: Obj | None) -> bool:
    return (
        obj is not None
        and obj.get("kind") == "SealedSecret"
        and str(obj.get("apiVersion", "")).startswith(_GROUP)
    )


def _encrypted(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    data = spec.get("encryptedData") if isinstance(spec, dict) else None
    return data if isinstance(data, dict) else {}


def unify_resealed(desired: Obj, live: Obj, opener: SealedOpener) -> Obj:
    """``desired`` with each re-sealed, unchanged value replaced by the live ciphertext."""
    if not (is_sealed_secret(desired) and is_sealed_secret(live)):
        return desired
    _, _, label = sealed_identity(desired)
    if sealed_identity(live)[2] != label:
        return desired  # moved or re-scoped: a real change
    want, have = _encrypted(desired), _encrypted(live)
    same: dict[str, str] = {}
    for key, value in want.items():
        old = have.get(key)
        if not isinstance(value, str) or not isinstance(old, str) or value == old:
            continue
        new_plain, old_plain = opener(value, label), opener(old, label)
        opened = new_plain is not None and old_plain is not None
        if opened and hmac.compare_digest(new_plain or b"", old_plain or b""):
            same[key] = old
    if not same:
        return desired
    out = copy.deepcopy(desired)
    out["spec"]["encryptedData"].update(same)
    return out


def opener_for(ring: KeyRing) -> SealedOpener | None:
    """An opener over ``ring`` (None when it holds no key)."""
    if not ring.keys:
        return None
    keys = ring.private_keys()

    def open_value(ciphertext: str, label: bytes) -> bytes | None:
        try:
            return hybrid_decrypt(keys, ciphertext, label)
        except SealingError:
            return None

    return open_value


async def opener_from_cluster(kube: Kube, namespace: str) -> SealedOpener | None:
    """The sealing keys the caller may read in ``namespace`` (the CLI's ``app diff``), or
    None when there are none or they cannot be read: the diff then shows ciphertext churn."""
    try:
        secrets = await kube.list("v1", "Secret", namespace, label_selector=KEY_LABEL_SELECTOR)
    except KubeError:
        return None
    ring, _problems = keyring_from_secrets(secrets)
    return opener_for(ring)
