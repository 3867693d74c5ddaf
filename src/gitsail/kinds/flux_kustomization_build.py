"""Build a Flux Kustomization: its source's revision → the objects to apply.

The steps, as kustomize-controller takes them (``docs/spec/v1/kustomizations.md``):

1. **Source.** The ``sourceRef`` GitRepository (any namespace) must have an artifact
   (``status.artifact``); without one the build fails with ``ArtifactFailed`` and is
   retried. The files are not read from the artifact tarball: the commit in
   ``status.artifact.revision`` (``main@sha1:<sha>``, ``sha1:<sha>``, the older
   ``main/<sha>``, or a bare SHA) is fetched with the hardened ``GitSource`` from the
   GitRepository's ``url`` with its ``secretRef`` credentials (``username``/``password``,
   ``bearerToken``, SSH ``identity``), and the GitRepository's ignore rules
   (``flux_sourceignore``) are applied to the checkout, so the build sees what Flux's
   artifact would hold. ``spec.include`` repositories are copied in the same way, each at
   the revision of its own artifact.
2. **Workspace.** Only the files the build reads are copied into a private directory:
   the files under ``spec.path`` (when it has no kustomization file: the generated one
   lists them), and every file a kustomization there (its own, a component's, a nested
   one's) references, as ``gitsail.source.input_files`` finds them (a reference that
   leaves the repository is refused, ``BuildFailed``); each must also be in the artifact
   (the ignore rules, listed once per revision and ignore spec, shared by every
   Kustomization of the repository). A source with ``spec.include`` is composed whole
   (its files, then each included repository's). Symbolic links that leave the checkout
   are dropped, as everywhere in render. ``spec.path`` must be a directory there, else
   ``ArtifactFailed`` ("kustomization path not found").
3. **Kustomize.** A path without a kustomization file gets a generated one
   (``gitsail.render.generate_kustomization``); then ``targetNamespace``, ``namePrefix``,
   ``nameSuffix``, ``images``, ``patches`` and ``components`` are written into the
   kustomization of the copy, as Flux edits it, and ``kustomize build`` runs through the
   hardened renderer (no remote bases, no plugins, no exec). A failure is ``BuildFailed``.
4. **Post-build.** When ``postBuild`` defines a variable or a source, ``${var}`` expressions
   are substituted (``flux_substitute``; strict: an undefined variable without a default
   fails the build). A ``substituteFrom`` object that is missing fails the build unless it
   is ``optional``. Then ``commonMetadata`` labels and annotations are set on every object,
   overriding existing keys (Flux sets them after the build, so selectors are untouched).

Every failure is a ``ReconcileError`` (``Transient`` when the world may change on its own: a
source without an artifact, a server that does not answer, a missing ConfigMap; ``Stalled``
when only a change of the spec or of the source helps). Nothing here writes to the cluster.

**Reuse** (``BuildCache``): a build is a pure function of the source revision (and each
included repository's), the GitRepository's ``url``, ``ignore`` and ``include``, the
Kustomization's identity and its build fields (``RenderSpec``: path, kustomize edits,
``postBuild``, ``commonMetadata``) and the substitution values read from its
``substituteFrom`` objects. ``build`` reads those (the source, each include, each
ConfigMap/Secret: a few GETs) and, when their digest matches the last build of that
Kustomization, returns that build: no fetch, no copy, no kustomize. The values enter the
digest hashed, never logged or stored. The cache holds at most one build per Kustomization
and is bounded in entries and in bytes (the least recently used is dropped first).

``build_local`` runs steps 2-4 on a local directory instead of the source (``gitsail diff
kustomization --path``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
import hashlib
import json
import posixpath
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitsail.kinds.errors import SpecError, SubstitutionError
from gitsail.kinds.flux_decryption import Decryptor, load_decryptor, private_workspace
from gitsail.kinds.flux_decryption import refuse_encrypted as _refuse_encrypted
from gitsail.kinds.flux_gitrepository import GitRepository, parse_git_repository
from gitsail.kinds.flux_kustomization import Kustomization
from gitsail.kinds.flux_source_artifact import extract_source_artifact, read_source_artifact
from gitsail.kinds.flux_sourceignore import included_files
from gitsail.kinds.flux_substitute import substitute_objects, variables, variables_from
from gitsail.kinds.records import CommonMetadata, Include, ObjectRef, RenderSpec
from gitsail.kinds.status import ReconcileError, Stalled, Transient
from gitsail.kube import Kube, KubeError, NotFoundKind
from gitsail.model import Artifact, Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render import (
    KustomizeOptions,
    Renderer,
    RenderError,
    RenderOptions,
    copy_artifact,
    generate_kustomization,
)
from gitsail.source import (
    GitSource,
    InvalidSource,
    PathNotFound,
    RepoCredentials,
    SourceError,
    input_files,
    redact_url,
)
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.credentials import secret_values
from gitsail.source.inputs import KUSTOMIZATION_FILES

__all__ = [
    "ARTIFACT_FAILED",
    "BUILD_FAILED",
    "SOURCE_API_VERSION",
    "Build",
    "BuildCache",
    "build",
    "build_local",
    "commit_of",
    "git_credentials",
    "kustomize_options",
    "objects_digest",
    "read_source",
    "set_common_metadata",
]

SOURCE_API_VERSION = "source.toolkit.fluxcd.io/v1"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"

_SHA = r"[0-9a-f]{40}|[0-9a-f]{64}"
# Flux v1 revisions: "<ref>@sha1:<sha>" or "sha1:<sha>"; v1beta2: "<branch>/<sha>".
_REVISION = re.compile(rf"(?:.*@)?(?:sha1|sha256):(?P<a>{_SHA})|(?:.*/)?(?P<b>{_SHA})")


@dataclass(frozen=True)
class Build:
    """What one build produced: the source revision (as Flux writes it) and the objects.

    ``digest`` is ``objects_digest(objects)``; ``reused`` says it came from the
    ``BuildCache`` (its objects are shared: callers never modify them)."""

    revision: str  # status.artifact.revision of the source, e.g. "main@sha1:<sha>"
    objects: tuple[Obj, ...]
    digest: str = ""
    reused: bool = False


def objects_digest(objects: Sequence[Obj]) -> str:
    """``sha256:<hex>`` of the objects' canonical JSON (Flux's history digest)."""
    text = json.dumps(list(objects), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _Listing:
    """The files of one checkout that the artifact holds (ignore rules applied), as sorted
    relative POSIX paths, with lookups by prefix."""

    def __init__(self, root: Path, files: Sequence[Path]) -> None:
        self.paths = sorted(f.relative_to(root).as_posix() for f in files)
        self.members = frozenset(self.paths)

    def under(self, directory: str) -> list[str]:
        """The files at any depth below ``directory`` ("" for the root)."""
        if not directory:
            return list(self.paths)
        prefix = directory + "/"
        start = bisect.bisect_left(self.paths, prefix)
        end = bisect.bisect_left(self.paths, prefix + "\U0010ffff")
        return self.paths[start:end]


class BuildCache:
    """The last build of each Kustomization, keyed by the digest of its inputs (see the
    module docstring), and the artifact listing of recent checkouts.

    Bounded: at most ``max_entries`` builds and ``max_bytes`` of their objects (as JSON),
    least recently used dropped first; a build larger than ``max_bytes`` is not kept.
    ``max_listings`` checkout listings (one per revision and ignore spec)."""

    def __init__(
        self, *, max_entries: int = 4096, max_bytes: int = 256 << 20, max_listings: int = 8
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_listings = max_listings
        self._builds: OrderedDict[tuple[str, str], tuple[str, Build, int]] = OrderedDict()
        self._bytes = 0
        self._listings: OrderedDict[tuple[str, str | None], _Listing] = OrderedDict()
        self._listing_locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._builds)

    def get(self, owner: tuple[str, str], key: str) -> Build | None:
        entry = self._builds.get(owner)
        if entry is None or entry[0] != key:
            self.misses += 1
            return None
        self._builds.move_to_end(owner)
        self.hits += 1
        return entry[1]

    def put(self, owner: tuple[str, str], key: str, built: Build, size: int) -> None:
        self.forget(owner)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        self._builds[owner] = (key, built, size)
        self._bytes += size
        while len(self._builds) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._builds.popitem(last=False)
            self._bytes -= dropped

    def forget(self, owner: tuple[str, str]) -> None:
        entry = self._builds.pop(owner, None)
        if entry is not None:
            self._bytes -= entry[2]

    async def listing(self, root: Path, ignore: str | None) -> _Listing:
        """The artifact's files in the checkout ``root`` (immutable: one per commit),
        listed once for all the Kustomizations that read it."""
        key = (str(root), ignore)
        found = self._listings.get(key)
        if found is not None:
            self._listings.move_to_end(key)
            return found
        lock = self._listing_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                found = self._listings.get(key)
                if found is None:
                    found = await asyncio.to_thread(_list_artifact, root, ignore)
                    self._listings[key] = found
                    while len(self._listings) > self.max_listings:
                        self._listings.popitem(last=False)
                return found
        finally:
            if not lock.locked():
                self._listing_locks.pop(key, None)


def _list_artifact(root: Path, ignore: str | None) -> _Listing:
    return _Listing(root, included_files(root, ignore))


def commit_of(revision: str) -> str | None:
    """The commit SHA in an artifact revision, or None if it names none."""
    match = _REVISION.fullmatch(revision.strip())
    if match is None:
        return None
    return match.group("a") or match.group("b")


async def read_source(kube: Kube, ks: Kustomization) -> tuple[GitRepository | None, str]:
    """The Kustomization's GitRepository (parsed; None for other kinds) and its artifact
    revision."""
    ref = ks.source
    if ref.kind != "GitRepository":  # read from its artifact (flux_source_artifact)
        source = ObjectRef(ref.kind, ref.name, ref.namespace or ks.namespace)
        return None, (await read_source_artifact(kube, source)).revision
    return await _read_git_repository(
        kube, ObjectRef(ref.kind, ref.name, ref.namespace or ks.namespace)
    )


async def _read_git_repository(kube: Kube, ref: ObjectRef) -> tuple[GitRepository, str]:
    namespace = ref.namespace or ""
    shown = f"{ref.kind}/{namespace}/{ref.name}"
    try:
        obj = await kube.get(SOURCE_API_VERSION, ref.kind, ref.name, namespace)
    except NotFoundKind:
        obj = None
    except KubeError as exc:
        raise Transient(ARTIFACT_FAILED, f"unable to get source '{shown}': {exc}") from exc
    if obj is None:
        raise Transient(ARTIFACT_FAILED, f"Source '{shown}' not found")
    try:
        repo = parse_git_repository(obj)
    except SpecError as exc:
        raise Transient(ARTIFACT_FAILED, f"Source '{shown}' is invalid: {exc}") from exc
    artifact = (obj.get("status") or {}).get("artifact")
    revision = str(artifact.get("revision") or "") if isinstance(artifact, Mapping) else ""
    if not revision:
        raise Transient(ARTIFACT_FAILED, "Source artifact not found, retrying")
    return repo, revision


async def git_credentials(kube: Kube, repo: GitRepository) -> RepoCredentials | None:
    """The credentials in the GitRepository's ``secretRef``, as source-controller reads
    them (``username``/``password``, ``bearerToken``, SSH ``identity``)."""
    name = repo.source.secret_ref
    if not name:
        return None
    shown = f"Secret/{repo.namespace}/{name}"
    try:
        secret = await kube.get("v1", "Secret", name, repo.namespace)
    except KubeError as exc:
        raise Transient(ARTIFACT_FAILED, f"unable to read {shown}: {exc}") from exc
    if secret is None:
        raise Transient(
            ARTIFACT_FAILED, f"{shown} (secretRef of GitRepository {repo.name}) not found"
        )
    try:
        values = secret_values(secret)
    except SourceError as exc:
        raise Transient(ARTIFACT_FAILED, str(exc)) from exc
    return RepoCredentials(
        url=repo.source.url,
        username=values.get("username", ""),
        password=values.get("password", ""),
        ssh_private_key=values.get("identity", ""),
        bearer_token=values.get("bearerToken", ""),
    )


def _image(name: str, new_name: str | None, tag: str | None, digest: str | None) -> str | None:
    """A Flux ``images`` entry in the ``kustomize edit set image`` form render reads."""
    if not (new_name or tag or digest):
        return None
    spec = f"{name}={new_name or name}"
    if tag:
        spec += f":{tag}"
    if digest:
        spec += f"@{digest}"
    return spec


def kustomize_options(spec: RenderSpec) -> KustomizeOptions:
    """Flux's kustomization edits as render's kustomize options."""
    images = tuple(
        s
        for s in (_image(i.name, i.new_name, i.new_tag, i.digest) for i in spec.images)
        if s is not None
    )
    patches: list[Obj] = []
    for patch in spec.patches:
        entry: Obj = {"patch": patch.patch}
        if patch.target is not None:
            t = patch.target
            target = {
                "group": t.group,
                "version": t.version,
                "kind": t.kind,
                "name": t.name,
                "namespace": t.namespace,
                "labelSelector": t.label_selector,
                "annotationSelector": t.annotation_selector,
            }
            entry["target"] = {k: v for k, v in target.items() if v is not None}
        patches.append(entry)
    return KustomizeOptions(
        name_prefix=spec.name_prefix or "",
        name_suffix=spec.name_suffix or "",
        images=images,
        namespace=spec.target_namespace or "",
        patches=tuple(patches),
        components=spec.components,
        ignore_missing_components=spec.ignore_missing_components,
    )


def set_common_metadata(objects: list[Obj], metadata: CommonMetadata | None) -> list[Obj]:
    """Objects with ``commonMetadata`` labels and annotations set (existing keys replaced)."""
    if metadata is None or not (metadata.labels or metadata.annotations):
        return objects
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        for field, pairs in (("labels", metadata.labels), ("annotations", metadata.annotations)):
            if pairs:
                meta[field] = {**(meta.get(field) or {}), **dict(pairs)}
        out.append(obj)
    return out


_Sources = list[tuple[str, Mapping[str, str]]]


async def _substitution_sources(kube: Kube, ks: Kustomization) -> _Sources | None:
    """The ``substituteFrom`` objects' variables, in order (None: no substitution)."""
    spec = ks.render
    if not spec.substitution:
        return None
    sources: _Sources = []
    for source in spec.substitute_from:
        shown = f"{source.kind}/{ks.namespace}/{source.name}"
        try:
            obj = await kube.get("v1", source.kind, source.name, ks.namespace)
        except KubeError as exc:
            raise Transient(BUILD_FAILED, f"substitute from '{shown}' error: {exc}") from exc
        if obj is None:
            if source.optional:
                sources.append((shown, {}))
                continue
            raise Transient(
                BUILD_FAILED,
                f"substitute from '{shown}' error: {shown} not found "
                "(create it, or set optional: true)",
            )
        try:
            sources.append((shown, variables_from(obj)))
        except SubstitutionError as exc:
            raise Stalled(BUILD_FAILED, f"substitute from '{shown}' error: {exc}") from exc
    return sources


