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

``secretGenerator`` inputs (``files``/``envs``, and ``patches[].path``) that are SOPS
encrypted are decrypted too, but never in the checkout (the shared source cache, read by
every app and never written): ``render_decrypted`` copies only the files the kustomize render
of the app's path reads into a **private workspace** (a fresh ``0700`` directory under
``/dev/shm`` when the host has room, else under the renderer's work directory; at most
``MAX_PRIVATE_FILES`` files and ``MAX_PRIVATE_BYTES`` bytes), decrypts the inputs there
(``0600``), renders from that copy with the renderer's own temporary copy inside the same
workspace and without the render cache, and removes the workspace whatever happens. The
render's error text is scrubbed of the decrypted values. An app whose generator inputs are
not encrypted renders from the shared checkout as before (cached).

Without the annotation, an encrypted object in a render is refused rather than applied as
ciphertext.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from gitsail.app.model import Delivery
from gitsail.errors import Stalled, Transient
from gitsail.kube import Kube, KubeError
from gitsail.model import Artifact, Obj
from gitsail.policy import Policy
from gitsail.render import Rendered, RenderError, copy_artifact
from gitsail.secrets import sops
from gitsail.secrets.sops_build import (
    DECRYPTION_FAILED,
    Decryptor,
    describe,
    identities_from_secret,
    private_workspace,
)
from gitsail.source import PathNotFound, SourceError, input_files

__all__ = [
    "ALLOWED_PROJECTS",
    "MAX_PRIVATE_BYTES",
    "MAX_PRIVATE_FILES",
    "SOPS_ANNOTATION",
    "decrypt_manifests",
    "render_decrypted",
]

MAX_PRIVATE_FILES = 10_000
MAX_PRIVATE_BYTES = 64 << 20  # the private copy lives in memory (/dev/shm) when it can

SOPS_ANNOTATION = "gitsail.io/sops-decryption"
ALLOWED_PROJECTS = "gitsail.io/sops-allowed-projects"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _project(app: Delivery) -> str:
    spec = app.origin.get("spec")
    project = spec.get("project") if isinstance(spec, dict) else None
    return str(project or "default")


def _refuse_without_opt_in(manifests: Sequence[Obj], control_namespace: str) -> list[Obj]:
    for obj in manifests:
        if sops.is_encrypted_object(obj):
            raise Stalled(
                DECRYPTION_FAILED,
                f"{describe(obj)} is SOPS encrypted: annotate the Application with "
                f"{SOPS_ANNOTATION}: <Secret of age keys in {control_namespace}> to "
                "decrypt it",
            )
    return list(manifests)


async def decrypt_manifests(
    control: Kube,
    control_namespace: str,
    app: Delivery,
    artifact: Artifact,
    manifests: Sequence[Obj],
) -> list[Obj]:
    """The manifests with SOPS content decrypted (opt-in), or refused when encrypted without
    the opt-in. Raises ``Transient``/``Stalled`` with reason ``DecryptionFailed``."""
    decryptor = await app_decryptor(control, control_namespace, app)
    if decryptor is None:
        return _refuse_without_opt_in(manifests, control_namespace)
    return await _decrypt_rendered(decryptor, artifact, manifests)


async def _decrypt_rendered(
    decryptor: Decryptor, artifact: Artifact, manifests: Sequence[Obj]
) -> list[Obj]:
    """Encrypted manifests of a render from the shared checkout, decrypted in memory."""
    if not any(sops.is_encrypted_object(obj) for obj in manifests):
        return list(manifests)
    await asyncio.to_thread(decryptor.prepare, artifact.root, artifact.path, generator_inputs=False)
    return await asyncio.to_thread(decryptor.decrypt_objects, manifests)


async def app_decryptor(control: Kube, control_namespace: str, app: Delivery) -> Decryptor | None:
    """The keys of an opted-in Application (None without the annotation): the key Secret
    read from the controller's namespace, the project checked against its allowed list.
    Raises ``Transient``/``Stalled`` with reason ``DecryptionFailed``."""
    meta = app.origin.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    name = annotations.get(SOPS_ANNOTATION) if isinstance(annotations, dict) else None
    if not name:
        return None
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
    return Decryptor(
        where=f"Application {app.display}", identities=identities, digest=digest, secret=shown
    )


