from __future__ import annotations

import gitsail.kube

EXPECTED = {
    "Backoff",
    "ConfigError",
    "Conflict",
    "ExecConfig",
    "FlowControl",
    "Forbidden",
    "Gone",
    "Invalid",
    "InvalidName",
    "Kube",
    "KubeConfig",
    "KubeError",
    "NotFound",
    "NotFoundKind",
    "PreconditionFailed",
    "RESTMapper",
    "ResourceInfo",
    "RequestStats",
    "RetryPolicy",
    "ServerError",
    "Unauthorized",
    "WatchCache",
    "WatchEvent",
    "WrittenVersions",
    "check_names",
    "load_kubeconfig",
    "service_account_user",
    "urgent",
}


def test_public_api_is_exactly_all() -> None:
    assert set(gitsail.kube.__all__) == EXPECTED
    public = {n for n in dir(gitsail.kube) if not n.startswith("_")}
    # Submodules are importable attributes too; everything else public must be in __all__.
    submodules = {
        "auth",
        "aws",
        "cache",
        "client",
        "config",
        "discovery",
        "errors",
        "flow",
        "retry",
        "transport",
        "watch",
        "written",
    }
    assert public - submodules == EXPECTED


def test_every_error_is_a_kube_error() -> None:
    for name in (
        "ConfigError",
        "Conflict",
        "Forbidden",
        "Gone",
        "Invalid",
        "InvalidName",
        "NotFound",
        "NotFoundKind",
        "PreconditionFailed",
        "ServerError",
        "Unauthorized",
    ):
        assert issubclass(getattr(gitsail.kube, name), gitsail.kube.KubeError)
