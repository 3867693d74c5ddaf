"""The Argo CD ``Application`` kind (``argoproj.io/v1alpha1``): its spec read into the
delivery driver's kind-neutral records, and its status written as Argo CD writes it.

Reading. The whole object is first checked against Argo CD's CRD schema
(``kinds._argo_spec``): every type, int64 ranges, required fields. Whatever is wrong is one
``AppSpecError`` naming each field path (``spec.syncPolicy.retry.limit: expected integer,
got "x"``); no other exception escapes ``App.from_application`` (a hypothesis test holds it
to that), so a bad spec is a condition on the app, never a crash. Then the fields are read
with Argo CD's defaults (``targetRevision`` → HEAD, ``revisionHistoryLimit`` → 10, retry
backoff 5s × 2ⁿ capped at 3m, automated syncs retried 5 times when no ``retry`` is set) into
an ``App``: a ``gitsail.app.model.Delivery`` (source reference, render options, destination,
sync policy, owner = Argo's tracking id, inventory = ``status.resources``) plus what only
Argo CD has (project, the ``spec.source`` as written, finalizers). Anything gitsail cannot
honour yet (several ``sources``, another destination cluster, a config management plugin) is
refused with a message, never silently ignored. Render options that cannot be used are kept
as ``render_problem`` and reported by the engine as a ``ComparisonError`` after the fetch.

Writing. ``ARGO`` is the adapter the engine calls back through (``Delivery.adapter``):
``status_patch`` computes ``status`` (``sync``, ``health``, ``resources``, ``summary``,
``sourceType``, ``conditions``: ``ComparisonError``, ``SharedResourceWarning``,
``NoResourcesWarning``) from a comparison; ``source_status`` is ``spec.source`` as status
and history record it (credentials removed from the URL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsail.app.engine import Comparison, now
from gitsail.app.model import (
    IN_CLUSTER,
    Automated,
    Delivery,
    HealthSettings,
    Retry,
    SourceRef,
    SyncPolicy,
)
from gitsail.kinds._argo_source import render_options
from gitsail.kinds._argo_spec import APPLICATION, MAX_PROBLEMS, SYNC_RETRY, check, shown
from gitsail.model import Obj, ResourceKey
from gitsail.render import RenderError, RenderOptions
from gitsail.source import redact_url
from gitsail.sync.inventory import Inventory
from gitsail.sync.ownership import ArgoTracking
from gitsail.sync.plan import SyncOptions, parse_sync_options

__all__ = [
    "API_VERSION",
    "ARGO",
    "DEFAULT_NAMESPACE",
    "IGNORE_HEALTHCHECK",
    "IN_CLUSTER",
    "KIND",
    "NO_RESOURCES",
    "App",
    "AppSpecError",
    "ArgoApplications",
    "Automated",
    "Retry",
    "check_application",
    "images",
    "parse_duration",
    "parse_retry",
    "render_options",
    "resources_status",
]

API_VERSION = "argoproj.io/v1alpha1"
KIND = "Application"
DEFAULT_NAMESPACE = "argocd"
# Objects annotated with it ("true") do not count towards the app's health.
IGNORE_HEALTHCHECK = "argocd.argoproj.io/ignore-healthcheck"
# The condition an app gets when its source renders nothing (see status_patch).
NO_RESOURCES = "NoResourcesWarning"


class AppSpecError(ValueError):
    """The Application's spec cannot be used as written; the message says which field."""


# Go's time.ParseDuration: a sequence of decimal numbers, each with a unit.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration is int64 nanoseconds


