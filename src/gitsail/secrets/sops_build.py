"""Decrypting the SOPS content of one build: the files of a workspace, then the built objects.

Shared by Flux Kustomizations (``gitsail.kinds.flux_decryption``, which documents the
rules) and Argo CD Applications that opt in (``gitsail.app``): ``Decryptor.prepare`` opens
every encrypted YAML/JSON file of a checkout in memory, recovering its data key and verifying
its MAC on the file as committed, and (for a private workspace only) decrypts
``secretGenerator`` inputs in place, ``0600``; ``decrypt_objects`` decrypts the built
objects in memory with the data keys of verified files; ``scrub`` removes decrypted values
from tool output. Failures are ``Transient`` (no key matches: fixing the key Secret helps) or
``Stalled`` (the file is wrong), reason ``DecryptionFailed``; messages carry no value.
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

from gitsail.errors import ReconcileError, Stalled, Transient
from gitsail.model import Obj
from gitsail.secrets import sops
from gitsail.secrets.age import AgeError, AgeIdentity, parse_identities

__all__ = [
    "AGE_KEY_SUFFIX",
    "DECRYPTION_FAILED",
    "DECRYPT_ANNOTATION",
    "Decryptor",
    "describe",
    "identities_from_secret",
    "private_workspace",
]

DECRYPTION_FAILED = "DecryptionFailed"
DECRYPT_ANNOTATION = "kustomize.toolkit.fluxcd.io/decrypt"
AGE_KEY_SUFFIX = ".agekey"
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MAX_FILES = 50_000
_MAX_KUSTOMIZATIONS = 1_000
_MIN_SCRUB = 3


def describe(obj: Obj) -> str:
    """``Kind/namespace/name`` of an object, for messages."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def identities_from_secret(secret: Obj, shown: str) -> tuple[list[AgeIdentity], str]:
    """The age identities of every ``*.agekey`` entry of a Secret (``data`` base64, or
    ``stringData``), and a digest of that key material (for cache keys; never the keys).
    A bad entry is ``Transient`` ``DecryptionFailed`` naming the entry, not its content."""
    entries: dict[str, str] = {}
    for section in ("data", "stringData"):
        values = secret.get(section)
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if not str(name).endswith(AGE_KEY_SUFFIX) or not isinstance(value, str):
                continue
            if section == "data":
                try:
                    value = base64.b64decode(value, validate=True).decode()
                except (binascii.Error, ValueError):
                    raise Transient(
                        DECRYPTION_FAILED, f"{shown}: entry {name!r} is not base64 text"
                    ) from None
            entries[str(name)] = value
    identities: list[AgeIdentity] = []
    digest = hashlib.sha256()
    for name in sorted(entries):
        digest.update(name.encode() + b"\0" + entries[name].encode() + b"\0")
        try:
            identities += parse_identities(entries[name], source=f"{shown} key {name!r}")
        except AgeError as exc:
            raise Transient(
                DECRYPTION_FAILED, f"failed to import {name!r} data from {shown}: {exc}"
            ) from exc
    return identities, "sha256:" + digest.hexdigest()


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

    def prepare(self, root: Path, path: str, *, generator_inputs: bool = True) -> None:
        """Decrypt the generator inputs in place (a private workspace only) and verify every
        encrypted manifest (under ``path`` only when ``generator_inputs`` is off)."""
        resolved = root.resolve()
        if generator_inputs:
            self._decrypt_generator_inputs(resolved, path)
        scan = resolved if generator_inputs or not path else (resolved / path).resolve()
        if scan != resolved and resolved not in scan.parents:
            return
        count = 0
        for file in sorted(scan.rglob("*")):
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
        for directory, ref, fmt in self._generator_input_refs(root, path):
            self._decrypt_in_place(root, directory, ref, fmt)

    def _generator_input_refs(
        self, root: Path, path: str
    ) -> Iterator[tuple[str, str, sops.Format]]:
        """(kustomization directory, reference, format) of every generator input and patch
        file of the kustomizations reached from ``path`` (``resources``/``components``)."""
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
                yield directory, ref, fmt
            for ref in _strings(kustomization.get("resources")) + _strings(
                kustomization.get("components")
            ):
                target = posixpath.normpath(posixpath.join(directory, ref))
                if target.startswith("../") or target == ".." or "://" in ref:
                    continue
                if (root / target).is_dir():
                    pending.append(target)

    def encrypted_generator_inputs(self, root: Path, path: str) -> list[str]:
        """The generator inputs (and patch files) under ``root`` reached from ``path`` that
        carry SOPS metadata, relative to ``root``: only read, nothing is decrypted. An input
        over the size limit is listed (``prepare`` refuses it)."""
        resolved = root.resolve()
        found: list[str] = []
        for directory, ref, fmt in self._generator_input_refs(resolved, path):
            rel = posixpath.normpath(posixpath.join(directory, ref))
            target = (resolved / rel).resolve()
            if resolved not in target.parents or not target.is_file():
                continue
            if (resolved / rel).is_symlink():
                continue
            if target.stat().st_size > sops.MAX_FILE_BYTES or sops.has_marker(
                target.read_bytes(), fmt
            ):
                found.append(rel)
        return sorted(set(found))

    @staticmethod
    def _kustomization(root: Path, directory: str) -> dict[str, Any] | None:
        for name in _KUSTOMIZATION_FILES:
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
        shown = describe(obj)
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
            where = f"{describe(obj)} data {key!r}"
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


_MIN_SHM_FREE = 256 << 20  # containers often get a 64 MiB /dev/shm: too small for a checkout


def _usable_memory_dir(path: Path) -> bool:
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    free = stats.f_bavail * stats.f_frsize
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK) and free >= _MIN_SHM_FREE


@contextlib.contextmanager
def private_workspace(fallback: Path, prefix: str) -> Iterator[Path]:
    """A fresh ``0700`` directory for a build that will hold decrypted generator inputs:
    under ``/dev/shm`` (memory) when the host has it with room to spare (256 MiB free), else
    under ``fallback``; removed on exit whatever happens."""
    shm = Path("/dev/shm")  # noqa: S108 - a fresh mkdtemp below, mode 0700
    base = shm if _usable_memory_dir(shm) else fallback
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
