"""Drift detection of a HelmRelease: the release's manifest against the cluster.

As helm-controller does (``driftDetection``), when the release in storage is up to date its
manifest (what helm applied, post-rendered) is compared with the cluster through a
server-side dry-run apply of each object with the field manager ``helm-controller``: an
object whose dry-run result differs from the live object (or that is gone) has drifted.
``metadata`` fields the server manages and ``status`` are not compared; ``ignore`` rules
remove JSON pointers (RFC 6901) from both sides first, for the objects their ``target``
selects (its fields are regular expressions, ``labelSelector``/``annotationSelector`` label
selectors); an object labelled or annotated ``helm.toolkit.fluxcd.io/driftDetection:
disabled`` is skipped.

With ``mode: enabled`` the drifted objects are corrected by a server-side apply of the
manifest's object without its ignored paths (forced, field manager ``helm-controller``), as
Flux corrects them; with
``mode: warn`` they are only reported. Hooks are not part of a release's manifest and are
never compared.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitsail.kinds.flux_helmrelease import DriftIgnore
from gitsail.kinds.records import PatchTarget
from gitsail.kinds.status import Condition
from gitsail.kube import Kube, KubeError, NotFoundKind
from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.render import load_manifests

__all__ = [
    "DISABLED_KEY",
    "DRIFTED",
    "Drift",
    "ReleaseManifests",
    "detect_drift",
    "drift_condition",
]

DISABLED_KEY = "helm.toolkit.fluxcd.io/driftDetection"
DRIFTED, DRIFT_DETECTED, NO_DRIFT = "Drifted", "DriftDetected", "NoDriftDetected"
_MANIFESTS_KEPT = 64
_SERVER_FIELDS = (
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
)


@dataclass(frozen=True)
class Drift:
    """What a comparison found (and, when correcting, did)."""

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    corrected: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # "Kind/ns/name: error"
    objects: tuple[tuple[str, str, str, str | None], ...] = ()  # (apiVersion, kind, name, ns)

    @property
    def drifted(self) -> bool:
        return bool(self.changed or self.missing)

    def summary(self) -> str:
        parts = [f"{o} changed" for o in self.changed] + [f"{o} removed" for o in self.missing]
        return ", ".join(parts)


def _shown(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return (
        f"{obj.get('kind')}/{ns}/{meta.get('name')}"
        if ns
        else f"{obj.get('kind')}/{meta.get('name')}"
    )


def _disabled(obj: Obj | None) -> bool:
    meta = (obj or {}).get("metadata") or {}
    return any(
        str((meta.get(field) or {}).get(DISABLED_KEY, "")).lower() == "disabled"
        for field in ("labels", "annotations")
    )


def _normal(obj: Obj) -> Obj:
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    out["metadata"] = meta
    return out


def _selector_matches(selector: str, values: Mapping[str, Any]) -> bool:
    """A label selector (``a=b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x)``)."""
    for term in re.split(r",(?![^()]*\))", selector):
        term = term.strip()
        if not term:
            continue
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if match:
            key, op, items = match.groups()
            wanted = {i.strip() for i in items.split(",")}
            present = key in values and str(values[key]) in wanted
            if (op == "in") != present:
                return False
            continue
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term)
        if match:
            key, op, value = match.groups()
            equal = key in values and str(values[key]) == value
            if (op == "!=") == equal:
                return False
            continue
        if term.startswith("!"):
            if term[1:] in values:
                return False
        elif term not in values:
            return False
    return True


def _targets(target: PatchTarget | None, obj: Obj) -> bool:
    if target is None:
        return True
    api_version = str(obj.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    for pattern, value in (
        (target.group, group),
        (target.version, version),
        (target.kind, obj.get("kind")),
        (target.name, meta.get("name")),
        (target.namespace, meta.get("namespace")),
    ):
        if pattern is not None and not re.fullmatch(pattern, str(value or "")):
            return False
    if target.label_selector and not _selector_matches(
        target.label_selector, meta.get("labels") or {}
    ):
        return False
    return not (
        target.annotation_selector
        and not _selector_matches(target.annotation_selector, meta.get("annotations") or {})
    )


def _remove(obj: Any, pointer: str) -> None:
    """Remove the value at a JSON pointer, if it is there."""
    if pointer == "":
        return
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = obj
    for part in parts[:-1]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    last = parts[-1] if parts else ""
    if isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node.pop(int(last))


def _ignored(rules: Sequence[DriftIgnore], obj: Obj) -> list[str] | None:
    """The pointers to ignore for ``obj``; None when the whole object is ignored."""
    pointers: list[str] = []
    for rule in rules:
        if _targets(rule.target, obj):
            if "" in rule.paths:
                return None
            pointers += rule.paths
    return pointers


async def detect_drift(
    kube: Kube,
    objects: Sequence[Obj],
    namespace: str,
    rules: Sequence[DriftIgnore],
    *,
    correct: bool,
    field_manager: str,
) -> Drift:
    """Compare (and with ``correct``, heal) ``objects`` of a release made in ``namespace``."""
    changed: list[str] = []
    missing: list[str] = []
    corrected: list[str] = []
    failed: list[str] = []
    seen: list[tuple[str, str, str, str | None]] = []
    await kube.discover()
    for original in objects:
        obj = copy.deepcopy(original)
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        meta = obj.setdefault("metadata", {})
        try:
            info = kube.mapper.resource_for(api_version, kind)
        except NotFoundKind:
            failed.append(f"{_shown(obj)}: {api_version} {kind} is not served")
            continue
        if info.namespaced and not meta.get("namespace"):
            meta["namespace"] = namespace
        elif not info.namespaced:
            meta.pop("namespace", None)
        seen.append((api_version, kind, str(meta.get("name")), meta.get("namespace")))
        if _disabled(obj):
            continue
        try:
            live = await kube.get(api_version, kind, str(meta.get("name")), meta.get("namespace"))
            if _disabled(live):
                continue
            pointers = _ignored(rules, live or obj)
            if pointers is None:
                continue
            for pointer in pointers:  # never compared, never corrected
                _remove(obj, pointer)
            if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
                missing.append(_shown(obj))  # a terminating one is recreated once it is gone
            else:
                dry = await kube.apply(obj, field_manager=field_manager, force=True, dry_run=True)
                want, have = _normal(dry), _normal(live)
                for pointer in pointers:
                    _remove(want, pointer)  # the live value the dry run kept
                    _remove(have, pointer)
                if want == have:
                    continue
                changed.append(_shown(obj))
            if correct:
                await kube.apply(obj, field_manager=field_manager, force=True)
                corrected.append(_shown(obj))
        except KubeError as exc:
            failed.append(f"{_shown(obj)}: {exc}")
    return Drift(tuple(changed), tuple(missing), tuple(corrected), tuple(failed), tuple(seen))


class ReleaseManifests:
    """The objects of release manifests, parsed once per release digest (a small LRU)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._parsed: dict[str, list[Obj]] = {}

    def objects(self, digest: str, manifest: str) -> list[Obj]:
        """RenderError when the manifest cannot be read."""
        parsed = self._parsed.pop(digest, None)
        if parsed is None:
            parsed = load_manifests(manifest, source="release manifest", policy=self.policy)
        self._parsed[digest] = parsed
        while len(self._parsed) > _MANIFESTS_KEPT:
            self._parsed.pop(next(iter(self._parsed)))
        return parsed


def drift_condition(
    drift: Drift, release: str, corrected: bool, generation: int
) -> tuple[Condition, tuple[str, str, str] | None]:
    """The ``Drifted`` condition after a comparison of ``release`` (``ns/name.vN``), and the
    Event (type, reason, message) to record, if any."""
    if drift.failed:
        message = f"Drift detection of release {release} failed: {'; '.join(drift.failed)}"
        reason = "DriftDetectionFailed"
        return Condition(DRIFTED, "True", reason, message, generation), (
            "Warning",
            reason,
            message,
        )
    if drift.drifted and corrected:
        # An Event says what was healed; the object is no longer drifted.
        message = f"Cluster state of release {release} has been corrected: {drift.summary()}"
        return Condition(DRIFTED, "False", NO_DRIFT, "No drift detected", generation), (
            "Normal",
            "DriftCorrected",
            message,
        )
    if drift.drifted:
        message = (
            f"Cluster state of release {release} has drifted from the desired state: "
            f"{drift.summary()}"
        )
        return Condition(DRIFTED, "True", DRIFT_DETECTED, message, generation), (
            "Warning",
            DRIFT_DETECTED,
            message,
        )
    return Condition(DRIFTED, "False", NO_DRIFT, "No drift detected", generation), None
