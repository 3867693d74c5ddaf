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

A value re-sealed with a **newer** key than the live one (``gitsail seal rotate`` after a key
renewal) is a real change too, although its plaintext is the same: otherwise an Application
with automated sync would compare as in sync after the rotation commit, never apply it, and
the old key would stay in use. Unified is only a re-seal with the same key or an older one.

The keys come through ``SealedOpener`` (a ciphertext and an OAEP label → ``Opened``: the
plaintext and the rank of the key that opened it, higher is newer; or None), supplied by
whoever holds them (the controller's key store): this module never sees a key, returns no
plaintext, and compares plaintexts only with each other. Without an opener a SealedSecret is
compared as any object.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable
from typing import Any, NamedTuple

from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets.keys import KEY_LABEL_SELECTOR, KeyRing, keyring_from_secrets
from gitsail.secrets.sealedsecret import sealed_identity
from gitsail.secrets.sealing import SealingError, hybrid_decrypt

__all__ = [
    "Opened",
    "SealedOpener",
    "is_sealed_secret",
    "open_with_ring",
    "opener_for",
    "opener_from_cluster",
    "unify_resealed",
]


class Opened(NamedTuple):
    """An opened value: its plaintext, and the rank of the key that opened it (the key's
    position in the ring, oldest first: higher is newer)."""

    plaintext: bytes
    rank: int


SealedOpener = Callable[[str, bytes], "Opened | None"]

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
        new, current = opener(value, label), opener(old, label)
        if new is None or current is None or new.rank > current.rank:
            continue  # unopened, or moved to a newer key (a rotation): a real change
        if hmac.compare_digest(new.plaintext, current.plaintext):
            same[key] = old
    if not same:
        return desired
    out = copy.deepcopy(desired)
    out["spec"]["encryptedData"].update(same)
    return out


def open_with_ring(ring: KeyRing, ciphertext: str, label: bytes) -> Opened | None:
    """``ciphertext`` opened with the keys of ``ring`` (newest tried first), or None."""
    ranked = list(enumerate(k.private_key for k in ring.keys))
    for rank, key in reversed(ranked):
        try:
            return Opened(hybrid_decrypt([key], ciphertext, label), rank)
        except SealingError:
            continue
    return None


def opener_for(ring: KeyRing) -> SealedOpener | None:
    """An opener over ``ring`` (None when it holds no key)."""
    if not ring.keys:
        return None

    def open_value(ciphertext: str, label: bytes) -> Opened | None:
        return open_with_ring(ring, ciphertext, label)

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
