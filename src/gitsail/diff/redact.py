"""Secret redaction: a diff may say *that* a Secret value changed, never *what* it is.

Every value under a core Secret's ``data`` and ``stringData`` is replaced by a mask made of
``+`` characters. Masks are assigned per comparison, in order of first appearance:
the first distinct value gets ``++++++++`` (eight), the next nine, and so on. So equal
values get equal masks and different values different masks, on both sides of a comparison,
while a mask reveals neither the value, nor its length, nor a hash of it: only equality,
which is exactly what a diff needs.

Values are compared by content: a ``data`` value is base64-decoded first and a
``stringData`` value is taken as UTF-8, so ``stringData: {password: s3cret}`` on one side and
``data: {password: czNjcmV0}`` on the other get the same mask. The annotation
``kubectl.kubernetes.io/last-applied-configuration`` (a full copy of the Secret) is removed.

A Sealed Secrets ``SealedSecret`` (``bitnami.com/*``) has its ciphertext masked the same way:
each ``spec.encryptedData`` value and the legacy ``spec.data`` blob. A ciphertext is not
secret, but printing it as a "value change" says nothing a reader can use and churns on every
re-seal; equal ciphertexts still get equal masks, so a diff shows *which* sealed value
changed (after ``gitsail.diff.sealed`` has unified the re-sealed, unchanged ones).

Objects other than these pass through unchanged (copied).
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Any

from gitsail.diff.normalize import LAST_APPLIED, is_core_secret
from gitsail.model import Obj

__all__ = ["redact_pair", "redact_secret"]

_MASK_BASE = 8


def _content(section: str, value: Any) -> tuple[str, bytes | str]:
    """The identity of a secret value for mask assignment (decoded bytes where possible)."""
    if isinstance(value, str):
        if section == "data":
            try:
                return ("bytes", base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                return ("raw", value)
        return ("bytes", value.encode())
    return ("raw", repr(value))


class _Masks:
    """Assigns masks to values in order of first appearance within one comparison."""

    def __init__(self) -> None:
        self._by_content: dict[tuple[str, bytes | str], str] = {}

    def mask(self, section: str, value: Any) -> str:
        content = _content(section, value)
        found = self._by_content.get(content)
        if found is None:
            found = "+" * (_MASK_BASE + len(self._by_content))
            self._by_content[content] = found
        return found


def _is_sealed_secret(obj: Obj) -> bool:
    return obj.get("kind") == "SealedSecret" and str(obj.get("apiVersion") or "").startswith(
        "bitnami.com/"
    )


def _redact_sealed(out: Obj, masks: _Masks) -> Obj:
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return out
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
    values = spec.get("encryptedData")
    if isinstance(values, dict):
        for key in sorted(values):
            if values[key] is not None:
                values[key] = masks.mask("sealed", values[key])
    elif values is not None:
        spec["encryptedData"] = masks.mask("sealed", values)
    if spec.get("data") is not None:
        spec["data"] = masks.mask("sealed", spec["data"])
    return out


def _redact(obj: Obj, masks: _Masks, *, owned: bool = False) -> Obj:
    """``obj`` redacted: a copy, or, when ``owned`` (the caller's private copy, which may
    change), ``obj`` itself."""
    if owned and not _is_sealed_secret(obj) and not is_core_secret(obj):
        return obj
    out: Obj = obj if owned else copy.deepcopy(obj)
    if _is_sealed_secret(out):
        return _redact_sealed(out, masks)
    if not is_core_secret(out):
        return out
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
    for section in ("data", "stringData"):
        values = out.get(section)
        if isinstance(values, dict):
            # Sorted by key so the mask order does not depend on the manifest's key order.
            for key in sorted(values):
                if values[key] is not None:
                    values[key] = masks.mask(section, values[key])
        elif values is not None:
            out[section] = masks.mask(section, values)
    return out


def redact_secret(obj: Obj) -> Obj:
    """A copy of ``obj`` with Secret values and SealedSecret ciphertext masked (other
    kinds: an unchanged copy)."""
    return _redact(obj, _Masks())


def redact_pair(
    desired: Obj | None, live: Obj | None, *, owned: bool = False
) -> tuple[Obj | None, Obj | None]:
    """Both sides redacted with one mask table: the same value gets the same mask on both.
    Copies, unless ``owned``: the objects are the caller's private copies, redacted in
    place (and returned as they are when there is nothing to redact)."""
    masks = _Masks()
    return (
        None if desired is None else _redact(desired, masks, owned=owned),
        None if live is None else _redact(live, masks, owned=owned),
    )
