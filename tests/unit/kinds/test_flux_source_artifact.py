"""A Kustomization's non-Git source read from its artifact: the source's status names it,
the controller's store unpacks it, and without a local store it is downloaded from its URL
and checked against its digest first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.flux_source_artifact import (
    SourceArtifact,
    extract_source_artifact,
    read_source_artifact,
)
from gitsail.kinds.records import ObjectRef
from gitsail.kinds.status import Transient
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.source.artifacts import ArtifactStore, IgnoreRules

BASE = "http://gitsail-controller.gitsail.svc.cluster.local."


class FakeKube:
    def __init__(self, *objects: Obj) -> None:
        self.objects = {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
        }

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.objects.get((kind, namespace or "", name))


def source(status: dict[str, Any] | None = None) -> Obj:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {},
        "status": status or {},
    }


@pytest.fixture
def stored(tmp_path: Path) -> tuple[ArtifactStore, SourceArtifact]:
    tree = tmp_path / "tree"
    (tree / "deploy").mkdir(parents=True)
    (tree / "deploy" / "cm.yaml").write_text("kind: ConfigMap\n")
    store = ArtifactStore(tmp_path / "store", base_url=BASE)
    artifact = store.archive(
        "ocirepository", "flux-system", "app", tree, revision="v1@sha256:x", ignore=IgnoreRules([])
    )
    described = SourceArtifact(
        "OCIRepository",
        "flux-system",
        "app",
        artifact.revision,
        artifact.path,
        artifact.url,
        artifact.digest,
    )
    return store, described


async def test_the_artifact_in_the_source_status_is_read() -> None:
    kube = FakeKube(
        source({"artifact": {"revision": "v1@sha256:ab", "path": "p", "url": "u", "digest": "d"}})
    )
    found = await read_source_artifact(kube, ObjectRef("OCIRepository", "app", "flux-system"))  # type: ignore[arg-type]
    assert found == SourceArtifact(
        "OCIRepository", "flux-system", "app", "v1@sha256:ab", "p", "u", "d"
    )


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ((), "Source 'OCIRepository/flux-system/app' not found"),
        ((source(),), "Source artifact not found"),
    ],
)
async def test_no_source_or_no_artifact_yet_is_transient(
    objects: tuple[Obj, ...], message: str
) -> None:
    with pytest.raises(Transient, match=message) as err:
        await read_source_artifact(
            FakeKube(*objects), ObjectRef("OCIRepository", "app", "flux-system")
        )  # type: ignore[arg-type]
    assert err.value.reason == "ArtifactFailed"


async def test_the_local_store_unpacks_the_artifact(
    stored: tuple[ArtifactStore, SourceArtifact], tmp_path: Path
) -> None:
    store, artifact = stored
    await extract_source_artifact(artifact, tmp_path / "out", store=store)
    assert (tmp_path / "out" / "deploy" / "cm.yaml").read_text() == "kind: ConfigMap\n"


@pytest.fixture
def served(stored: tuple[ArtifactStore, SourceArtifact]) -> Iterator[tuple[str, bytes]]:
    store, artifact = stored
    path = store.local_path(artifact.path)
    assert path is not None
    body = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{artifact.path}", body
    server.shutdown()
    server.server_close()


async def test_without_a_local_store_the_artifact_is_downloaded_and_checked(
    stored: tuple[ArtifactStore, SourceArtifact], served: tuple[str, bytes], tmp_path: Path
) -> None:
    _, artifact = stored
    url, _ = served
    remote = SourceArtifact(**{**artifact.__dict__, "url": url})
    await extract_source_artifact(remote, tmp_path / "out", store=None)
    assert (tmp_path / "out" / "deploy" / "cm.yaml").is_file()
    tampered = SourceArtifact(**{**remote.__dict__, "digest": "sha256:" + "0" * 64})
    with pytest.raises(Transient, match="does not match its digest"):
        await extract_source_artifact(tampered, tmp_path / "again", store=None)
    with pytest.raises(Transient, match="larger than 10 bytes"):
        await extract_source_artifact(
            remote, tmp_path / "small", store=None, policy=Policy(artifact_bytes=10)
        )


async def test_an_artifact_path_of_another_object_is_refused(
    stored: tuple[ArtifactStore, SourceArtifact], tmp_path: Path
) -> None:
    store, artifact = stored
    other = SourceArtifact(
        **{**artifact.__dict__, "name": "other", "kind": "OCIRepository"}
    )  # status naming app's archive from another object
    with pytest.raises(Transient, match="is not one of its archives"):
        await extract_source_artifact(other, tmp_path / "out", store=store)
    assert not (tmp_path / "out").exists()
