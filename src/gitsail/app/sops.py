"""SOPS for Argo CD Applications: an opt-in, since Argo CD has no native path.

An Application annotated ``gitsail.io/sops-decryption: <secret>`` has the SOPS-encrypted
manifests of its render decrypted in memory, with the age keys of the ``*.agekey`` entries of
that Secret **in the controller's namespace**, before the dry run and the diff (the rules of
``gitsail.secrets.sops_build``: each encrypted file under the app's path is opened and its MAC
verified as committed; an object is decrypted only with the data key of a verified file).

The key Secret must list who may use it: annotation ``gitsail.io/sops-allowed-projects``
with a comma-separated list of AppProject names, or ``*``. Without that, a tenant could name
another team's key Secret and have that team's encrypted files (copied into their own
repository) decrypted into their namespace.

Not supported for Applications: decrypting ``secretGenerator`` inputs (the checkout is the
shared, read-only source cache; use encrypted Secret manifests instead). Without the
annotation, an encrypted object in a render is refused rather than applied as ciphertext.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from gitsail.app.model import Delivery
from gitsail.errors import Stalled, Transient
from gitsail.kube import Kube, KubeError
from gitsail.model import Artifact, Obj
from gitsail.secrets import sops
from gitsail.secrets.sops_build import (
    DECRYPTION_FAILED,
    Decryptor,
    describe,
    identities_from_secret,
)

__all__ = ["ALLOWED_PROJECTS", "SOPS_ANNOTATION", "decrypt_manifests"]

SOPS_ANNOTATION = "gitsail.io/sops-decryption"
ALLOWED_PROJECTS = "gitsail.io/sops-allowed-projects"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _project(app: Delivery) -> str:
    spec = app.origin.get("spec")
    project = spec.get("project") if isinstance(spec, dict) else None
    return str(project or "default")


async def decrypt_manifests(
    control: Kube,
    control_namespace: str,
    app: Delivery,
    artifact: Artifact,
    manifests: Sequence[Obj],
) -> list[Obj]:
    """The manifests with SOPS content decrypted (opt-in), or refused when encrypted without
    the opt-in. Raises ``Transient``/``Stalled`` with reason ``DecryptionFailed``."""
    meta = app.origin.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    name = annotations.get(SOPS_ANNOTATION) if isinstance(annotations, dict) else None
    if not name:
        for obj in manifests:
            if sops.is_encrypted_object(obj):
                raise Stalled(
                    DECRYPTION_FAILED,
                    f"{describe(obj)} is SOPS encrypted: annotate the Application with "
                    f"{SOPS_ANNOTATION}: <Secret of age keys in {control_namespace}> to "
                    "decrypt it",
                )
        return list(manifests)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Stalled(DECRYPTION_FAILED, f"{SOPS_ANNOTATION}: {name!r} is not a Secret name")
    shown = f"Secret/{control_namespace}/{name}"
    try:
        secret = await control.get("v1", "Secret", name, control_namespace)
    except KubeError as exc:
        raise Transient(DECRYPTION_FAILED, f"cannot get decryption {shown}: {exc}") from exc
    if secret is None:
        raise Transient(DECRYPTION_FAILED, f"decryption {shown} not found")
    secret_meta = secret.get("metadata") or {}
    allowed = str((secret_meta.get("annotations") or {}).get(ALLOWED_PROJECTS) or "")
    projects = {p.strip() for p in allowed.split(",") if p.strip()}
    if "*" not in projects and _project(app) not in projects:
        raise Stalled(
            DECRYPTION_FAILED,
            f"{shown} does not allow project {_project(app)!r} (annotation "
            f"{ALLOWED_PROJECTS} on the Secret)",
        )
    identities, digest = identities_from_secret(secret, shown)
    decryptor = Decryptor(
        where=f"Application {app.display}", identities=identities, digest=digest, secret=shown
    )
    if not any(sops.is_encrypted_object(obj) for obj in manifests):
        return list(manifests)
    await asyncio.to_thread(decryptor.prepare, artifact.root, artifact.path, generator_inputs=False)
    return await asyncio.to_thread(decryptor.decrypt_objects, manifests)
