"""One error tree for everything `gitsail.kube` raises, each carrying the server's ``Status``.

::

    KubeError(code, reason, message, status)   anything that went wrong talking to a cluster
    ├── NotFound        404  the object (or namespace) does not exist
    ├── Conflict        409  a stale resourceVersion, an SSA field conflict, or AlreadyExists
    │   └── PreconditionFailed  a delete's uid/resourceVersion precondition no longer holds:
    │                        the object was replaced or changed since it was read; not deleted
    ├── Invalid         422  the apiserver rejected the object; ``status["details"]["causes"]``
    │   │                    (also server-side apply's 500 "failed to create typed patch
    │   │                    object", which is how the apiserver rejects unknown fields)
    │   └── InvalidName      a name, namespace or other path segment the apiserver would refuse
    │                        (``.``, ``..``, ``/``, ``%``, not a DNS-1123 name): refused before
    │                        any URL is built, so no request is ever sent
    ├── Forbidden       403  RBAC said no
    ├── Unauthorized    401  the credentials were refused (after one refresh, for exec plugins)
    ├── Gone            410  a watch or list continuation is too old: relist
    ├── NotFoundKind         the cluster does not serve that apiVersion/kind (not even after a
    │                        discovery refresh)
    ├── ServerError     5xx  the server failed, or the request timed out or could not connect
    │                        (``code`` 0); retried for idempotent requests before it is raised
    └── ConfigError          the kubeconfig or a credential plugin is unusable (``code`` 0)

``str(err)`` is the server's message prefixed by what the request was about, for example
``apply apps/v1 Deployment shop/web: Deployment.apps "web" is invalid: ...``. Credentials
never appear in these messages: they are built from the server's Status and our own context
string, and neither holds a token, password or key.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "InvalidName",
    "KubeError",
    "NotFound",
    "NotFoundKind",
    "PreconditionFailed",
    "ServerError",
    "Unauthorized",
    "error_from_response",
    "error_from_status",
    "error_from_transport",
]

# Longest non-Status body quoted in a message (a proxy's HTML error page, for example).
_MAX_BODY = 300


class KubeError(Exception):
    """A request to a cluster failed. ``status`` is the server's ``Status`` object (or one
    made up for failures that never reached the server); ``context`` says what was asked."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        status: dict[str, Any] | None = None,
        *,
        context: str = "",
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.status: dict[str, Any] = (
            status if status is not None else _status(code, reason, message)
        )
        self.context = context
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.context}: {self.message}" if self.context else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, reason={self.reason!r}, {str(self)!r})"


class NotFound(KubeError):
    """404: the object, its namespace or the resource does not exist."""


class Conflict(KubeError):
    """409: stale resourceVersion, server-side apply field conflict, or AlreadyExists."""


class PreconditionFailed(Conflict):
    """409 on a delete with preconditions: the object's uid or resourceVersion is no longer
    the one the caller saw, so it was replaced or changed since; it was not deleted."""


class Invalid(KubeError):
    """422: the object failed validation; the causes are in ``status["details"]``."""


class InvalidName(Invalid):
    """A name or namespace that Kubernetes does not accept, refused on our side before any
    request: built into a URL, ``.`` or ``..`` would turn an object request into one on the
    collection or the namespace. ``status`` has the shape of the apiserver's 422 answer."""

    def __init__(self, what: str, value: str, rule: str, *, kind: str = "") -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        message = f"{what} {shown!r} is not valid: {rule}"
        status = _status(422, "Invalid", message)
        status["details"] = {
            "name": shown,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": rule, "field": what}],
        }
        super().__init__(422, "Invalid", message, status, context=kind)
        self.what = what
        self.value = value


class Forbidden(KubeError):
    """403: the identity may not do this (RBAC, admission)."""


class Unauthorized(KubeError):
    """401: the credentials were not accepted."""


class Gone(KubeError):
    """410: the resourceVersion is too old to watch or continue from; relist."""


class NotFoundKind(KubeError):
    """The cluster serves no resource for this apiVersion and kind."""

    def __init__(self, api_version: str, kind: str, *, context: str = "") -> None:
        message = (
            f"the cluster serves no {kind} in {api_version} "
            "(is the CRD installed and Established, or the API group enabled?)"
        )
        super().__init__(404, "NotFoundKind", message, context=context)
        self.api_version = api_version
        self.kind = kind


class ServerError(KubeError):
    """5xx, a timeout or a connection failure (``code`` 0 when no response came back)."""


class ConfigError(KubeError):
    """The kubeconfig, in-cluster environment or a credential plugin is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "ConfigError", message)


_BY_CODE: dict[int, type[KubeError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}

_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def error_class(code: int) -> type[KubeError]:
    if code in _BY_CODE:
        return _BY_CODE[code]
    return ServerError if code >= 500 or code == 0 else KubeError


# Server-side apply reports a body that does not fit the schema (an unknown or mistyped
# field) as a 500; it is the object that is wrong, and repeating the request cannot help.
_TYPED_PATCH_FAILURE = "failed to create typed patch object"


def error_from_status(status: dict[str, Any], *, context: str = "") -> KubeError:
    """The error for a ``Status`` object, as found in a response body or a watch ERROR event."""
    code = int(status.get("code") or 0)
    reason = str(status.get("reason") or _REASONS.get(code, "Unknown"))
    message = str(status.get("message") or reason)
    cls = error_class(code)
    if code == 500 and message.startswith(_TYPED_PATCH_FAILURE):
        cls = Invalid
    return cls(code, reason, message, status, context=context)


def error_from_response(response: httpx.Response, *, context: str = "") -> KubeError:
    """The error for a failed response; the body must have been read."""
    code = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        body.setdefault("code", code)
        return error_from_status(body, context=context)
    reason = _REASONS.get(code, "Unknown")
    text = response.text.strip()
    message = f"{code} {reason}" + (f": {text[:_MAX_BODY]}" if text else "")
    return error_class(code)(code, reason, message, _status(code, reason, message), context=context)


def error_from_transport(exc: httpx.TransportError, *, context: str = "") -> ServerError:
    """A ServerError (code 0) for a request that got no response: timeout or connection."""
    reason = "Timeout" if isinstance(exc, httpx.TimeoutException) else "ConnectionError"
    # httpx messages name the host and the OS error, never headers.
    detail = str(exc) or type(exc).__name__
    return ServerError(0, reason, f"{reason.lower()}: {detail}", context=context)
