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

import base64
import binascii
import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitsail.kinds.flux_kustomization import Kustomization
from gitsail.kinds.status import ReconcileError, Stalled, Transient
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets import sops
from gitsail.secrets.age import AgeError, AgeIdentity, parse_identities
from gitsail.source import SourceError
from gitsail.source.credentials import secret_values
from gitsail.source.inputs import KUSTOMIZATION_FILES

__all__ = [
    "DECRYPTION_FAILED",
    "DECRYPT_ANNOTATION",
    "Decryptor",
    "load_decryptor",
    "private_workspace",
    "refuse_encrypted",
]

DECRYPTION_FAILED = "DecryptionFailed"
DECRYPT_ANNOTATION = "kustomize.toolkit.fluxcd.io/decrypt"
AGE_KEY_SUFFIX = ".agekey"
_MAX_FILES = 10_000
_MAX_KUSTOMIZATIONS = 1_000
_MIN_SCRUB = 3


def _shown(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def refuse_encrypted(objects: Sequence[Obj]) -> None:
    """Flux's guard without ``spec.decryption``: an encrypted Secret (here: any object with
    SOPS metadata) is never applied as ciphertext."""
    for obj in objects:
        secret = obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "sops" in obj
        if secret or sops.is_encrypted_object(obj):
            raise Stalled(
                "BuildFailed",
                f"{_shown(obj)} is SOPS encrypted, configuring decryption is required for this "
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
    try:
        values = secret_values(secret)
    except SourceError as exc:
        raise Transient(DECRYPTION_FAILED, f"decryption {shown}: {exc}") from exc
    identities: list[AgeIdentity] = []
    digest = hashlib.sha256()
    for entry in sorted(values):
        if not entry.endswith(AGE_KEY_SUFFIX):
            continue
        digest.update(entry.encode() + b"\0" + values[entry].encode() + b"\0")
        try:
            identities += parse_identities(values[entry], source=f"{shown} key {entry!r}")
        except AgeError as exc:
            raise Transient(
                DECRYPTION_FAILED, f"failed to import {entry!r} data from {shown}: {exc}"
            ) from exc
    return Decryptor(
        where=where, identities=identities, digest="sha256:" + digest.hexdigest(), secret=shown
    )


@contextlib.contextmanager
def private_workspace(fallback: Path, prefix: str) -> Iterator[Path]:
    """A fresh ``0700`` directory for a build that will hold decrypted generator inputs:
    under ``/dev/shm`` (memory) when the host has it, else under ``fallback``; removed on
    exit whatever happens."""
    shm = Path("/dev/shm")  # noqa: S108 - a fresh mkdtemp below, mode 0700
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else fallback
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Decryptor:
    """One Kustomization's keys and what one build verified with them."""

    where: str
    identities: list[AgeIdentity]
    digest: str  # of the key material: part of the build cache key, never the keys
    secret: str
    _verified: dict[str, bytes] = field(default_factory=dict, repr=False)
    _failed: dict[str, sops.SopsError] = field(default_factory=dict, repr=False)
    _unreadable: list[str] = field(default_factory=list, repr=False)
    _plaintexts: set[str] = field(default_factory=set, repr=False)

    # --- step 2 and 3 (before kustomize; a thread) -------------------------------------------

    def prepare(self, root: Path, path: str) -> None:
        """Decrypt the generator inputs in place and verify every encrypted manifest."""
        resolved = root.resolve()
        self._decrypt_generator_inputs(resolved, path)
        count = 0
        for file in sorted(resolved.rglob("*")):
            count += 1
            if count > _MAX_FILES:
                raise Stalled(DECRYPTION_FAILED, f"more than {_MAX_FILES} files to scan")
            if file.is_symlink() or not file.is_file():
                continue
            fmt = sops.format_for_path(file.name)
            if fmt not in (sops.Format.YAML, sops.Format.JSON):
                continue
            if file.stat().st_size > sops.MAX_FILE_BYTES:
                continue
            data = file.read_bytes()
            if not sops.has_marker(data, fmt):
                continue
            rel = file.relative_to(resolved).as_posix()
            try:
                loaded = sops.load(data, fmt)
            except sops.SopsError as exc:
                self._unreadable.append(f"{rel}: {exc}")
                continue
            try:
                opened = sops.decrypt(loaded, self.identities, where=rel)
            except sops.SopsError as exc:
                self._failed[loaded.metadata.mac] = exc
                continue
            self._verified[loaded.metadata.mac] = opened.data_key

    def _decrypt_generator_inputs(self, root: Path, path: str) -> None:
        pending = [posixpath.normpath(path or ".")]
        seen: set[str] = set()
        while pending:
            directory = pending.pop()
            if directory in seen:
                continue
            seen.add(directory)
            if len(seen) > _MAX_KUSTOMIZATIONS:
                raise Stalled(DECRYPTION_FAILED, "too many kustomizations to walk")
            kustomization = self._kustomization(root, directory)
            if kustomization is None:
                continue
            for ref, fmt in _generator_inputs(kustomization):
                self._decrypt_in_place(root, directory, ref, fmt)
            for ref in _strings(kustomization.get("resources")) + _strings(
                kustomization.get("components")
            ):
                target = posixpath.normpath(posixpath.join(directory, ref))
                if target.startswith("../") or target == ".." or "://" in ref:
                    continue
                if (root / target).is_dir():
                    pending.append(target)

    @staticmethod
    def _kustomization(root: Path, directory: str) -> dict[str, Any] | None:
        for name in KUSTOMIZATION_FILES:
            candidate = root / directory / name
            if candidate.is_file() and not candidate.is_symlink():
                try:
                    loaded = yaml.safe_load(candidate.read_text())
                except (yaml.YAMLError, UnicodeDecodeError):
                    return None  # kustomize reports it
                return loaded if isinstance(loaded, dict) else None
        return None

    def _decrypt_in_place(self, root: Path, directory: str, ref: str, fmt: sops.Format) -> None:
        rel = posixpath.normpath(posixpath.join(directory, ref))
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file() or (root / rel).is_symlink():
            return  # outside the workspace, or missing: kustomize reports it
        if target.stat().st_size > sops.MAX_FILE_BYTES:
            raise Stalled(
                DECRYPTION_FAILED,
                f"{self.where}: {rel} is larger than {sops.MAX_FILE_BYTES} bytes",
            )
        data = target.read_bytes()
        if not sops.has_marker(data, fmt):
            return
        try:
            opened, plain = sops.open_file(data, fmt, self.identities, where=rel, output=fmt)
        except sops.SopsError as exc:
            raise self._error(exc) from None
        self._verified[opened.metadata.mac] = opened.data_key
        self._plaintexts.update(v for v in sops.plaintext_leaves(opened) if len(v) >= _MIN_SCRUB)
        if fmt is sops.Format.BINARY and len(plain) >= _MIN_SCRUB:
            self._plaintexts.add(plain.decode("utf-8", "replace"))
        target.chmod(0o600)
        fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "wb") as out:
            out.write(plain)

    def _error(self, exc: sops.SopsError) -> ReconcileError:
        message = f"{self.where}: decryption failed: {exc}"
        if isinstance(exc, sops.NoMatchingKey):
            keys = self.secret or "no spec.decryption.secretRef"
            return Transient(DECRYPTION_FAILED, f"{message} (keys from {keys})")
        return Stalled(DECRYPTION_FAILED, message)

    def scrub(self, text: str) -> str:
        """``text`` with every decrypted value replaced (longest first)."""
        for value in sorted(self._plaintexts, key=len, reverse=True):
            text = text.replace(value, "<redacted>")
        return text

    # --- step 3 (after kustomize) ------------------------------------------------------------

    def decrypt_objects(self, objects: Sequence[Obj]) -> list[Obj]:
        out: list[Obj] = []
        for obj in objects:
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if str(annotations.get(DECRYPT_ANNOTATION, "")).lower() == "disabled":
                out.append(obj)
            elif sops.is_encrypted_object(obj):
                out.append(self._decrypt_object(obj))
            elif obj.get("kind") == "Secret" and isinstance(obj.get("data"), dict):
                out.append(self._decrypt_data_fields(obj))
            else:
                out.append(obj)
        return out

    def _decrypt_object(self, obj: Obj) -> Obj:
        mac = str(obj["sops"].get("mac"))
        shown = _shown(obj)
        if mac in self._failed:
            raise self._error(self._failed[mac])
        key = self._verified.get(mac)
        if key is None:
            why = "; ".join(self._unreadable[:3])
            raise Stalled(
                DECRYPTION_FAILED,
                f"{self.where}: {shown} is SOPS encrypted but comes from no file whose MAC "
                f"could be verified{': ' + why if why else ''}",
            )
        try:
            return sops.decrypt_object(
                obj, self.identities, where=shown, verify_mac=False, data_key=lambda _m: key
            )
        except sops.SopsError as exc:
            raise self._error(exc) from None

    def _decrypt_data_fields(self, obj: Obj) -> Obj:
        data = dict(obj["data"])
        changed = False
        for key, value in data.items():
            if not isinstance(value, str):
                continue
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            fmt = _format_from_marker(raw)
            if fmt is None:
                continue
            output = sops.format_for_path(key)
            where = f"{_shown(obj)} data {key!r}"
            try:
                plain = sops.decrypt_file(raw, fmt, self.identities, where=where, output=output)
            except sops.SopsError as exc:
                raise self._error(exc) from None
            data[key] = base64.b64encode(plain).decode()
            changed = True
        if not changed:
            return obj
        return {**obj, "data": data}


def _format_from_marker(raw: bytes) -> sops.Format | None:
    for fmt in (sops.Format.YAML, sops.Format.DOTENV, sops.Format.JSON):
        if sops.has_marker(raw, fmt):
            return fmt
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _generator_inputs(kustomization: dict[str, Any]) -> list[tuple[str, sops.Format]]:
    """The files Flux decrypts before the build: generator ``files`` and ``envs`` and patch
    files, each with the format Flux reads it in."""
    found: list[tuple[str, sops.Format]] = []
    generators = kustomization.get("secretGenerator")
    for generator in generators if isinstance(generators, list) else []:
        if not isinstance(generator, dict):
            continue
        for source in _strings(generator.get("files")):
            key, sep, ref = source.partition("=")
            found.append((ref if sep else key, sops.format_for_path(key)))
        for env in _strings(generator.get("envs")) + _strings(generator.get("env")):
            fmt = sops.format_for_path(env)
            found.append((env, sops.Format.DOTENV if fmt is sops.Format.BINARY else fmt))
    patches = kustomization.get("patches")
    for patch in patches if isinstance(patches, list) else []:
        patch_path = patch.get("path") if isinstance(patch, dict) else None
        if isinstance(patch_path, str) and "://" not in patch_path:
            found.append((patch_path, sops.format_for_path(patch_path)))
    return [(ref, fmt) for ref, fmt in found if ref and not posixpath.isabs(ref)]
