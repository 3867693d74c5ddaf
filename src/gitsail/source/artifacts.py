"""Artifacts as Flux serves them: a deterministic ``.tar.gz`` of a source, on disk and over HTTP.

Layout under the store's root (one ``ArtifactStore`` per controller process owns it)::

    <kind>/<namespace>/<name>/<sha256 hex>.tar.gz     e.g. gitrepository/flux-system/myapp/…

The file is named by the digest of its own bytes, so an unchanged source archived again
lands on the same file (nothing is rewritten) and a consumer that knows the digest knows the
content. ``archive`` builds the archive aside (``.<random>.partial``), hashing while it
writes, then renames it into place; a crash never leaves a file that looks complete.

Deterministic archives: entries sorted by path; directories are not stored (Git has no
empty directories); mtime 0, uid/gid 0, empty owner names, mode 0644 (0755 when any execute
bit is set), symlinks kept as links (the checkout already refused links that leave it);
gzip header without a file name and with mtime 0. The same files always give the same
bytes, hence the same ``sha256:<hex>`` digest.

Excluded files (``IgnoreRules``), as Flux's source-controller documents them:

1. Flux's default exclusions (Git files, images and archives, CI configuration, CLI
   configuration, Flux v1 configuration) — unless ``spec.ignore`` is set, which replaces
   them. ``.git/`` is always excluded;
2. every ``.sourceignore`` file of the source, anchored at its own directory, which may
   overrule the defaults (``!pattern``);
3. ``spec.ignore``, last, which may overrule both.

All are ``.gitignore`` patterns and the last matching pattern decides (``pathspec``'s
gitignore semantics); as in git and Flux's archiver, a file inside an excluded directory
cannot be brought back by a pattern about the file.

A consumer in the same process unpacks an archive with ``extract`` (tarfile's "data"
filter, the same bounds); one elsewhere downloads ``StoredArtifact.url``.

Bounds (``Policy``): ``artifact_bytes`` (sum of the archived files' sizes) and
``artifact_files``; a source over a bound is refused with ``InvalidSource`` naming the
bound. ``artifacts_kept`` archives are kept per object (the newest by modification time;
the one in use is never removed).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pathspec

from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.errors import InvalidSource

__all__ = [
    "DEFAULT_EXCLUSIONS",
    "ArtifactStore",
    "IgnoreRules",
    "Include",
    "StoredArtifact",
    "service_base_url",
]

IGNORE_FILE = ".sourceignore"
# Flux's documented default exclusions (source-controller, "Default exclusions").
DEFAULT_EXCLUSIONS: tuple[str, ...] = (
    # Git files
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    # file extensions
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    # CI configuration
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    # CLI configuration
    ".goreleaser.yml",
    ".sops.yaml",
    # Flux v1 configuration
    ".flux.yaml",
)
_VCS = (".git/",)
_IGNORE_FILE_BYTES = 1024 * 1024
# Names a path segment of the store may have: Kubernetes names (DNS subdomains) and the
# lower-case kind; archive files are "<64 hex>.tar.gz".
_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_FILE = re.compile(r"^[0-9a-f]{64}\.(?:tar\.gz|tgz|yaml)$")


def service_base_url(namespace: str, service: str = "gitsail-controller") -> str:
    """The in-cluster address of the controller's Service, where artifacts are served
    (Flux advertises ``http://source-controller.<ns>.svc.cluster.local.`` the same way)."""
    return f"http://{service}.{namespace}.svc.cluster.local."


class IgnoreRules:
    """Which paths of a source are left out of its artifact (see the module docstring)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.lines)
        self._dirs: dict[str, bool] = {}

    @classmethod
    def load(cls, root: Path, spec_ignore: str | None) -> IgnoreRules:
        """The rules for the tree at ``root``: defaults, its ``.sourceignore`` files, then
        ``spec_ignore`` (which, when set, replaces the defaults)."""
        lines: list[str] = list(_VCS)
        if spec_ignore is None:
            lines.extend(DEFAULT_EXCLUSIONS)
        for current, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            if IGNORE_FILE not in files:
                continue
            base = Path(current).relative_to(root).as_posix()
            base = "" if base == "." else base
            path = Path(current) / IGNORE_FILE
            if path.is_symlink() or path.stat().st_size > _IGNORE_FILE_BYTES:
                raise InvalidSource(
                    f"{(Path(base) / IGNORE_FILE).as_posix()} is a symlink or larger than "
                    f"{_IGNORE_FILE_BYTES} bytes; gitsail refuses to read it"
                )
            text = path.read_text(errors="replace")
            lines.extend(_rebase(line, base) for line in text.splitlines())
        if spec_ignore is not None:
            lines.extend(spec_ignore.splitlines())
        return cls(lines)

    def ignored(self, rel: str) -> bool:
        """Whether the file at ``rel`` (a POSIX path relative to the root) is left out.

        As in git, a file in an excluded directory stays out whatever a later pattern
        says about the file itself."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self._dir_ignored("/".join(parts[:depth])):
                return True
        return bool(self._spec.match_file(rel))

    def _dir_ignored(self, directory: str) -> bool:
        known = self._dirs.get(directory)
        if known is None:
            known = self._dirs[directory] = bool(self._spec.match_file(directory + "/"))
        return known


def _rebase(line: str, base: str) -> str:
    """A ``.sourceignore`` pattern of directory ``base`` as a pattern of the root."""
    text = line.rstrip("\r")
    if not base or not text.strip() or text.startswith("#"):
        return text
    negate = text.startswith("!")
    body = text[1:] if negate else text
    # A pattern with an inner slash is anchored at the file's directory; one without
    # matches at any depth below it.
    anchored = "/" in body.rstrip("/")
    rebased = f"{base}/{body.lstrip('/')}" if anchored else f"{base}/**/{body}"
    return ("!" if negate else "") + rebased


@dataclass(frozen=True)
class Include:
    """Another artifact's files copied into this one: ``from_path`` of ``archive`` (a
    ``.tar.gz`` of this store) lands at ``to_path``."""

    archive: Path
    from_path: str
    to_path: str


@dataclass(frozen=True)
class StoredArtifact:
    """An archive in the store, described as Flux's ``status.artifact`` describes it."""

    path: str  # relative to the store's root: gitrepository/<ns>/<name>/<hex>.tar.gz
    url: str  # where the controller serves it
    revision: str  # e.g. main@sha1:<sha>
    digest: str  # sha256:<hex> of the file's bytes
    size: int

    def to_status(self, last_update_time: str) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "lastUpdateTime": last_update_time,
            "path": self.path,
            "revision": self.revision,
            "size": self.size,
            "url": self.url,
        }


