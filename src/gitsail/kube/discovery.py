"""Discovery: which resources a cluster serves, and the RESTMapper built from it.

Aggregated discovery (``apidiscovery.k8s.io/v2``, GA in Kubernetes 1.30) answers two
requests, ``GET /api`` and ``GET /apis`` with ``Accept:
application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``, with every group,
version, resource, scope, verb and subresource. The Accept header also lists plain
``application/json``: a server without aggregated discovery answers with the legacy
``APIVersions``/``APIGroupList``, and we fall back to one ``GET`` per group version
(concurrently). Group versions that fail to answer (an aggregated API whose backend is down,
or a ``Stale`` entry in aggregated discovery) are left out and named in
``RESTMapper.unavailable`` so callers can refuse to prune kinds they could not see.

The ``RESTMapper`` maps (apiVersion, kind) to a ``ResourceInfo``, which builds request paths:
the core group lives under ``/api/v1``, every other group under ``/apis/<group>/<version>``;
namespaced resources add ``namespaces/<ns>/``.

Every segment of such a path is checked before it is built (``check_names``), because a URL
path is not a name: ``…/configmaps/.`` is normalized to ``…/configmaps`` (the whole
collection) and ``…/namespaces/x/configmaps/..`` to the namespace. The rules are Kubernetes'
own: a namespace is a DNS-1123 label; an object name is a DNS-1123 subdomain, except for the
built-in kinds whose names are path segments (RBAC roles and bindings such as
``system:controller:foo``, IP addresses, ...); a path segment is never empty, ``.`` or ``..``
and never contains ``/`` or ``%`` (the apiserver's baseline for every kind). A name that fails
raises ``InvalidName`` and no request is sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gitsail.kube.errors import InvalidName, KubeError, NotFoundKind
from gitsail.model import split_api_version

__all__ = [
    "AGGREGATED_ACCEPT",
    "RESTMapper",
    "ResourceInfo",
    "check_names",
    "fetch_mapper",
    "parse_aggregated",
    "parse_resource_list",
]

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)

# GET path with an Accept header -> parsed JSON body (raises KubeError on failure).
GetJson = Callable[[str, str], Awaitable[Any]]


@dataclass(frozen=True)
class ResourceInfo:
    """A served resource: enough to build its URLs and know what it supports."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str]
    subresources: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        name: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of the collection, or of the object ``name`` (and its subresource).

        ``namespace`` is ignored for cluster-scoped resources; for namespaced ones, None means
        "across all namespaces" (valid for list and watch only). A name, namespace or
        subresource Kubernetes would not accept raises ``InvalidName``.
        """
        ns = namespace if self.namespaced and namespace else None
        check_names(self.group, self.kind, name, ns)
        for what, segment in (
            ("group", self.group),
            ("version", self.version),
            ("resource", self.plural),
        ):
            if segment or what != "group":
                _check_segment(what, segment, self.kind)
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if ns:
            parts.append(f"namespaces/{_seg(ns)}")
        parts.append(self.plural)
        if name is not None:
            parts.append(_seg(name))
            if subresource:
                if not _LABEL.fullmatch(subresource):
                    raise InvalidName("subresource", subresource, _LABEL_RULE, kind=self.kind)
                parts.append(subresource)
        elif subresource:
            raise ValueError(f"{self.kind}: a subresource needs an object name")
        return "/".join(parts)


# -- names -------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_RULE = (
    "a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)
_SUBDOMAIN_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_SUBDOMAIN_PART}(\.{_SUBDOMAIN_PART})*")
_SUBDOMAIN_MAX = 253
_SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)
_SEGMENT_RULE = "a path segment: not empty, not '.' or '..', without '/' or '%'"

# Built-in kinds whose names the apiserver checks only as path segments (its
# ``ValidateRBACName`` and the like), so ``system:controller:foo`` is a valid ClusterRole
# and ``2001:db8::1`` a valid IPAddress. Every other kind, custom resources included, takes
# DNS-1123 subdomains; Namespaces take DNS-1123 labels.
_PATH_SEGMENT_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("networking.k8s.io", "IPAddress"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("certificates.k8s.io", "ClusterTrustBundle"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("apiregistration.k8s.io", "APIService"),
        ("internal.apiserver.k8s.io", "StorageVersion"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
    }
)


def check_names(group: str, kind: str, name: str | None, namespace: str | None = None) -> None:
    """Raise ``InvalidName`` unless ``name`` (when not None) is a name Kubernetes accepts
    for ``kind`` of ``group`` and ``namespace`` (when given) is a valid namespace name."""
    if namespace is not None and not _LABEL.fullmatch(namespace):
        raise InvalidName("metadata.namespace", namespace, _LABEL_RULE, kind=kind)
    if name is None:
        return
    if group == "" and kind == "Namespace":
        if not _LABEL.fullmatch(name):
            raise InvalidName("metadata.name", name, _LABEL_RULE, kind=kind)
    elif (group, kind) in _PATH_SEGMENT_KINDS:
        _check_segment("metadata.name", name, kind)
    elif len(name) > _SUBDOMAIN_MAX or not _SUBDOMAIN.fullmatch(name):
        raise InvalidName("metadata.name", name, _SUBDOMAIN_RULE, kind=kind)


def _check_segment(what: str, value: str, kind: str) -> None:
    if value in ("", ".", "..") or "/" in value or "%" in value:
        raise InvalidName(what, value, _SEGMENT_RULE, kind=kind)


def _is_group_path(path: str) -> bool:
    """``/api/v1`` or ``/apis/<group>/<version>``, each segment a DNS-like name."""
    parts = path.split("/")[2:]
    return 1 <= len(parts) <= 2 and all(_GROUP_SEGMENT.fullmatch(p) for p in parts)


_GROUP_SEGMENT = re.compile(r"[a-z0-9][-a-z0-9.]{0,252}")


def _seg(value: str) -> str:
    return quote(value, safe="")


class RESTMapper:
    """Immutable index of served resources by (group, version, kind)."""

    def __init__(self, resources: Iterable[ResourceInfo], unavailable: Iterable[str] = ()) -> None:
        self._by_gvk: dict[tuple[str, str, str], ResourceInfo] = {}
        self._group_versions: list[str] = []
        for info in resources:
            key = (info.group, info.version, info.kind)
            # First wins: discovery lists the canonical resource before aliases.
            self._by_gvk.setdefault(key, info)
            if info.api_version not in self._group_versions:
                self._group_versions.append(info.api_version)
        self.unavailable: frozenset[str] = frozenset(unavailable)

    def __len__(self) -> int:
        return len(self._by_gvk)

    def __repr__(self) -> str:
        return f"RESTMapper({len(self)} kinds, {len(self._group_versions)} group versions)"

    def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        """The resource serving ``kind`` in ``api_version``; NotFoundKind if none does."""
        group, version = split_api_version(api_version)
        try:
            return self._by_gvk[(group, version, kind)]
        except KeyError:
            raise NotFoundKind(api_version, kind) from None

    def resources(self) -> list[ResourceInfo]:
        """Every served resource, in discovery order."""
        return list(self._by_gvk.values())

    def api_versions(self) -> list[str]:
        """Every ``group/version`` and ``group/version/Kind``, as ``helm --api-versions``
        takes them (core group: ``v1`` and ``v1/Pod``)."""
        out = list(self._group_versions)
        out.extend(f"{i.api_version}/{i.kind}" for i in self._by_gvk.values())
        return out


def parse_aggregated(doc: dict[str, Any]) -> tuple[list[ResourceInfo], list[str]]:
    """Resources and unavailable group versions from an ``APIGroupDiscoveryList``."""
    resources: list[ResourceInfo] = []
    unavailable: list[str] = []
    for group_doc in doc.get("items") or []:
        group = str((group_doc.get("metadata") or {}).get("name") or "")
        for version_doc in group_doc.get("versions") or []:
            version = str(version_doc.get("version") or "")
            if version_doc.get("freshness") == "Stale":
                unavailable.append(f"{group}/{version}" if group else version)
                continue
            for res in version_doc.get("resources") or []:
                kind = (res.get("responseKind") or {}).get("kind")
                if not kind or not res.get("resource"):
                    continue
                resources.append(
                    ResourceInfo(
                        group=group,
                        version=version,
                        kind=str(kind),
                        plural=str(res["resource"]),
                        namespaced=res.get("scope") == "Namespaced",
                        verbs=frozenset(res.get("verbs") or ()),
                        subresources=frozenset(
                            str(s["subresource"])
                            for s in res.get("subresources") or []
                            if s.get("subresource")
                        ),
                    )
                )
    return resources, unavailable


def parse_resource_list(doc: dict[str, Any]) -> list[ResourceInfo]:
    """Resources from a legacy ``APIResourceList`` (``GET /apis/<group>/<version>``)."""
    group, version = split_api_version(str(doc.get("groupVersion") or ""))
    entries = doc.get("resources") or []
    subresources: dict[str, set[str]] = {}
    for res in entries:
        parent, sep, sub = str(res.get("name") or "").partition("/")
        if sep:
            subresources.setdefault(parent, set()).add(sub)
    out = []
    for res in entries:
        name = str(res.get("name") or "")
        if "/" in name or not name or not res.get("kind"):
            continue
        out.append(
            ResourceInfo(
                group=group,
                version=version,
                kind=str(res["kind"]),
                plural=name,
                namespaced=bool(res.get("namespaced")),
                verbs=frozenset(res.get("verbs") or ()),
                subresources=frozenset(subresources.get(name, ())),
            )
        )
    return out


async def fetch_mapper(get_json: GetJson) -> RESTMapper:
    """Discover everything the server serves (aggregated, else legacy per group version)."""
    # Both at once; when one fails, the other is cancelled (not left running).
    both = [
        asyncio.ensure_future(get_json("/api", AGGREGATED_ACCEPT)),
        asyncio.ensure_future(get_json("/apis", AGGREGATED_ACCEPT)),
    ]
    try:
        core, groups = await asyncio.gather(*both)
    finally:
        for task in both:
            task.cancel()
        await asyncio.gather(*both, return_exceptions=True)
    resources: list[ResourceInfo] = []
    unavailable: list[str] = []
    legacy_paths: list[str] = []
    for doc, prefix in ((core, "/api"), (groups, "/apis")):
        if doc.get("kind") == "APIGroupDiscoveryList":
            found, stale = parse_aggregated(doc)
            resources += found
            unavailable += stale
        elif doc.get("kind") == "APIVersions":
            legacy_paths += [f"{prefix}/{v}" for v in doc.get("versions") or []]
        elif doc.get("kind") == "APIGroupList":
            for group in doc.get("groups") or []:
                legacy_paths += [
                    f"{prefix}/{v['groupVersion']}" for v in group.get("versions") or []
                ]
        else:
            raise KubeError(0, "BadDiscovery", f"unexpected discovery document at {prefix}")
    # A group version is built into a URL: one that is not a path (``..``) is left out
    # rather than requested.
    unavailable += [p.split("/", 2)[2] for p in legacy_paths if not _is_group_path(p)]
    legacy_paths = [p for p in legacy_paths if _is_group_path(p)]
    if legacy_paths:
        docs = await asyncio.gather(
            *(get_json(p, "application/json") for p in legacy_paths), return_exceptions=True
        )
        for path, result in zip(legacy_paths, docs, strict=True):
            if isinstance(result, KubeError):
                unavailable.append(path.split("/", 2)[2])
            elif isinstance(result, BaseException):
                raise result
            else:
                resources += parse_resource_list(result)
    return RESTMapper(resources, unavailable)
