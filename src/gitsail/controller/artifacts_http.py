"""Artifacts over HTTP, where ``status.artifact.url`` points: ``GET /<kind>/<ns>/<name>/<file>``.

Consumers (a Kustomization reconciler elsewhere, ``curl`` in a debugging session, Flux's own
controllers) download an archive by the URL a source wrote in its status, as they do from
Flux's source-controller. Only files the ``ArtifactStore`` names are served: every segment
is validated (Kubernetes names, the lower-case kind, ``<sha256 hex>`` + ``.tar.gz``,
``.tgz`` or ``.yaml``) before a path is built, anything else is 404, and the file is
streamed in chunks, never read whole.
``HEAD`` answers the size without the body.

The archives are the content of the sources, served to whoever can reach the controller's
port, exactly as Flux serves them (in-cluster only, behind a NetworkPolicy).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from gitsail.source.artifacts import ArtifactStore

__all__ = ["KINDS", "artifact_routes"]

# The store's directories that are served (one per source kind).
KINDS = ("gitrepository", "helmrepository", "helmchart", "ocirepository")


def artifact_routes(store: ArtifactStore) -> list[Route]:
    """Routes serving ``store``'s archives; mount them at the root of the controller's app
    so URLs are ``<base_url>/gitrepository/<ns>/<name>/<file>``."""

    async def serve(request: Request) -> Response:
        params = request.path_params
        kind, namespace, name, filename = (
            str(params["kind"]),
            str(params["namespace"]),
            str(params["name"]),
            str(params["file"]),
        )
        path = store.file(kind, namespace, name, filename) if kind in KINDS else None
        if path is None:
            return PlainTextResponse("artifact not found", status_code=404)
        return FileResponse(
            path,
            media_type="application/x-yaml" if filename.endswith(".yaml") else "application/gzip",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return [
        Route("/{kind}/{namespace}/{name}/{file}", serve, methods=["GET", "HEAD"]),
    ]