async def _substitute(
    ks: Kustomization, objects: list[Obj], sources: _Sources | None, policy: Policy
) -> list[Obj]:
    if sources is None:
        return objects
    try:
        values = variables(ks.render.substitute, sources)
        return await asyncio.to_thread(
            substitute_objects, objects, values, max_bytes=policy.render_output_bytes
        )
    except SubstitutionError as exc:
        raise Stalled(BUILD_FAILED, f"post build substitutions failed: {exc}") from exc


def _inputs_key(
    ks: Kustomization,
    repo: GitRepository,
    revision: str,
    includes: Sequence[tuple[Include, GitRepository, str]],
    sources: _Sources | None,
    decryptor: Decryptor | None = None,
) -> str:
    """The digest of everything a build reads (see "Reuse" in the module docstring).
    Substitution values are hashed here and kept nowhere (decryption keys: their digest)."""
    material = {
        "v": 1,
        "kustomization": [ks.namespace, ks.name],
        "render": repr(ks.render),
        "source": [repo.source.url, repo.source.ignore, revision],
        "include": [[repr(i), r.source.url, r.source.ignore, rev] for i, r, rev in includes],
        "substitute": None
        if sources is None
        else [[shown, sorted(values.items())] for shown, values in sources],
    }
    if decryptor is not None:
        material["decryption"] = decryptor.digest
    text = json.dumps(material, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


async def _includes(kube: Kube, repo: GitRepository) -> list[tuple[Include, GitRepository, str]]:
    """Each ``spec.include`` with its GitRepository and that one's artifact revision."""
    found = []
    for include in repo.source.include:
        ref = ObjectRef("GitRepository", include.repository, repo.namespace)
        included, revision = await _read_git_repository(kube, ref)
        found.append((include, included, revision))
    return found


async def _include(
    kube: Kube,
    git: GitSource,
    include: Include,
    included: GitRepository,
    revision: str,
    root: Path,
    work: Path,
) -> None:
    """Copy another GitRepository's artifact (``spec.include``) into the workspace, as
    source-controller does: its ``fromPath`` (default: the root) to ``toPath`` (default:
    its name), with its own ignore rules, at the revision of its own artifact."""
    sha = commit_of(revision)
    if sha is None:
        raise Transient(ARTIFACT_FAILED, f"included source revision {revision!r} names no commit")
    creds = await git_credentials(kube, included)
    try:
        checkout = await git.fetch(included.source.url, sha, include.from_path, creds)
    except SourceError as exc:
        raise Transient(
            ARTIFACT_FAILED, f"failed to fetch included {include.repository} {revision}: {exc}"
        ) from exc
    source = checkout.directory
    files = await asyncio.to_thread(included_files, source, included.source.ignore)
    staging = work / include.repository
    shutil.rmtree(staging, ignore_errors=True)
    await asyncio.to_thread(copy_artifact, source, staging, files)
    target = root / include.to_path
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise Stalled(
            ARTIFACT_FAILED, f"include {include.repository}: toPath {include.to_path!r} is a file"
        )
    await asyncio.to_thread(shutil.copytree, staging, target, symlinks=True, dirs_exist_ok=True)


async def build(
    kube: Kube,
    ks: Kustomization,
    *,
    git: GitSource,
    renderer: Renderer,
    policy: Policy = DEFAULT_POLICY,
    artifacts: ArtifactStore | None = None,
    cache: BuildCache | None = None,
    source: tuple[GitRepository | None, str] | None = None,
) -> Build:
    """Fetch, render and substitute; raises ``Transient`` / ``Stalled`` with Flux's reasons.
    With ``cache``, a build whose inputs did not change since the last one is reused.
    ``source`` is ``read_source``'s answer when the caller read it this pass already.
    Sources other than a GitRepository are read from their artifact (not cached)."""
    if ks.source.kind != "GitRepository":
        return await _build_from_artifact(kube, ks, renderer, policy, artifacts)
    repo, revision = source if source is not None else await read_source(kube, ks)
    assert repo is not None
    sha = commit_of(revision)
    if sha is None:
        raise Transient(
            ARTIFACT_FAILED, f"Source artifact revision {revision!r} names no commit, retrying"
        )
    includes = await _includes(kube, repo)
    sources = await _substitution_sources(kube, ks)
    decryptor = await load_decryptor(kube, ks)
    owner = (ks.namespace, ks.name)
    key = _inputs_key(ks, repo, revision, includes, sources, decryptor)
    if cache is not None:
        reused = cache.get(owner, key)
        if reused is not None:
            return reused
    creds = await git_credentials(kube, repo)
    path = ks.render.path
    shown = redact_url(repo.source.url)
    where = f"{('./' + path) if path else './'} is not a directory in {shown} at "
    try:
        # Only spec.path's inputs are hashed by the fetch, not the whole repository.
        checkout = await git.fetch(repo.source.url, sha, path, creds)
    except PathNotFound as exc:
        raise Stalled(ARTIFACT_FAILED, f"kustomization path not found: {where}{revision}") from exc
    except InvalidSource as exc:
        raise Stalled(BUILD_FAILED, f"kustomization build failed: {exc}") from exc
    except SourceError as exc:
        raise Transient(ARTIFACT_FAILED, f"failed to fetch {revision}: {exc}") from exc
    with _workspace(renderer, decryptor, "flux-") as tmp:
        root = tmp / "src"
        if includes:
            # Composed from several repositories: the artifact is copied whole.
            files = await asyncio.to_thread(included_files, checkout.root, repo.source.ignore)
            await asyncio.to_thread(copy_artifact, checkout.root, root, files)
            for include, included, included_revision in includes:
                await _include(
                    kube, git, include, included, included_revision, root, tmp / "include"
                )
        else:
            listing = (
                await cache.listing(checkout.root, repo.source.ignore)
                if cache is not None
                else await asyncio.to_thread(_list_artifact, checkout.root, repo.source.ignore)
            )
            needed = await asyncio.to_thread(
                _build_inputs, checkout.root, listing, ks.render, policy
            )
            await asyncio.to_thread(copy_artifact, checkout.root, root, needed)
        artifact = Artifact(
            url=checkout.url,
            revision=sha,
            requested=revision,
            root=root,
            path=path,
            digest="",  # the edited copy is private: never cached by the renderer
        )
        rendered = await _kustomize(ks, artifact, renderer, where + revision, decryptor)
    built = await _post_build(ks, rendered, revision, sources, policy, decryptor)
    if cache is not None:
        size = len(json.dumps(list(built.objects), separators=(",", ":")))
        cache.put(owner, key, dataclasses.replace(built, reused=True), size)
    return built


def _build_inputs(root: Path, listing: _Listing, spec: RenderSpec, policy: Policy) -> list[Path]:
    """The files of the checkout ``root`` a build of ``spec.path`` reads (absolute), all of
    them in the artifact (``listing``): see "Workspace" in the module docstring.

    A kustomization that references a file outside the repository is ``BuildFailed``; one
    whose references cannot be bounded (a remote base, which the renderer refuses anyway)
    makes the whole artifact the answer."""
    base = spec.path.strip("/")
    under = listing.under(base)
    kustomized = sorted(
        {
            name.rpartition("/")[0]
            for name in under
            if name.rpartition("/")[2] in KUSTOMIZATION_FILES
        }
    )
    files: set[str]
    if base in kustomized:  # its own kustomization decides what is read
        files = set()
        targets = [base]
    else:  # generated: every file below it, and what nested kustomizations reference
        files = set(under)
        targets = kustomized
    targets += [posixpath.normpath(posixpath.join(base, c)) for c in spec.components]
    resolved = root.resolve()
    for target in targets:
        try:
            found = input_files(resolved, target or ".", tool_hint="kustomize", policy=policy)
        except PathNotFound:
            continue  # a missing component: the kustomize edit reports or skips it
        except SourceError as exc:
            raise Stalled(BUILD_FAILED, f"kustomization build failed: {exc}") from exc
        if found is None:
            return [root / name for name in listing.paths]
        files.update(f.relative_to(resolved).as_posix() for f in found)
    return [root / name for name in sorted(_with_link_targets(root, listing, files))]


def _with_link_targets(root: Path, listing: _Listing, files: set[str]) -> set[str]:
    """``files`` that are in the artifact, and, for each symbolic link among them that
    stays inside the checkout, what it points to (a file, or a directory's files; links
    leaving the checkout are dropped by the copy)."""
    chosen = {name for name in files if name in listing.members}
    resolved = root.resolve()
    pending = sorted(chosen)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        link = root / name
        if not link.is_symlink():
            continue
        target = link.resolve()
        if target != resolved and resolved not in target.parents:
            continue
        rel = target.relative_to(resolved).as_posix()
        found = [rel] if rel in listing.members else listing.under(rel)
        for item in found:
            if item not in chosen:
                chosen.add(item)
                pending.append(item)
    return chosen


async def _build_from_artifact(
    kube: Kube,
    ks: Kustomization,
    renderer: Renderer,
    policy: Policy,
    artifacts: ArtifactStore | None,
) -> Build:
    """Steps 2-4 on the unpacked artifact of a non-Git source (``flux_source_artifact``)."""
    ref = ks.source
    source = await read_source_artifact(
        kube, ObjectRef(ref.kind, ref.name, ref.namespace or ks.namespace)
    )
    decryptor = await load_decryptor(kube, ks)
    with _workspace(renderer, decryptor, "flux-") as tmp:
        root = tmp / "src"
        await extract_source_artifact(source, root, store=artifacts, policy=policy)
        artifact = Artifact(
            url=source.url,
            revision=source.revision,
            requested=source.revision,
            root=root,
            path=ks.render.path,
            digest="",
        )
        where = f"./{ks.render.path} is not a directory in {ref.kind} {ref.name} at "
        rendered = await _kustomize(ks, artifact, renderer, where + source.revision, decryptor)
    sources = await _substitution_sources(kube, ks)
    return await _post_build(ks, rendered, source.revision, sources, policy, decryptor)


async def build_local(
    kube: Kube,
    ks: Kustomization,
    directory: Path,
    *,
    renderer: Renderer,
    policy: Policy = DEFAULT_POLICY,
) -> Build:
    """Build ``directory`` (a local copy of what ``spec.path`` names) as ``build`` builds the
    source: the same generated kustomization, kustomize edits, substitutions and
    ``commonMetadata``; the default ignore rules apply. Bases outside ``directory`` are not
    reachable (as with ``flux build --path``, it is the kustomization's root). The
    revision is the directory's ``file://`` URL. Nothing is fetched; ``directory`` is
    only read (the edits are made on a private copy)."""
    source = await asyncio.to_thread(directory.resolve)
    if not source.is_dir():
        raise Stalled(
            ARTIFACT_FAILED, f"kustomization path not found: {directory} is not a directory"
        )
    decryptor = await load_decryptor(kube, ks)
    with _workspace(renderer, decryptor, "flux-local-") as tmp:
        root = tmp / "src"
        files = await asyncio.to_thread(included_files, source, None)
        await asyncio.to_thread(copy_artifact, source, root, files)
        artifact = Artifact(
            url=source.as_uri(),
            revision="local",
            requested=source.as_uri(),
            root=root,
            path="",
            digest="",
        )
        rendered = await _kustomize(
            ks, artifact, renderer, f"{directory} is not a directory", decryptor
        )
    sources = await _substitution_sources(kube, ks)
    return await _post_build(ks, rendered, source.as_uri(), sources, policy, decryptor)


@contextlib.contextmanager
def _workspace(renderer: Renderer, decryptor: Decryptor | None, prefix: str) -> Iterator[Path]:
    """The build's private copy; memory-backed when SOPS inputs may be decrypted into it."""
    if decryptor is None:
        with tempfile.TemporaryDirectory(dir=renderer.work_dir, prefix=prefix) as tmp:
            yield Path(tmp)
    else:
        with private_workspace(renderer.work_dir, prefix) as tmp:
            yield tmp


async def _kustomize(
    ks: Kustomization,
    artifact: Artifact,
    renderer: Renderer,
    missing: str,
    decryptor: Decryptor | None = None,
) -> list[Obj]:
    """Kustomize with Flux's edits; SOPS generator inputs decrypted first (scrubbed from
    kustomize's errors)."""
    if decryptor is None:
        return await _kustomize_plain(ks, artifact, renderer, missing)
    directory = artifact.root / artifact.path if artifact.path else artifact.root
    if directory.is_dir() and not directory.is_symlink():
        await asyncio.to_thread(decryptor.prepare, artifact.root, artifact.path)
    try:
        # The render's own copy goes into the private workspace too (artifact.root's parent).
        return await _kustomize_plain(ks, artifact, renderer, missing, artifact.root.parent)
    except ReconcileError as exc:
        raise Stalled(exc.reason, decryptor.scrub(exc.message)) from None


async def _kustomize_plain(
    ks: Kustomization,
    artifact: Artifact,
    renderer: Renderer,
    missing: str,
    scratch: Path | None = None,
) -> list[Obj]:
    """Kustomize ``artifact.path`` of the workspace ``artifact.root`` with Flux's edits."""
    path = artifact.path
    directory = artifact.root / path if path else artifact.root
    if not directory.is_dir() or directory.is_symlink():
        raise Stalled(ARTIFACT_FAILED, f"kustomization path not found: {missing}")
    try:
        await asyncio.to_thread(generate_kustomization, directory)
    except RenderError as exc:
        raise Stalled(BUILD_FAILED, f"kustomization build failed: {exc}") from exc
    options = RenderOptions(
        app_name=ks.name,
        namespace=ks.render.target_namespace or "",
        kustomize=kustomize_options(ks.render),
    )
    try:
        rendered = await renderer.render(artifact, options, scratch=scratch)
    except RenderError as exc:
        raise Stalled(BUILD_FAILED, f"kustomize build failed: {exc}") from exc
    return list(rendered.manifests)


async def _post_build(
    ks: Kustomization,
    objects: list[Obj],
    revision: str,
    sources: _Sources | None,
    policy: Policy,
    decryptor: Decryptor | None = None,
) -> Build:
    if decryptor is not None:  # before substitution, as kustomize-controller orders it
        objects = await asyncio.to_thread(decryptor.decrypt_objects, objects)
    else:
        _refuse_encrypted(objects)
    objects = await _substitute(ks, objects, sources, policy)
    objects = set_common_metadata(objects, ks.render.common_metadata)
    return Build(revision=revision, objects=tuple(objects), digest=objects_digest(objects))
