"""Artifacts served over HTTP: the file a status URL names, and nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gitsail.controller.artifacts_http import artifact_routes
from gitsail.source.artifacts import ArtifactStore, IgnoreRules, StoredArtifact

BASE = "http://gitsail-controller.gitsail.svc.cluster.local."


@pytest.fixture
def served(tmp_path: Path) -> tuple[httpx.AsyncClient, StoredArtifact]:
    tree = tmp_path / "tree"
    (tree / "deploy").mkdir(parents=True)
    (tree / "deploy/app.yaml").write_text("kind: ConfigMap\n")
    store = ArtifactStore(tmp_path / "store", base_url=BASE)
    stored = store.archive(
        "gitrepository",
        "flux-system",
        "myapp",
        tree,
        revision="main@sha1:x",
        ignore=IgnoreRules.load(tree, None),
    )
    (tmp_path / "store" / "secret.txt").write_text("not an artifact")
    app = Starlette(routes=artifact_routes(store))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gitsail")
    return client, stored


async def test_the_url_in_status_serves_the_archive_matching_its_digest(
    served: tuple[httpx.AsyncClient, StoredArtifact],
) -> None:
    client, stored = served
    response = await client.get("/" + stored.path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == stored.digest
    assert len(response.content) == stored.size
    head = await client.head("/" + stored.path)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == stored.size


@pytest.mark.parametrize(
    "path",
    [
        "/gitrepository/flux-system/myapp/" + "0" * 64 + ".tar.gz",
        "/gitrepository/flux-system/other/" + "0" * 64 + ".tar.gz",
        "/kustomization/flux-system/myapp/" + "0" * 64 + ".tar.gz",
        "/gitrepository/flux-system/myapp/..%2F..%2Fsecret.txt",
        "/gitrepository/flux-system/..%2F..%2F/secret.txt",
        "/gitrepository/flux-system/myapp/secret.txt",
        "/secret.txt",
    ],
)
async def test_anything_else_is_404(
    served: tuple[httpx.AsyncClient, StoredArtifact], path: str
) -> None:
    client, _ = served
    response = await client.get(path)
    assert response.status_code == 404
    assert b"not an artifact" not in response.content
