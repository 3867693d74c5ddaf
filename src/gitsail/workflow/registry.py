"""Is an image tag (or digest) really in its registry? Asked before a file says so.

One manifest request (``GET /v2/<repository>/manifests/<tag|digest>``, the distribution API)
through ``gitsail.source.oci.OCIClient``: the same bounded, deny-listed client the controller
uses, HTTPS except to loopback registries. Credentials are the user's Docker ones
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), read the way a
``dockerconfigjson`` Secret is; none means an anonymous request (the registry's token realm
is asked for an anonymous token, as ``docker pull`` does).
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from gitsail.source import errors as source_errors
from gitsail.source.credentials import RepoCredentials
from gitsail.source.oci import OCIClient, credentials_from_docker_config
from gitsail.workflow.imageref import ImageRef

__all__ = ["RegistryCheck", "docker_credentials", "verify_image"]

_DOCKER_HUB_API = "registry-1.docker.io"


class RegistryCheck(RuntimeError):
    """The image is not in the registry, or the registry could not be asked."""


def docker_credentials(host: str, config: Path | None = None) -> RepoCredentials | None:
    """The user's Docker credentials for ``host`` (None when there are none)."""
    path = (
        config or Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    )
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    secret = {
        "metadata": {"name": str(path)},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(raw).decode()},
    }
    try:
        return credentials_from_docker_config(secret, host)
    except source_errors.InvalidSource as exc:
        raise RegistryCheck(f"{path}: {exc}") from None


async def _digest(ref: ImageRef, client: OCIClient, creds: RepoCredentials | None) -> str:
    host = _DOCKER_HUB_API if ref.registry == "docker.io" else ref.registry
    url = f"oci://{host}/{ref.repository}"
    by_tag = await client.manifest_digest(url, ref.tag, creds) if ref.tag else ""
    if not ref.digest:
        return by_tag
    by_digest = await client.manifest_digest(url, ref.digest, creds)
    if by_tag and by_tag != by_digest:
        raise RegistryCheck(f"{ref}: the tag {ref.tag} points at {by_tag}, not {ref.digest}")
    return by_digest


def verify_image(ref: ImageRef, *, client: OCIClient | None = None) -> str:
    """The manifest digest of ``ref`` in its registry; RegistryCheck when it is not there."""
    creds = docker_credentials(ref.registry)
    try:
        return asyncio.run(_digest(ref, client or OCIClient(timeout=30.0), creds))
    except source_errors.RevisionNotFound:
        raise RegistryCheck(
            f"{ref} does not exist in {ref.registry} (push it first, or pass --no-verify)"
        ) from None
    except source_errors.SourceError as exc:
        raise RegistryCheck(f"cannot check {ref} in {ref.registry}: {exc}") from None
