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
2. **Workspace.** The included files are copied into a private directory (symbolic links
   that leave the checkout are dropped, as everywhere in render). ``spec.path`` must be a
   directory there, else ``ArtifactFailed`` ("kustomization path not found").
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

``build_local`` runs steps 2-4 on a local directory instead of the source (``gitsail diff
kustomization --path``).
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitsail.kinds.errors import SpecError, SubstitutionError
from gitsail.kinds.flux_gitrepository import GitRepository, parse_git_repository
from gitsail.kinds.flux_kustomization import Kustomization
from gitsail.kinds.flux_source_artifact import extract_source_artifact, read_source_artifact
from gitsail.kinds.flux_sourceignore import included_files
from gitsail.kinds.flux_substitute import substitute_objects, variables, variables_from
from gitsail.kinds.records import CommonMetadata, Include, ObjectRef, RenderSpec
from gitsail.kinds.status import Stalled, Transient
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
from gitsail.source import GitSource, RepoCredentials, SourceError
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.credentials import secret_values

__all__ = [
    "ARTIFACT_FAILED",
    "BUILD_FAILED",
    "SOURCE_API_VERSION",
    "Build",
    "build",
    "build_local",
    "commit_of",
    "git_credentials",
    "kustomize_options",
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
    """What one build produced: the source revision (as Flux writes it) and the objects."""

    revision: str  # status.artifact.revision of the source, e.g. "main@sha1:<sha>"
    objects: tuple[Obj, ...]


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


async def _substitute(
    kube: Kube, ks: Kustomization, objects: list[Obj], policy: Policy
) -> list[Obj]:
    spec = ks.render
    if not spec.substitution:
        return objects
    sources: list[tuple[str, Mapping[str, str]]] = []
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
    try:
        values = variables(spec.substitute, sources)
        return await asyncio.to_thread(
            substitute_objects, objects, values, max_bytes=policy.render_output_bytes
        )
    except SubstitutionError as exc:
        raise Stalled(BUILD_FAILED, f"post build substitutions failed: {exc}") from exc


async def _include(
    kube: Kube, git: GitSource, repo: GitRepository, include: Include, root: Path, work: Path
) -> None:
    """Copy another GitRepository's artifact (``spec.include``) into the workspace, as
    source-controller does: its ``fromPath`` (default: the root) to ``toPath`` (default:
    its name), with its own ignore rules, at the revision of its own artifact."""
    ref = ObjectRef("GitRepository", include.repository, repo.namespace)
    included, revision = await _read_git_repository(kube, ref)
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
) -> Build:
    """Fetch, render and substitute; raises ``Transient`` / ``Stalled`` with Flux's reasons."""
    if ks.source.kind != "GitRepository":
        return await _build_from_artifact(kube, ks, renderer, policy, artifacts)
    repo, revision = await read_source(kube, ks)
    assert repo is not None
    sha = commit_of(revision)
    if sha is None:
        raise Transient(
            ARTIFACT_FAILED, f"Source artifact revision {revision!r} names no commit, retrying"
        )
    creds = await git_credentials(kube, repo)
    try:
        checkout = await git.fetch(repo.source.url, sha, "", creds)
    except SourceError as exc:
        raise Transient(ARTIFACT_FAILED, f"failed to fetch {revision}: {exc}") from exc
    with tempfile.TemporaryDirectory(dir=renderer.work_dir, prefix="flux-") as tmp:
        root = Path(tmp) / "src"
        files = await asyncio.to_thread(included_files, checkout.root, repo.source.ignore)
        await asyncio.to_thread(copy_artifact, checkout.root, root, files)
        for include in repo.source.include:
            await _include(kube, git, repo, include, root, Path(tmp) / "include")
        path = ks.render.path
        where = f"{('./' + path) if path else './'} is not a directory in {repo.source.url} at "
        artifact = Artifact(
            url=checkout.url,
            revision=sha,
            requested=revision,
            root=root,
            path=path,
            digest="",  # the edited copy is private: never cached
        )
        rendered = await _kustomize(ks, artifact, renderer, where + revision)
    return await _post_build(kube, ks, rendered, revision, policy)


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
    with tempfile.TemporaryDirectory(dir=renderer.work_dir, prefix="flux-") as tmp:
        root = Path(tmp) / "src"
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
        rendered = await _kustomize(ks, artifact, renderer, where + source.revision)
    return await _post_build(kube, ks, rendered, source.revision, policy)


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
    with tempfile.TemporaryDirectory(dir=renderer.work_dir, prefix="flux-local-") as tmp:
        root = Path(tmp) / "src"
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
        rendered = await _kustomize(ks, artifact, renderer, f"{directory} is not a directory")
    return await _post_build(kube, ks, rendered, source.as_uri(), policy)


async def _kustomize(
    ks: Kustomization, artifact: Artifact, renderer: Renderer, missing: str
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
        rendered = await renderer.render(artifact, options)
    except RenderError as exc:
        raise Stalled(BUILD_FAILED, f"kustomize build failed: {exc}") from exc
    return list(rendered.manifests)


async def _post_build(
    kube: Kube, ks: Kustomization, objects: list[Obj], revision: str, policy: Policy
) -> Build:
    objects = await _substitute(kube, ks, objects, policy)
    objects = set_common_metadata(objects, ks.render.common_metadata)
    return Build(revision=revision, objects=tuple(objects))
