"""What ``gitsail diff helmrelease`` reports: a HelmRelease's values and objects against its
latest release and the cluster, without the CLI and without writing anything.

- **values**: the values the reconciler would release now (``compose_values``: ``valuesFrom``
  then ``values``) against the values of the newest revision in Helm's storage
  (``helm_storage.latest_release``), leaf by leaf, as ``FieldChange``s. A value read from a
  Secret is never shown: every leaf at or under a path a Secret ``valuesFrom`` sets is
  masked on both sides (even when inline ``values`` override it), and so is any string
  holding a string read from a Secret (now, or at those paths in the last release),
  wherever it is — in the values and in the objects' changed fields;
- **objects**: the chart of the release's source (``status.artifact``: unpacked from the local
  ``ArtifactStore`` when given, else downloaded from ``status.artifact.url``, bounded and
  checked against ``status.artifact.digest``), rendered by the pinned ``helm template``
  through ``Renderer`` (its chart checks, private home and limits) with the composed values,
  the release name and the target namespace, without CRDs, tests and hooks (a release's
  manifest has none of them), post-rendered as helm-controller does (``postRenderers``,
  ``commonMetadata``, the owner labels: ``helm_postrender``). Each object is dry-run
  (``dryRun=All``: nothing is written) as ``helm-controller`` and compared with the live one
  (``gitsail.diff``: normalized, Secrets masked): ``created`` or ``drifted`` ``ObjectChange``s;
  an object of the latest release's manifest that the render no longer has and that still
  exists is ``deleted``.

Errors that stop the comparison (no chart artifact, an unreachable URL, a render or values
error) are ``InspectError``: the CLI exits 2 with the message (which never holds a value
read from a Secret).
"""

from __future__ import annotations

import asyncio
import copy
import tempfile
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitsail.diff import diff_resource
from gitsail.kinds import helm_postrender
from gitsail.kinds.flux_helmrelease import HelmRelease, post_render_config
from gitsail.kinds.flux_helmrelease_chart import FIELD_MANAGER
from gitsail.kinds.flux_helmrelease_values import ValuesError, compose_values
from gitsail.kinds.flux_inspect import (
    _ABSENT,
    CREATED,
    DELETED,
    DRIFTED,
    FAILED,
    FieldChange,
    ObjectChange,
    field_changes,
    render_changes,
)
from gitsail.kinds.flux_source_artifact import extract_source_artifact, read_source_artifact
from gitsail.kinds.helm_storage import StorageError, latest_release
from gitsail.kinds.status import ReconcileError
from gitsail.kube import Kube, KubeError, NotFoundKind, service_account_user
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render import (
    HelmOptions,
    Renderer,
    RenderError,
    RenderOptions,
    dump_yaml,
    load_manifests,
)
from gitsail.source.artifacts import ArtifactStore

__all__ = [
    "MASK",
    "InspectError",
    "ReleaseDiff",
    "compare_release",
    "mask_fields",
    "render_release_diff",
    "secret_paths",
    "values_changes",
]

MASK = "*** (from a Secret)"
_HOOK = "helm.sh/hook"


class InspectError(Exception):
    """The comparison could not be made; the message never holds a Secret's value."""


@dataclass(frozen=True)
class ReleaseDiff:
    """The values section and the objects of ``diff helmrelease``."""

    values: tuple[FieldChange, ...] = ()
    objects: tuple[ObjectChange, ...] = ()
    notes: tuple[str, ...] = field(default=())  # e.g. "no release in storage yet"

    @property
    def differs(self) -> bool:
        return bool(self.values or self.objects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": [c.to_dict() for c in self.values],
            "objects": [c.to_dict() for c in self.objects],
        }


def render_release_diff(found: ReleaseDiff) -> str:
    """The human form: a ``values`` section (each field as ``render_changes`` shows an
    object's), then the objects as ``flux diff`` prints them."""
    out = ""
    if found.values:
        fields = render_changes([ObjectChange("values", DRIFTED, found.values)])
        out = "values\n" + fields.split("\n", 1)[1]
    return out + render_changes(found.objects)


# -- values -----------------------------------------------------------------------------------

Path_ = tuple[str, ...]


