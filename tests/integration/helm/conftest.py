"""Fixtures of the Helm integration tests (chart sources, OCI, HelmRelease).

Each engineer's fixtures live in their own marked section below; keep them there.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from gitsail.dev.registry import Registry

# ---------------------------------------------------------------------------------------
# OCI registry (oci)
#
# ``oci_registry`` / ``oci_registry_auth``: one CNCF ``distribution`` registry per session on
# 127.0.0.1 (``gitsail.dev.registry.Registry``; anonymous / behind htpasswd basic auth as
# ``OCI_USER``). ``.host`` is ``127.0.0.1:PORT``, ``.url`` is ``oci://127.0.0.1:PORT``.
# Charts are pushed with the real helm (``gitsail.dev.registry.push_chart``); plain manifests
# with ``push_manifests`` below (blob uploads and a manifest PUT over the distribution API, as
# ``flux push artifact`` does). Tests isolate themselves by repository path.
# ---------------------------------------------------------------------------------------

OCI_USER = ("oci-user", "oci-pass-42")
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    with Registry() as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_auth() -> Iterator[Registry]:
    with Registry(credentials=OCI_USER) as registry:
        yield registry


def tar_gz(files: Mapping[str, str]) -> bytes:
    """A deterministic tar+gzip of ``files`` (path -> text)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in sorted(files):
            data = files[name].encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_manifests(
    registry: Registry,
    repository: str,
    tag: str,
    files: Mapping[str, str],
    *,
    media_type: str = FLUX_CONTENT,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Push ``files`` as a one-layer OCI artifact to ``registry`` at ``repository:tag``;
    returns the manifest digest."""
    auth = httpx.BasicAuth(*registry.credentials) if registry.credentials else None
    base = f"http://{registry.host}/v2/{repository}"
    with httpx.Client(auth=auth, timeout=30) as client:

        def upload(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = client.post(f"{base}/blobs/uploads/")
            started.raise_for_status()
            location = httpx.URL(base).join(started.headers["location"])
            done = client.put(
                location.copy_merge_params({"digest": digest}),
                content=data,
                headers={"content-type": "application/octet-stream"},
            )
            done.raise_for_status()
            return {"digest": digest, "size": len(data)}

        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": FLUX_CONFIG, **upload(b"{}")},
            "layers": [{"mediaType": media_type, **upload(tar_gz(files))}],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        body = json.dumps(manifest).encode()
        put = client.put(
            f"{base}/manifests/{tag}", content=body, headers={"content-type": OCI_MANIFEST}
        )
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(body).hexdigest()


def write_chart(root: Path, name: str, version: str, templates: Mapping[str, str]) -> Path:
    """A chart directory ``root/name`` at ``version`` with ``templates``."""
    chart = root / f"{name}-{version}" / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
    (chart / "values.yaml").write_text("color: blue\n")
    for rel, text in templates.items():
        (chart / "templates" / rel).write_text(text)
    return chart
