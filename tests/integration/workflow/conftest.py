"""Fixtures of the workflow tests: a real registry with images pushed over its API, the
article's repository in a checkout on the real git server, and the CLI run as a process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitsail.dev.gitserver import Workdir, git
from gitsail.dev.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ci bot",
    "GIT_AUTHOR_EMAIL": "ci@example.invalid",
    "GIT_COMMITTER_NAME": "ci bot",
    "GIT_COMMITTER_EMAIL": "ci@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@pytest.fixture(scope="session")
def image_registry() -> Iterator[Registry]:
    """One anonymous ``distribution`` registry on loopback for the session."""
    with Registry() as registry:
        yield registry


def push_image(registry: Registry, repository: str, tag: str, *, layer: bytes = b"") -> str:
    """Push a small OCI image (config + one layer) as ``repository:tag`` through the
    distribution API (what ``docker push`` does); returns its manifest digest."""
    base = f"http://{registry.host}/v2/{repository}"
    with httpx.Client(timeout=30, auth=registry.credentials) as client:  # basic auth if any

        def upload(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = client.post(f"{base}/blobs/uploads/")
            started.raise_for_status()
            location = httpx.URL(base).join(started.headers["location"])
            client.put(
                location.copy_merge_params({"digest": digest}),
                content=data,
                headers={"content-type": "application/octet-stream"},
            ).raise_for_status()
            return {"digest": digest, "size": len(data)}

        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **upload(config)},
            "layers": [{"mediaType": OCI_LAYER, **upload(layer or f"{repository}:{tag}".encode())}],
        }
        body = json.dumps(manifest).encode()
        client.put(
            f"{base}/manifests/{tag}", content=body, headers={"content-type": OCI_MANIFEST}
        ).raise_for_status()
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture
def checkout(git_repo: Workdir) -> Workdir:
    """The article's repository pushed to the git server; ``git_repo.path`` is a checkout
    of it with ``origin`` pointing at the server (as CI's checkout is)."""
    shutil.copytree(EXAMPLE, git_repo.path, dirs_exist_ok=True)
    git_repo.commit("the article's layout")
    git_repo.push()
    return git_repo


def gitsail(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does, in ``cwd``, with a CI identity for git."""
    return gitsail_env(list(args), cwd=cwd, env={})


def gitsail_env(
    args: list[str], *, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsail", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def remote_file(workdir: Workdir, branch: str, path: str) -> str:
    """A file as the git server has it on ``branch`` (fetched afresh)."""
    git("fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        cwd=workdir.path)  # fmt: skip
    return git("show", f"origin/{branch}:{path}", cwd=workdir.path)