@dataclass(frozen=True)
class _Entry:
    name: str  # path inside the archive
    mode: int  # 0o644 / 0o755, or 0 for a symlink
    data: bytes | None = None  # for entries copied from another archive
    source: Path | None = None  # for files of the source tree
    link: str = ""  # symlink target


class ArtifactStore:
    """Archives of sources under ``root``, served at ``base_url`` + their path."""

    def __init__(self, root: Path, *, base_url: str, policy: Policy = DEFAULT_POLICY) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self.policy = policy

    # -- paths ---------------------------------------------------------------------------

    def object_dir(self, kind: str, namespace: str, name: str) -> Path:
        for segment in (kind, namespace, name):
            if not _SEGMENT.match(segment) or ".." in segment:
                raise InvalidSource(f"{segment!r} cannot name a directory of the artifact store")
        return self.root / kind / namespace / name

    def file(self, kind: str, namespace: str, name: str, filename: str) -> Path | None:
        """The archive ``filename`` of an object, or None (also for any malformed segment)."""
        if not _FILE.match(filename):
            return None
        try:
            path = self.object_dir(kind, namespace, name) / filename
        except InvalidSource:
            return None
        return path if path.is_file() and not path.is_symlink() else None

    def local_path(self, path: str) -> Path | None:
        """The file of ``path`` (as in ``StoredArtifact.path``), or None when it is not in
        the store; for consumers in this process (a HelmRelease reads its chart's ``.tgz``)."""
        parts = path.split("/")
        return self.file(*parts) if len(parts) == 4 else None

    def exists(self, path: str) -> bool:
        """Whether ``path`` (as in ``StoredArtifact.path``) is in the store."""
        parts = path.split("/")
        return len(parts) == 4 and self.file(*parts) is not None

    def extract(self, path: str, target: Path) -> Path:
        """Unpack the archive at ``path`` (as in ``StoredArtifact.path``) into the new
        directory ``target``, for a consumer in this process (a Kustomization renders from
        it). Blocking; refuses links or paths that leave ``target`` (tarfile's "data"
        filter) and archives over ``artifact_bytes``."""
        parts = path.split("/")
        archive = self.file(*parts) if len(parts) == 4 else None
        if archive is None:
            raise InvalidSource(f"artifact {path!r} is not in the store")
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            total = sum(m.size for m in members)
            if total > self.policy.artifact_bytes or len(members) > self.policy.artifact_files:
                raise InvalidSource(
                    f"artifact {path!r} unpacks to {total} bytes in {len(members)} entries, "
                    "over GITSAIL_ARTIFACT_BYTES / GITSAIL_ARTIFACT_FILES"
                )
            target.mkdir(parents=True)
            tar.extractall(target, members=members, filter="data")
        return target

    # -- writing -------------------------------------------------------------------------

    def archive(
        self,
        kind: str,
        namespace: str,
        name: str,
        tree: Path,
        *,
        revision: str,
        ignore: IgnoreRules,
        includes: Sequence[Include] = (),
    ) -> StoredArtifact:
        """Archive ``tree`` minus ``ignore``d files (then ``includes`` on top) for an object.

        Blocking (file I/O): call it in a thread. Keeps the newest ``artifacts_kept``
        archives of the object, this one included.
        """
        directory = self.object_dir(kind, namespace, name)
        entries = {e.name: e for e in _tree_entries(tree, ignore)}
        for include in includes:
            for entry in _included_entries(include):
                entries[entry.name] = entry
        ordered = [entries[k] for k in sorted(entries)]
        self._check_bounds(ordered, f"{kind} {namespace}/{name}")
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        partial = directory / f".{uuid.uuid4().hex}.partial"
        try:
            with partial.open("wb") as raw:
                hashing = _HashingWriter(raw)
                _write_archive(hashing, ordered)
            hexdigest = hashing.sha256.hexdigest()
            target = directory / f"{hexdigest}.tar.gz"
            if target.is_file():
                partial.unlink()
                os.utime(target)  # the newest again, for retention
            else:
                partial.chmod(0o644)
                partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        rel = f"{kind}/{namespace}/{name}/{target.name}"
        self._collect(directory, keep=target)
        return StoredArtifact(
            path=rel,
            url=f"{self.base_url}/{rel}",
            revision=revision,
            digest=f"sha256:{hexdigest}",
            size=target.stat().st_size,
        )

    def put_file(
        self, kind: str, namespace: str, name: str, data: bytes, *, revision: str, suffix: str
    ) -> StoredArtifact:
        """Store ``data`` as-is (a chart's ``.tgz``, a repository's ``index.yaml``) under
        ``<sha256 hex><suffix>`` (``suffix`` is ``.tgz``, ``.tar.gz`` or ``.yaml``).

        Blocking (file I/O): call it in a thread. Bounded by ``artifact_bytes``; keeps the
        newest ``artifacts_kept`` files of the object, as ``archive`` does.
        """
        hexdigest = hashlib.sha256(data).hexdigest()
        filename = f"{hexdigest}{suffix}"
        if not _FILE.match(filename):
            raise InvalidSource(f"{suffix!r} is not an artifact file suffix")
        if len(data) > self.policy.artifact_bytes:
            raise InvalidSource(
                f"{kind} {namespace}/{name}: artifact of {len(data)} bytes is over "
                f"{self.policy.artifact_bytes} (GITSAIL_ARTIFACT_BYTES)"
            )
        directory = self.object_dir(kind, namespace, name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        target = directory / filename
        if target.is_file():
            os.utime(target)  # the newest again, for retention
        else:
            partial = directory / f".{uuid.uuid4().hex}.partial"
            try:
                partial.write_bytes(data)
                partial.chmod(0o644)
                partial.rename(target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        rel = f"{kind}/{namespace}/{name}/{filename}"
        self._collect(directory, keep=target)
        return StoredArtifact(
            path=rel,
            url=f"{self.base_url}/{rel}",
            revision=revision,
            digest=f"sha256:{hexdigest}",
            size=len(data),
        )

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Delete every archive of an object (its finalizer)."""
        directory = self.object_dir(kind, namespace, name)
        if not directory.is_dir():
            return
        for child in directory.iterdir():
            if child.is_file() or child.is_symlink():
                child.unlink(missing_ok=True)
        # A concurrent archive may have written into it; the next finalize removes it.
        with contextlib.suppress(OSError):
            directory.rmdir()

    def _collect(self, directory: Path, *, keep: Path) -> None:
        archives = [p for p in directory.iterdir() if _FILE.match(p.name) and p != keep]
        archives.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in archives[max(0, self.policy.artifacts_kept - 1) :]:
            old.unlink(missing_ok=True)
        stale = time.time() - 3600
        for leftover in directory.glob(".*.partial"):
            if leftover.stat().st_mtime < stale:  # a crashed writer's
                leftover.unlink(missing_ok=True)

    def _check_bounds(self, entries: Sequence[_Entry], what: str) -> None:
        if len(entries) > self.policy.artifact_files:
            raise InvalidSource(
                f"{what}: the artifact would hold {len(entries)} files, over the limit of "
                f"{self.policy.artifact_files} (GITSAIL_ARTIFACT_FILES); exclude files "
                "with spec.ignore or .sourceignore"
            )
        total = sum(_size(e) for e in entries)
        if total > self.policy.artifact_bytes:
            raise InvalidSource(
                f"{what}: the artifact would hold {total} bytes, over the limit of "
                f"{self.policy.artifact_bytes} (GITSAIL_ARTIFACT_BYTES); exclude files "
                "with spec.ignore or .sourceignore"
            )


def _size(entry: _Entry) -> int:
    if entry.data is not None:
        return len(entry.data)
    if entry.source is not None and not entry.link:
        return entry.source.lstat().st_size
    return 0


def _tree_entries(tree: Path, ignore: IgnoreRules) -> Iterable[_Entry]:
    for current, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for filename in files:
            path = Path(current) / filename
            rel = path.relative_to(tree).as_posix()
            if ignore.ignored(rel):
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                link = _link(tree, path)
                if link is not None:
                    yield _Entry(rel, 0, source=path, link=link)
            elif stat.S_ISREG(info.st_mode):
                yield _Entry(rel, _mode(info.st_mode), source=path)
        # a symlink to a directory shows up in ``dirs``: keep it as a link, do not follow
        for dirname in list(dirs):
            path = Path(current) / dirname
            if path.is_symlink():
                dirs.remove(dirname)
                rel = path.relative_to(tree).as_posix()
                link = _link(tree, path)
                if link is not None and not ignore.ignored(rel):
                    yield _Entry(rel, 0, source=path, link=link)


def _link(tree: Path, path: Path) -> str | None:
    """A symlink's target as stored: relative, so it never names the controller's disk;
    None for a link that leaves the tree (left out: a second line behind the checkout's
    own refusal)."""
    target = path.readlink()
    lexical = Path(os.path.normpath(path.parent.absolute() / target))
    roots = {Path(os.path.normpath(tree.absolute())), tree.resolve()}
    if not any(lexical == root or root in lexical.parents for root in roots):
        return None
    if target.is_absolute():
        return os.path.relpath(lexical, path.parent.absolute())
    return str(target)


def _included_entries(include: Include) -> Iterable[_Entry]:
    prefix = include.from_path.strip("/")
    target = include.to_path.strip("/")
    with tarfile.open(include.archive, "r:gz") as tar:
        for member in tar:
            name = member.name
            if prefix:
                if not name.startswith(prefix + "/"):
                    continue
                name = name[len(prefix) + 1 :]
            parts = name.split("/")
            if not name or ".." in parts or name.startswith("/"):
                continue
            rel = f"{target}/{name}" if target else name
            if member.issym():
                yield _Entry(rel, 0, link=member.linkname)
            elif member.isfile():
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                yield _Entry(rel, _mode(member.mode), data=handle.read())


def _mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what it passes on."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.raw.write(chunk)
        return len(chunk)


def _write_archive(out: _HashingWriter, entries: Sequence[_Entry]) -> None:
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.link:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.link
                info.mode = 0o777
                tar.addfile(info)
                continue
            info.mode = entry.mode
            if entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
                continue
            assert entry.source is not None
            with entry.source.open("rb") as handle:
                info.size = os.fstat(handle.fileno()).st_size
                tar.addfile(info, handle)
