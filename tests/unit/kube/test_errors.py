from __future__ import annotations

import httpx
import pytest

from gitsail.kube.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    NotFoundKind,
    ServerError,
    Unauthorized,
    error_from_response,
    error_from_status,
    error_from_transport,
)


def status(code: int, reason: str, message: str) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", Conflict),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (400, "BadRequest", KubeError),
    ],
)
def test_status_maps_to_its_error_class(code: int, reason: str, cls: type[KubeError]) -> None:
    err = error_from_status(status(code, reason, "msg"))
    assert type(err) is cls
    assert (err.code, err.reason, err.message) == (code, reason, "msg")


def test_message_is_prefixed_by_what_was_asked_and_keeps_the_status() -> None:
    body = status(422, "Invalid", 'Deployment.apps "web" is invalid: spec.replicas: bad')
    body["details"] = {"causes": [{"field": "spec.replicas"}]}
    response = httpx.Response(422, json=body)
    err = error_from_response(response, context="apply apps/v1 Deployment shop/web")
    assert isinstance(err, Invalid)
    assert str(err) == (
        'apply apps/v1 Deployment shop/web: Deployment.apps "web" is invalid: spec.replicas: bad'
    )
    assert err.status["details"]["causes"] == [{"field": "spec.replicas"}]


def test_a_body_that_is_not_a_status_still_gives_a_useful_error() -> None:
    err = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"), context="get")
    assert isinstance(err, ServerError)
    assert err.reason == "Unknown"
    assert str(err) == "get: 502 Unknown: <html>bad gateway</html>"
    assert err.status["code"] == 502


def test_transport_failures_are_server_errors_with_code_zero() -> None:
    timeout = error_from_transport(httpx.ReadTimeout("timed out"), context="list v1 Pod")
    assert (timeout.code, timeout.reason) == (0, "Timeout")
    refused = error_from_transport(httpx.ConnectError("refused"), context="x")
    assert refused.reason == "ConnectionError"
    assert str(refused) == "x: connectionerror: refused"


def test_not_found_kind_is_a_kube_error_but_not_a_not_found() -> None:
    err = NotFoundKind("example.com/v1", "Widget")
    assert isinstance(err, KubeError)
    assert not isinstance(err, NotFound)
    assert "Widget" in str(err)


def test_errors_can_be_caught_as_kube_error() -> None:
    with pytest.raises(KubeError, match="gone"):
        raise error_from_status(status(410, "Expired", "gone"))


def test_apply_schema_failure_reported_as_500_is_invalid() -> None:
    body = status(
        500,
        "InternalError",
        "failed to create typed patch object (ns/x; /v1, Kind=ConfigMap): "
        ".spec: field not declared in schema",
    )
    err = error_from_response(httpx.Response(500, json=body), context="apply v1 ConfigMap ns/x")
    assert isinstance(err, Invalid)
    assert err.code == 500