def parse_duration(value: object, default: float) -> float:
    """Argo CD's backoff duration in seconds: bare seconds (``"10"``) or a Go duration
    (``5s``, ``3m``, ``1h30m``, ``250ms``); numbers are taken as seconds.

    Negative, non-finite and out-of-range (beyond Go's int64 nanoseconds) durations are
    refused with an ``AppSpecError``.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AppSpecError(f"invalid duration {shown(value)} (use e.g. 5s, 3m)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if re.fullmatch(r"\+?[0-9]{1,19}", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text.lstrip("+"))
            if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
                raise AppSpecError(f"invalid duration {text[:60]!r} (use e.g. 5s, 3m)")
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not 0 <= seconds <= _MAX_DURATION:  # also false for NaN
        raise AppSpecError(f"invalid duration {shown(value)}: must be between 0 and 292 years")
    return seconds


def check_application(obj: Any) -> None:
    """Refuse (``AppSpecError``) an Application that breaks Argo CD's CRD schema or has no
    name; the message names every bad field (up to ten)."""
    if not isinstance(obj, Mapping):
        raise AppSpecError(f"an Application must be an object, got {shown(obj)}")
    meta = obj.get("metadata")
    raw_name = meta.get("name") if isinstance(meta, Mapping) else None
    name = raw_name if isinstance(raw_name, str) and raw_name else "?"
    problems = check(obj, APPLICATION, "")
    if not problems and not raw_name:
        problems = ["metadata.name: must not be empty"]
    if problems:
        more = " (and more)" if len(problems) >= MAX_PROBLEMS else ""
        raise AppSpecError(f"application {name}: {'; '.join(problems)}{more}")


def parse_retry(spec: Any, *, automated: bool) -> Retry:
    """``syncPolicy.retry`` (or an operation's ``retry``), checked against the CRD schema;
    AppSpecError if it is wrong. Without one, automated operations get Argo CD's implicit
    limit of 5."""
    problems = check(spec, SYNC_RETRY, "spec.syncPolicy.retry")
    if problems:
        raise AppSpecError("; ".join(problems))
    if not spec:
        return Retry(limit=5) if automated else Retry()
    backoff = spec.get("backoff") or {}
    try:
        duration = parse_duration(backoff.get("duration"), 5.0)
        max_duration = parse_duration(backoff.get("maxDuration"), 180.0)
    except AppSpecError as exc:
        raise AppSpecError(f"spec.syncPolicy.retry.backoff: {exc}") from None
    factor = backoff.get("factor")
    return Retry(
        limit=int(spec.get("limit") or 0),
        duration=duration,
        factor=float(2 if factor is None else factor),
        max_duration=max_duration,
        refresh=bool(spec.get("refresh", False)),
    )


def tracking_name(namespace: str, name: str) -> str:
    """The name used in tracking ids: ``<ns>_<name>`` outside the control-plane namespace."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}_{name}"


@dataclass(frozen=True)
class App(Delivery):
    """One Application: the engine's ``Delivery`` plus what only Argo CD has."""

    project: str = "default"
    spec_source: dict[str, Any] = field(default_factory=dict)  # ``spec.source`` as written
    finalizers: tuple[str, ...] = ()

    # -- Argo CD's names for the neutral fields --------------------------------------------

    @property
    def raw(self) -> Obj:
        """The Application as read."""
        return self.origin

    @property
    def instance(self) -> str:
        """The name used in tracking ids: ``<ns>_<name>`` outside the control-plane namespace."""
        return tracking_name(self.namespace, self.name)

    @property
    def repo_url(self) -> str:
        return self.source.url

    @property
    def target_revision(self) -> str:
        return self.source.revision

    @property
    def is_helm_repo(self) -> bool:
        return self.source.is_helm_repo

    @property
    def automated(self) -> Automated | None:
        return self.policy.automated

    @property
    def retry(self) -> Retry:
        return self.policy.retry

    @property
    def sync_options(self) -> SyncOptions:
        return self.policy.options

    @property
    def managed_namespace_metadata(self) -> dict[str, Any] | None:
        return self.policy.managed_namespace_metadata

    @property
    def revision_history_limit(self) -> int:
        return self.history_limit

    @classmethod
    def from_application(cls, obj: Any) -> App:
        """Read an Application; ``AppSpecError`` (naming every bad field) if it is not one.

        Nothing else is raised, whatever ``obj`` holds.
        """
        check_application(obj)
        meta = obj["metadata"]
        name = str(meta["name"])
        namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
        spec = obj["spec"]
        if spec.get("sources") and not spec.get("source"):
            raise AppSpecError(
                f"application {name}: spec.sources (multiple sources) is not supported yet; "
                "use spec.source"
            )
        source = spec.get("source")
        if not source or not source.get("repoURL"):
            raise AppSpecError(f"application {name}: spec.source.repoURL is required")
        destination = spec.get("destination") or {}
        server = str(destination.get("server") or "").rstrip("/")
        cluster_name = str(destination.get("name") or "")
        if server and cluster_name:
            # Argo CD's words: a destination names its cluster one way only.
            raise AppSpecError(
                f"application {name}: application destination can't have both name and "
                f"server defined: {cluster_name} {server}"
            )
        destination_namespace = str(destination.get("namespace") or "")
        policy = spec.get("syncPolicy") or {}
        automated_spec = policy.get("automated")
        automated = None
        if automated_spec is not None and automated_spec.get("enabled") is not False:
            automated = Automated(
                prune=bool(automated_spec.get("prune", False)),
                self_heal=bool(automated_spec.get("selfHeal", False)),
                allow_empty=bool(automated_spec.get("allowEmpty", False)),
            )
        try:
            retry = parse_retry(policy.get("retry"), automated=automated is not None)
        except AppSpecError as exc:
            raise AppSpecError(f"application {name}: {exc}") from None
        render: RenderOptions | None = None
        render_problem = ""
        try:
            render = render_options(source, app_name=name, namespace=destination_namespace)
        except RenderError as exc:
            render_problem = str(exc)
        chart = source.get("chart")
        repo_url = str(source.get("repoURL", ""))
        if not chart and repo_url.lower().startswith("oci://"):
            # Argo CD's OCI source: the repository names the chart (its last segment).
            chart = repo_url.rstrip("/").rsplit("/", 1)[-1]
        helm = source.get("helm") if isinstance(source.get("helm"), Mapping) else {}
        history_limit = spec.get("revisionHistoryLimit")
        raw = obj if isinstance(obj, dict) else dict(obj)
        return cls(
            api_version=API_VERSION,
            kind=KIND,
            namespace=namespace,
            name=name,
            generation=int(meta.get("generation") or 0),
            source=SourceRef(
                url=repo_url,
                revision=str(source.get("targetRevision") or "HEAD"),
                path=str(source.get("path") or "."),
                chart=str(chart) if chart else "",
                value_files=tuple(str(f) for f in helm.get("valueFiles") or ()),
            ),
            render=render,
            render_problem=render_problem,
            # No destination at all is the in-cluster one (gitsail's default, kept).
            destination_server=server or ("" if cluster_name else IN_CLUSTER),
            destination_name=cluster_name,
            destination_namespace=destination_namespace,
            policy=SyncPolicy(
                automated=automated,
                retry=retry,
                options=parse_sync_options(policy.get("syncOptions")),
                managed_namespace_metadata=policy.get("managedNamespaceMetadata"),
            ),
            owner=ArgoTracking(tracking_name(namespace, name), display=f"{namespace}/{name}"),
            inventory=Inventory.from_argo((raw.get("status") or {}).get("resources")),
            ignore_differences=tuple(spec.get("ignoreDifferences") or ()),
            health=HealthSettings(ignore_annotation=IGNORE_HEALTHCHECK),
            history_limit=10 if history_limit is None else int(history_limit),
            origin=raw,
            adapter=ARGO,
            project=str(spec.get("project") or "default"),
            spec_source=dict(source),
            finalizers=tuple(meta.get("finalizers") or ()),
        )


def _shown_source(source: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.source`` as copied into status, history and results: no URL credentials."""
    url = source.get("repoURL")
    return {**source, "repoURL": redact_url(url)} if isinstance(url, str) else dict(source)


def resources_status(comparison: Comparison) -> list[dict[str, Any]]:
    """``status.resources``: every desired object plus owned leftovers (the inventory)."""
    rows = []
    versions = {ResourceKey.of(o): str(o.get("apiVersion", "")) for o in comparison.desired}
    versions.update(
        {ResourceKey.of(o): str(o.get("apiVersion", "")) for o in comparison.owned_live}
    )
    for d in sorted(comparison.diffs, key=lambda d: d.key):
        version = versions.get(d.key, "").rpartition("/")[2]
        row: dict[str, Any] = {
            "group": d.key.group,
            "version": version,
            "kind": d.key.kind,
            "namespace": d.key.namespace,
            "name": d.key.name,
            "status": d.status,
        }
        health = comparison.health.get(d.key)
        if health is not None:
            row["health"] = {"status": str(health.status)}
            if health.message:
                row["health"]["message"] = health.message
        if d.requires_pruning:
            row["requiresPruning"] = True
        rows.append(row)
    return rows


def images(comparison: Comparison) -> list[str]:
    """``status.summary.images``: the container images of the desired objects."""
    found: set[str] = set()
    for obj in comparison.desired:
        spec = obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or spec
        if obj.get("kind") == "CronJob":
            pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
                "spec"
            ) or {}
        for group in ("containers", "initContainers"):
            for container in pod.get(group) or []:
                if isinstance(container, dict) and container.get("image"):
                    found.add(str(container["image"]))
    return sorted(found)


def _argo(delivery: Delivery) -> App:
    if not isinstance(delivery, App):
        raise TypeError(f"{delivery.kind} {delivery.display} is not an Argo CD Application")
    return delivery


class ArgoApplications:
    """The Application kind as the engine calls back into it (``app.model.KindAdapter``)."""

    def read(self, obj: Obj) -> App:
        return App.from_application(obj)

    def with_source(self, delivery: Delivery, source: Mapping[str, Any]) -> App:
        """The same Application with ``spec.source`` replaced (a rollback to a history entry).

        A history entry's URL is redacted: when it names the same repository, the spec's
        URL (with its credentials) is kept.
        """
        app = _argo(delivery)
        if redact_url(str(source.get("repoURL", ""))) == redact_url(app.repo_url):
            source = {**source, "repoURL": app.repo_url}
        return App.from_application(
            {**app.raw, "spec": {**(app.raw.get("spec") or {}), "source": dict(source)}}
        )

    def source_status(self, delivery: Delivery) -> dict[str, Any]:
        return _shown_source(_argo(delivery).spec_source)

    def status_patch(
        self,
        delivery: Delivery,
        comparison: Comparison | None,
        *,
        error: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> Obj:
        """``status`` as Argo CD writes it after a comparison (or a ``ComparisonError``)."""
        app = _argo(delivery)
        status: dict[str, Any] = {"reconciledAt": now()}
        old_conditions = (app.raw.get("status") or {}).get("conditions") or []
        conditions = [
            c
            for c in old_conditions
            if c.get("type")
            not in (
                "ComparisonError",
                "InvalidSpecError",
                "UnknownError",
                "SharedResourceWarning",
                NO_RESOURCES,
                "SyncWindowBlocked",  # AppProject sync windows: said again while it holds
            )
        ]
        if comparison is not None and not comparison.rendered.manifests:
            since: dict[str, Any] = next(
                (c for c in old_conditions if c.get("type") == NO_RESOURCES), {}
            )
            # Argo CD shows such an app Synced/Healthy and says nothing; say it (a warning type,
            # so Argo CD's tools list it as a warning, not an error).
            path = comparison.artifact.path or "."
            conditions.append(
                {
                    "type": NO_RESOURCES,
                    "message": f"the source rendered no resources ({comparison.rendered.tool} "
                    f"at path {path!r}): nothing is deployed or checked; the app is Synced and "
                    "Healthy only because it manages nothing",
                    "lastTransitionTime": since.get("lastTransitionTime") or now(),
                }
            )
        if comparison is not None:
            # A warning that stays keeps its time, so an unchanged status stays unchanged.
            shared_since = {
                c.get("message"): c.get("lastTransitionTime")
                for c in old_conditions
                if c.get("type") == "SharedResourceWarning"
            }
            conditions += [
                {
                    "type": "SharedResourceWarning",
                    "message": m,
                    "lastTransitionTime": shared_since.get(m) or now(),
                }
                for m in comparison.shared
            ]
            status["sync"] = {
                "status": comparison.sync_status,
                "revision": comparison.artifact.revision,
                "comparedTo": {
                    "source": _shown_source(app.spec_source),
                    "destination": {
                        **(
                            {"server": app.destination_server}
                            if app.destination_server
                            else {"name": app.destination_name}
                        ),
                        "namespace": app.destination_namespace,
                    },
                },
            }
            status["health"] = {"status": str(comparison.app_health)}
            status["resources"] = resources_status(comparison)
            status["summary"] = {"images": images(comparison)}
            status["sourceType"] = {
                "directory": "Directory",
                "kustomize": "Kustomize",
                "helm": "Helm",
            }.get(comparison.rendered.tool, "Directory")
        if error:
            conditions.append(
                {"type": "ComparisonError", "message": error, "lastTransitionTime": now()}
            )
            status["sync"] = {
                **((app.raw.get("status") or {}).get("sync") or {}),
                "status": "Unknown",
            }
        status["conditions"] = conditions or None
        if extra:
            status.update(extra)
        return status


ARGO = ArgoApplications()