def _leaves(value: Any, prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every leaf (a non-map, or an empty map) with its path; lists are leaves as Helm merges
    them (replaced whole)."""
    if isinstance(value, Mapping) and value:
        for key in sorted(value, key=str):
            yield from _leaves(value[key], (*prefix, str(key)))
    else:
        yield prefix, value


def _dotted(path: Path_) -> str:
    return ".".join(path) if path else "(root)"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def secret_paths(from_secrets: Mapping[str, Any]) -> set[Path_]:
    """The leaf paths of the values the Secret ``valuesFrom`` items set."""
    return {path for path, _ in _leaves(from_secrets)}


def _holds_secret(value: Any, strings: AbstractSet[str]) -> bool:
    return any(secret in text for text in _strings(value) for secret in strings)


def _masked(path: Path_, value: Any, paths: AbstractSet[Path_], strings: AbstractSet[str]) -> Any:
    if value is _ABSENT:
        return value
    if any(path[: len(p)] == p or p[: len(path)] == path for p in paths):
        return MASK
    return MASK if _holds_secret(value, strings) else value


def mask_fields(
    changes: tuple[FieldChange, ...], strings: AbstractSet[str]
) -> tuple[FieldChange, ...]:
    """An object's changed fields with every value holding a Secret's string masked (a
    chart may copy a value from a Secret into a ConfigMap, an annotation, an argument)."""
    out = []
    for change in changes:
        live = MASK if _holds_secret(change.live, strings) else change.live
        desired = MASK if _holds_secret(change.desired, strings) else change.desired
        if live == MASK and desired == MASK:
            desired = MASK + " (changed)"
        out.append(FieldChange(change.path, live, desired))
    return tuple(out)


def _at(values: Any, path: Path_) -> Any:
    for token in path:
        if not isinstance(values, Mapping) or token not in values:
            return None
        values = values[token]
    return values


def values_changes(
    desired: Mapping[str, Any],
    released: Mapping[str, Any],
    *,
    paths: AbstractSet[Path_] = frozenset(),
    strings: AbstractSet[str] = frozenset(),
) -> tuple[FieldChange, ...]:
    """The leaves that differ between the released values and the desired ones (``live`` is
    the release's), masked where they come from a Secret (``paths``, ``strings``)."""
    have = dict(_leaves(released)) if released else {}
    want = dict(_leaves(desired)) if desired else {}
    out: list[FieldChange] = []
    for path in sorted(set(have) | set(want)):
        live, wish = have.get(path, _ABSENT), want.get(path, _ABSENT)
        if live is not _ABSENT and wish is not _ABSENT and live == wish:
            continue
        live_shown = _masked(path, live, paths, strings)
        wish_shown = _masked(path, wish, paths, strings)
        if live_shown == MASK and wish_shown == MASK:
            wish_shown = MASK + " (changed)"
        out.append(FieldChange(_dotted(path), live_shown, wish_shown))
    return tuple(out)


async def _composed(
    kube: Kube, hr: HelmRelease, policy: Policy
) -> tuple[dict[str, Any], set[Path_], set[str]]:
    async def read(kind: str, name: str) -> Mapping[str, Any] | None:
        try:
            return await kube.get("v1", kind, name, hr.namespace)
        except KubeError as exc:
            raise InspectError(f"could not read {kind} '{name}': {exc}") from exc

    strings: set[str] = set()
    try:
        values = await compose_values(
            hr.values_from, hr.values(), read, policy=policy, secrets=strings
        )
        secret_refs = tuple(r for r in hr.values_from if r.kind == "Secret")
        from_secrets = await compose_values(secret_refs, {}, read, policy=policy)
    except ValuesError as exc:
        raise InspectError(str(exc)) from exc
    return values, secret_paths(from_secrets), {s for s in strings if s}


# -- objects ----------------------------------------------------------------------------------


def _ref(key: ResourceKey) -> str:
    return f"{key.kind}/{key.namespace}/{key.name}" if key.namespace else f"{key.kind}/{key.name}"


async def _render(
    kube: Kube,
    hr: HelmRelease,
    values: Mapping[str, Any],
    *,
    renderer: Renderer,
    store: ArtifactStore | None,
    policy: Policy,
    work: Path,
) -> list[Obj]:
    """The objects the release would install now: render, drop hooks, post-render."""
    try:
        source = await read_source_artifact(kube, hr.chart_object)
        target = work / "chart"
        await extract_source_artifact(source, target, store=store, policy=policy)
    except ReconcileError as exc:
        hint = (
            ""
            if store is not None
            else " (the chart is downloaded from the source's status.artifact.url: run the diff "
            "where the controller's artifact server is reachable)"
        )
        raise InspectError(f"the chart cannot be read: {exc.message}{hint}") from exc
    charts = [p for p in target.iterdir() if p.is_dir() and (p / "Chart.yaml").is_file()]
    if len(charts) != 1:
        raise InspectError("the chart package does not hold exactly one chart directory")
    chart_dir = charts[0]
    options = HelmOptions(
        release_name=hr.release_name,
        values_object=dict(values),
        namespace=hr.target_namespace,
        skip_crds=True,  # a release's manifest never holds crds/
        skip_schema_validation=hr.upgrade.disable_schema_validation,
    )
    artifact = Artifact(
        url=source.url,
        revision=source.revision,
        requested=source.revision,
        root=target,
        path=chart_dir.name,
        digest="",  # never cached: the values hold what a Secret says
        kind="helm",
        chart=chart_dir.name,
    )
    try:
        version = ""
        try:
            info = await kube.server_version()
            version = str(info.get("gitVersion") or "")
        except (KubeError, AttributeError):
            version = ""
        rendered = await renderer.render(
            artifact,
            RenderOptions(app_name=hr.release_name, namespace=hr.target_namespace, helm=options),
            kube_version=version,
        )
    except RenderError as exc:
        raise InspectError(f"helm template failed: {exc}") from exc
    objects = [
        copy.deepcopy(o)
        for o in rendered.manifests
        if _HOOK not in ((o.get("metadata") or {}).get("annotations") or {})
    ]
    config = {
        **post_render_config(hr),
        "owner": {
            helm_postrender.NAME_LABEL: hr.name,
            helm_postrender.NAMESPACE_LABEL: hr.namespace,
        },
        "max_bytes": policy.render_output_bytes,
        "timeout": policy.render_timeout,
    }
    if config.get("steps"):
        config["kustomize"] = str(renderer.binary("kustomize"))
    try:
        text = await asyncio.to_thread(
            helm_postrender.post_render, dump_yaml(objects) if objects else "", config
        )
        return load_manifests(text, source="post-rendered manifests", policy=policy)
    except (helm_postrender.PostRenderError, RenderError) as exc:
        raise InspectError(f"post-render failed: {exc}") from exc


async def _prepared(kube: Kube, obj: Obj, namespace: str) -> Obj:
    prepared = copy.deepcopy(obj)
    meta = prepared.setdefault("metadata", {})
    try:
        info = await kube.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        namespaced: bool | None = info.namespaced
    except NotFoundKind:
        namespaced = None
    if namespaced:
        meta["namespace"] = meta.get("namespace") or namespace
    elif namespaced is False:
        meta.pop("namespace", None)
    return prepared


async def _read(kube: Kube, api_version: str, key: ResourceKey) -> Obj | None:
    try:
        return await kube.get(api_version, key.kind, key.name, key.namespace or None)
    except NotFoundKind:
        return None


async def compare_release(
    kube: Kube,
    hr: HelmRelease,
    *,
    renderer: Renderer,
    store: ArtifactStore | None = None,
    policy: Policy = DEFAULT_POLICY,
    advance: Callable[[], None] = lambda: None,
) -> ReleaseDiff:
    """What reconciling ``hr`` now would change (see the module docstring). ``kube`` acts
    as the release's service account when it names one, as the reconciler does."""
    target = (
        kube
        if not hr.service_account_name
        else kube.impersonating(service_account_user(hr.namespace, hr.service_account_name))
    )
    values, paths, strings = await _composed(kube, hr, policy)
    try:
        latest = await latest_release(target, hr.storage_namespace, hr.release_name, policy)
    except StorageError as exc:
        raise InspectError(f"the release in storage cannot be read: {exc}") from exc
    notes: list[str] = []
    if latest is None:
        notes.append(
            f"release {hr.storage_namespace}/{hr.release_name} is not installed yet: "
            "every object would be created"
        )
    if latest is not None:  # what a Secret gave the last release is as secret
        for path in paths:
            strings.update(s for s in _strings(_at(latest.config, path)) if s)
    value_diff = values_changes(
        values, latest.config if latest is not None else {}, paths=paths, strings=strings
    )
    with tempfile.TemporaryDirectory(prefix="gitsail-hr-diff-") as tmp:
        objects = await _render(
            kube, hr, values, renderer=renderer, store=store, policy=policy, work=Path(tmp)
        )
    changes: list[ObjectChange] = []
    rendered: set[ResourceKey] = set()
    for obj in objects:
        prepared = await _prepared(target, obj, hr.target_namespace)
        key = ResourceKey.of(prepared)
        rendered.add(key)
        api_version = str(prepared.get("apiVersion", ""))
        live = await _read(target, api_version, key)
        advance()
        try:
            predicted = await target.apply(
                prepared, field_manager=FIELD_MANAGER, force=True, dry_run=True
            )
        except KubeError as exc:
            if live is None:  # e.g. its namespace or CRD comes with the same release
                changes.append(ObjectChange(_ref(key), CREATED))
            else:
                changes.append(ObjectChange(_ref(key), FAILED, message=exc.message))
            continue
        if live is None:
            changes.append(ObjectChange(_ref(key), CREATED))
            continue
        compared = diff_resource(predicted, live)
        if not compared.synced:
            fields = mask_fields(field_changes(compared), strings)
            changes.append(ObjectChange(_ref(key), DRIFTED, fields))
    if latest is not None and latest.manifest.strip():
        try:
            previous = load_manifests(latest.manifest, source="release manifest", policy=policy)
        except RenderError as exc:
            raise InspectError(f"the release's manifest cannot be read: {exc}") from exc
        for obj in previous:
            prepared = await _prepared(target, obj, hr.target_namespace)
            key = ResourceKey.of(prepared)
            if key in rendered:
                continue
            if await _read(target, str(prepared.get("apiVersion", "")), key) is not None:
                changes.append(ObjectChange(_ref(key), DELETED))
    return ReleaseDiff(value_diff, tuple(changes), tuple(notes))
