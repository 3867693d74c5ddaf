"""A Kustomization's source read from its artifact, as kustomize-controller reads it.

GitRepository sources are built from the git mirror (``flux_kustomization_build``); every
other source kind a Kustomization may name (``OCIRepository``) is consumed through its
artifact: the source object's ``status.artifact`` gives the revision, the ``path`` in the
controller's ``ArtifactStore`` and the ``digest``. The archive is unpacked into the render's
private work directory with the store's bounds (``ArtifactStore.extract``).

Without a local store (a CLI elsewhere), the archive is downloaded from
``status.artifact.url`` as Flux does, within ``artifact_bytes`` and the URL policy, and its
sha256 is checked against ``status.artifact.digest`` before it is unpacked.

Errors are ``Transient`` with Flux's ``ArtifactFailed`` reason: a source without an artifact
yet, a store that lost it, a server that does not answer may all change on their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from gitsail.kinds.records import ObjectRef
from gitsail.kinds.status import Transient
from gitsail.kube import Kube, KubeError, NotFoundKind
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source._urls import http_guard
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.errors import SourceError

__all__ = ["SourceArtifact", "extract_source_artifact", "read_source_artifact"]

SOURCE_API_VERSION = "source.toolkit.fluxcd.io/v1"
ARTIFACT_FAILED = "ArtifactFailed"


@dataclass(frozen=True)
class SourceArtifact:
    """A source object's ``status.artifact``: what to unpack and the revision it is."""

    kind: str
    namespace: str
    name: str
    revision: str
    path: str
    url: str
    digest: str


async def read_source_artifact(kube: Kube, ref: ObjectRef) -> SourceArtifact:
    """The artifact in the status of the source ``ref``; Transient when there is none."""
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
    artifact = (obj.get("status") or {}).get("artifact")
    if not isinstance(artifact, Mapping) or not artifact.get("revision"):
        raise Transient(ARTIFACT_FAILED, "Source artifact not found, retrying")
    return SourceArtifact(
        kind=ref.kind,
        namespace=namespace,
        name=ref.name,
        revision=str(artifact.get("revision") or ""),
        path=str(artifact.get("path") or ""),
        url=str(artifact.get("url") or ""),
        digest=str(artifact.get("digest") or ""),
    )


async def extract_source_artifact(
    source: SourceArtifact,
    target: Path,
    *,
    store: ArtifactStore | None,
    policy: Policy = DEFAULT_POLICY,
) -> None:
    """Unpack ``source``'s archive into the new directory ``target``."""
    shown = f"{source.kind}/{source.namespace}/{source.name}"
    own = f"{source.kind.lower()}/{source.namespace}/{source.name}/"
    if not source.path.startswith(own) or source.path.count("/") != 3:
        # status is written by the controller; a path elsewhere is not this source's archive
        raise Transient(
            ARTIFACT_FAILED,
            f"the artifact path {source.path!r} of '{shown}' is not one of its archives",
        )
    try:
        if store is not None and store.local_path(source.path) is not None:
            await asyncio.to_thread(store.extract, source.path, target)
            return
        data = await _download(source, policy)
        with tempfile.TemporaryDirectory(prefix="gitsail-artifact-") as tmp:
            scratch = ArtifactStore(Path(tmp), base_url="http://unused.invalid", policy=policy)
            stored = await asyncio.to_thread(
                scratch.put_file,
                source.kind.lower(),
                source.namespace,
                source.name,
                data,
                revision=source.revision,
                suffix=".tar.gz",
            )
            await asyncio.to_thread(scratch.extract, stored.path, target)
    except SourceError as exc:
        raise Transient(
            ARTIFACT_FAILED, f"failed to extract the artifact of '{shown}': {exc.message}"
        ) from exc
    except OSError as exc:
        raise Transient(
            ARTIFACT_FAILED, f"failed to extract the artifact of '{shown}': {exc}"
        ) from exc


async def _download(source: SourceArtifact, policy: Policy) -> bytes:
    """The archive from ``status.artifact.url``, bounded and checked against its digest."""
    shown = f"{source.kind}/{source.namespace}/{source.name}"
    if not source.url.startswith(("http://", "https://")):
        raise Transient(ARTIFACT_FAILED, f"the artifact of '{shown}' has no HTTP URL")
    limit = policy.artifact_bytes
    chunks: list[bytes] = []
    size = 0
    try:
        async with (
            httpx.AsyncClient(timeout=60.0, event_hooks=http_guard(policy)) as client,
            client.stream("GET", source.url) as response,
        ):
            if response.status_code != 200:
                raise Transient(
                    ARTIFACT_FAILED,
                    f"failed to download the artifact of '{shown}' from {source.url}: "
                    f"status {response.status_code}",
                )
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise Transient(
                        ARTIFACT_FAILED,
                        f"the artifact of '{shown}' is larger than {limit} bytes "
                        "(GITSAIL_ARTIFACT_BYTES)",
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise Transient(
            ARTIFACT_FAILED,
            f"failed to download the artifact of '{shown}' from {source.url}: "
            f"{type(exc).__name__}: {exc}",
        ) from None
    data = b"".join(chunks)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if source.digest and actual != source.digest:
        raise Transient(
            ARTIFACT_FAILED,
            f"the artifact of '{shown}' does not match its digest {source.digest} (got {actual})",
        )
    return data
