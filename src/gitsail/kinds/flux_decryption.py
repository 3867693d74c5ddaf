"""SOPS decryption for Flux Kustomizations (``spec.decryption.provider: sops``), with age keys.

What kustomize-controller does, and how gitsail does it:

1. **Keys.** Every ``*.agekey`` entry of the ``spec.decryption.secretRef`` Secret (in the
   Kustomization's namespace) is an age key file. A missing Secret or a bad key file is
   ``DecryptionFailed`` (retried: someone may fix the Secret). Without a ``secretRef`` there
   are no keys, and any encrypted file the build needs fails the same way.
2. **Generator inputs, before the build.** ``secretGenerator`` ``files`` (format from the
   key's extension, as Flux: ``.yaml``/``.json``/``.env``/else binary), ``envs`` (dotenv
   unless the name says YAML/JSON) and ``patches[].path`` of every kustomization reached
   from ``spec.path`` (through ``resources`` and ``components`` directories) are decrypted
   **in place in the build's private workspace**, because kustomize must read them to
   compute the generated Secret (and its name hash) exactly as Flux's. This is the only
   plaintext on disk: the workspace is a fresh ``0700`` directory (``/dev/shm`` when the host
   has it, so memory-backed), the files are rewritten ``0600``, and the workspace is removed
   as soon as kustomize returns. Kustomize's error text is scrubbed of every decrypted value.
3. **Encrypted manifests, in memory.** Every YAML/JSON file of the workspace carrying SOPS
   metadata is opened in memory before the build: its data key recovered and its **MAC
   verified on the file as committed** (kustomize may legitimately rewrite unencrypted
   values the MAC covers: namespace, labels, name prefix; Flux skips the MAC check for that
   reason, gitsail checks it where it still holds). After the build, each object with a
   ``sops`` entry is decrypted in memory with the data key of the verified file whose MAC it
   carries (each value still authenticated by its own GCM tag and path); an object that
   comes from no verified file is refused. A Secret whose ``data`` values are whole SOPS
   files (generated from encrypted files Flux did not pre-decrypt) has them decrypted and
   re-encoded, MAC verified. ``kustomize.toolkit.fluxcd.io/decrypt: disabled`` skips an
   object.
4. **Safety.** Without ``spec.decryption`` a SOPS-encrypted Secret in the build is refused
   (never applied as ciphertext), as Flux does. Messages name files, objects, paths and
   recipients, never values; decrypted objects live only in memory (the build cache, the
   apply), and the diff/redact layer masks Secret data as for any Secret.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitsail.kinds.flux_kustomization import Kustomization
from gitsail.kinds.status import Stalled, Transient
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets import sops
from gitsail.secrets.sops_build import (
    AGE_KEY_SUFFIX,
    DECRYPT_ANNOTATION,
    DECRYPTION_FAILED,
    Decryptor,
    describe,
    identities_from_secret,
    private_workspace,
)

__all__ = [
    "AGE_KEY_SUFFIX",
    "DECRYPTION_FAILED",
    "DECRYPT_ANNOTATION",
    "Decryptor",
    "identities_from_secret",
    "load_decryptor",
    "private_workspace",
    "refuse_encrypted",
]


def refuse_encrypted(objects: Sequence[Obj]) -> None:
    """Flux's guard without ``spec.decryption``: an encrypted Secret (here: any object with
    SOPS metadata) is never applied as ciphertext."""
    for obj in objects:
        secret = obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "sops" in obj
        if secret or sops.is_encrypted_object(obj):
            raise Stalled(
                "BuildFailed",
                f"{describe(obj)} is SOPS encrypted, configuring decryption is required for this "
                "secret to be reconciled",
            )


async def load_decryptor(kube: Kube, ks: Kustomization) -> Decryptor | None:
    """The keys of the Kustomization's ``spec.decryption`` (None without decryption)."""
    if ks.decryption is None:
        return None
    where = f"Kustomization {ks.namespace}/{ks.name}"
    name = ks.decryption.secret_ref
    if name is None:
        return Decryptor(where=where, identities=[], digest="sha256:none", secret="")
    shown = f"Secret/{ks.namespace}/{name}"
    try:
        secret = await kube.get("v1", "Secret", name, ks.namespace)
    except KubeError as exc:
        raise Transient(DECRYPTION_FAILED, f"cannot get decryption {shown}: {exc}") from exc
    if secret is None:
        raise Transient(DECRYPTION_FAILED, f"decryption {shown} not found")
    identities, digest = identities_from_secret(secret, shown)
    return Decryptor(where=where, identities=identities, digest=digest, secret=shown)
