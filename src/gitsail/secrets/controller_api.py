"""Talking to a sealed-secrets controller (Bitnami's or gitsail's) the way kubeseal does.

The controller serves ``GET /v1/cert.pem``, ``POST /v1/verify`` (200: it decrypts, 409: it
does not) and ``POST /v1/rotate`` (re-sealed with the newest key). kubeseal reaches them
through the API server's service proxy, on the first port of the controller's Service,
so only ``get services`` and ``services/proxy`` rights are needed, never the keys.
"""

from __future__ import annotations

import json
from typing import Any

from gitsail.kube import Conflict, Kube

__all__ = [
    "DEFAULT_CONTROLLER_NAME",
    "DEFAULT_CONTROLLER_NAMESPACE",
    "fetch_cert",
    "rotate",
    "verify",
]

DEFAULT_CONTROLLER_NAME = "sealed-secrets-controller"
DEFAULT_CONTROLLER_NAMESPACE = "kube-system"
_MAX_CERT_BYTES = 64 * 1024


async def _port(kube: Kube, namespace: str, name: str) -> str:
    service = await kube.get("v1", "Service", name, namespace)
    if service is None:
        raise LookupError(
            f"no Service {namespace}/{name}: is the sealed-secrets controller installed "
            "there? (--controller-namespace, --controller-name)"
        )
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        raise LookupError(f"Service {namespace}/{name} has no ports")
    first = ports[0]
    return str(first.get("name") or first.get("port"))


async def fetch_cert(kube: Kube, namespace: str, name: str) -> bytes:
    """The PEM certificate the controller seals with."""
    port = await _port(kube, namespace, name)
    return await kube.proxy_service(
        "GET", namespace, name, port, "/v1/cert.pem", max_bytes=_MAX_CERT_BYTES
    )


async def verify(kube: Kube, namespace: str, name: str, sealed: dict[str, Any]) -> bool:
    """True if the controller can decrypt ``sealed`` (409 means it cannot)."""
    port = await _port(kube, namespace, name)
    try:
        await kube.proxy_service(
            "POST",
            namespace,
            name,
            port,
            "/v1/verify",
            body=json.dumps(sealed).encode(),
            content_type="application/json",
        )
    except Conflict:
        return False
    return True


async def rotate(kube: Kube, namespace: str, name: str, sealed: dict[str, Any]) -> dict[str, Any]:
    """``sealed`` re-encrypted by the controller with its newest key."""
    port = await _port(kube, namespace, name)
    raw = await kube.proxy_service(
        "POST",
        namespace,
        name,
        port,
        "/v1/rotate",
        body=json.dumps(sealed).encode(),
        content_type="application/json",
    )
    answer = json.loads(raw)
    if not isinstance(answer, dict):
        raise ValueError("the controller's /v1/rotate answer is not an object")
    return answer
