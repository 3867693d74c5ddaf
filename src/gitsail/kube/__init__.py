"""Async Kubernetes access on plain dicts: kubeconfig, discovery, server-side apply, watch.

See ``docs/architecture.md`` ("gitsail.kube") for the contract; each module's docstring
explains its mechanism. The public API is exactly ``__all__``.
"""

from gitsail.kube.cache import WatchCache
from gitsail.kube.client import Kube, service_account_user
from gitsail.kube.config import ExecConfig, KubeConfig, load_kubeconfig
from gitsail.kube.discovery import ResourceInfo, RESTMapper, check_names
from gitsail.kube.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    InvalidName,
    KubeError,
    NotFound,
    NotFoundKind,
    PreconditionFailed,
    ServerError,
    Unauthorized,
)
from gitsail.kube.flow import FlowControl, RequestStats, urgent
from gitsail.kube.retry import Backoff, RetryPolicy
from gitsail.kube.watch import WatchEvent
from gitsail.kube.written import WrittenVersions

__all__ = [
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
    "RequestStats",
    "ResourceInfo",
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
]