Render = Callable[[Artifact, "Path | None"], Awaitable[Rendered]]


async def render_decrypted(
    control: Kube,
    control_namespace: str,
    app: Delivery,
    artifact: Artifact,
    render: Render,
    *,
    work_dir: Path,
    policy: Policy,
) -> Rendered:
    """Render ``artifact`` (``render(artifact, scratch)``) and decrypt what the opt-in
    allows (the answer's manifests are the decrypted ones); refuse encrypted objects
    without it. When a generator input of the app's
    kustomizations is encrypted, the render runs on a private copy (module docstring).

    Raises ``RenderError`` (the render failed; its text scrubbed of decrypted values) or
    ``Transient``/``Stalled`` with reason ``DecryptionFailed``."""
    decryptor = await app_decryptor(control, control_namespace, app)
    if decryptor is None:
        rendered = await render(artifact, None)
        _refuse_without_opt_in(rendered.manifests, control_namespace)
        return rendered
    private = artifact.kind == "git" and bool(
        await asyncio.to_thread(decryptor.encrypted_generator_inputs, artifact.root, artifact.path)
    )
    if not private:
        rendered = await render(artifact, None)
        manifests = await _decrypt_rendered(decryptor, artifact, rendered.manifests)
        return dataclasses.replace(rendered, manifests=tuple(manifests))
    components = _components(app)
    with private_workspace(work_dir, "argo-sops-") as tmp:
        files = await asyncio.to_thread(_private_inputs, artifact, components, policy)
        root = tmp / "src"
        await asyncio.to_thread(copy_artifact, artifact.root, root, files)
        copy = dataclasses.replace(artifact, root=root, digest="")  # never cached
        await asyncio.to_thread(decryptor.prepare, root, artifact.path)
        try:
            rendered = await render(copy, tmp)
        except RenderError as exc:
            detail = decryptor.scrub(exc.detail).replace(str(tmp), "<workspace>")
            raise RenderError(detail, app_path=exc.app_path, tool=exc.tool) from None
    manifests = await asyncio.to_thread(decryptor.decrypt_objects, rendered.manifests)
    return dataclasses.replace(rendered, manifests=tuple(manifests))


def _components(app: Delivery) -> tuple[str, ...]:
    options = app.render
    kustomize = options.kustomize if options is not None else None
    return kustomize.components if kustomize is not None else ()


def _private_inputs(artifact: Artifact, components: Sequence[str], policy: Policy) -> list[Path]:
    """The files of the checkout a kustomize render of the app's path (and its
    ``kustomize.components``) reads: what the private copy holds, bounded."""
    base = artifact.path if artifact.path not in ("", ".") else "."
    paths = [base, *(f"{base}/{c}" for c in components)]
    files: set[Path] = set()
    for path in paths:
        try:
            found = input_files(artifact.root, path, tool_hint="kustomize", policy=policy)
        except PathNotFound:
            continue  # a missing component: the render reports or skips it
        except SourceError as exc:
            raise Stalled(DECRYPTION_FAILED, f"cannot copy the inputs privately: {exc}") from exc
        if found is None:
            raise Stalled(
                DECRYPTION_FAILED,
                f"{path}: the files this kustomization reads cannot be bounded (a remote "
                "base?), so its SOPS generator inputs cannot be decrypted in a private copy",
            )
        files.update(found)
    if len(files) > MAX_PRIVATE_FILES:
        raise Stalled(
            DECRYPTION_FAILED,
            f"{base}: more than {MAX_PRIVATE_FILES} files to copy for a private SOPS render",
        )
    total = 0
    for file in files:
        total += file.lstat().st_size
        if total > MAX_PRIVATE_BYTES:
            raise Stalled(
                DECRYPTION_FAILED,
                f"{base}: more than {MAX_PRIVATE_BYTES} bytes to copy for a private SOPS render",
            )
    return sorted(files)
