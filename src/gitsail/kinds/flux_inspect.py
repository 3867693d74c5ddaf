"""What ``gitsail diff`` and ``gitsail tree`` report for a Flux Kustomization, without the CLI.

- ``compare_build``: what applying a build would change, found by server-side dry runs
  (``dryRun=All``: nothing is written) as kustomize-controller's field manager, compared with
  the live objects (``gitsail.diff``: normalized, Secrets masked): ``ObjectChange`` records
  (``created``, ``drifted`` with its ``FieldChange``s, ``deleted``, ``failed``), printed by
  ``render_changes`` the way ``flux diff`` prints them;
- ``managed_tree``: the objects a Kustomization applied (its inventory), nested
  Kustomizations and Argo CD Applications expanded (``TreeNode``, Flux's ``tree -o json``
  shape).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from gitsail.diff import ResourceDiff, diff_resource
from gitsail.diff.pointer import parse_pointer
from gitsail.diff.sealed import SealedOpener
from gitsail.kinds.flux_kustomization import API_VERSIONS, Kustomization
from gitsail.kinds.flux_kustomization_reconciler import FIELD_MANAGER as RECONCILER_FIELD_MANAGER
from gitsail.kinds.flux_kustomization_reconciler import if_not_present, prune_disabled, skipped
from gitsail.kube import Kube, KubeError, NotFoundKind
from gitsail.model import Obj, ResourceKey
from gitsail.sync import FluxLabels, Inventory

__all__ = [
    "CREATED",
    "DELETED",
    "DRIFTED",
    "FAILED",
    "FieldChange",
    "ObjectChange",
    "TreeNode",
    "compare_build",
    "field_changes",
    "managed_tree",
    "render_changes",
]

KUSTOMIZATION_API_VERSION = API_VERSIONS[0]

CREATED, DRIFTED, DELETED, FAILED = "created", "drifted", "deleted", "failed"
_ABSENT: Any = object()  # a field on one side only


@dataclass(frozen=True)
class FieldChange:
    """One differing field: its path (``data.key``, ``spec.containers[0].image``) and the
    live and desired values (``_ABSENT`` on the side that lacks it; Secrets are masked)."""

    path: str
    live: Any
    desired: Any

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.live is not _ABSENT:
            out["live"] = self.live
        if self.desired is not _ABSENT:
            out["desired"] = self.desired
        return out


@dataclass(frozen=True)
class ObjectChange:
    """What applying the build would do to one object: ``created``, ``drifted`` (with the
    fields), ``deleted`` (pruned from the inventory) or ``failed`` (its dry run failed)."""

    object: str  # Kind/namespace/name, as flux prints it
    action: str
    fields: tuple[FieldChange, ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object, "action": self.action}
        if self.fields:
            out["fields"] = [f.to_dict() for f in self.fields]
        if self.message:
            out["message"] = self.message
        return out


def _ref(key: ResourceKey) -> str:
    return f"{key.kind}/{key.namespace}/{key.name}" if key.namespace else f"{key.kind}/{key.name}"


def _at(doc: Any, tokens: tuple[str, ...]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return _ABSENT
    return doc


def _dotted(tokens: tuple[str, ...]) -> str:
    out = ""
    for token in tokens:
        if token.isdigit():
            out += f"[{token}]"
        else:
            out += ("." if out else "") + token
    return out


def field_changes(diff: ResourceDiff) -> tuple[FieldChange, ...]:
    """The changed fields of a compared (normalized, redacted) object pair."""
    out = []
    for pointer in diff.changed_paths:
        tokens = parse_pointer(pointer)
        out.append(FieldChange(_dotted(tokens), _at(diff.live, tokens), _at(diff.desired, tokens)))
    return tuple(out)


async def _prepared(kube: Kube, obj: Obj, namespace: str, owner: FluxLabels) -> Obj:
    """The object as the sync stage applies it: namespaced kinds in the target namespace
    unless they name one, cluster-scoped ones without, and the owner's labels."""
    prepared = copy.deepcopy(obj)
    meta = prepared.setdefault("metadata", {})
    try:
        info = await kube.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        namespaced: bool | None = info.namespaced
    except NotFoundKind:
        namespaced = None  # a kind the same build defines: as the manifest says
    if namespaced:
        meta["namespace"] = meta.get("namespace") or namespace
    elif namespaced is False:
        meta.pop("namespace", None)
    return owner.mark(prepared)


async def _read(kube: Kube, api_version: str, key: ResourceKey) -> Obj | None:
    try:
        return await kube.get(api_version, key.kind, key.name, key.namespace or None)
    except NotFoundKind:
        return None


async def compare_build(
    kube: Kube,
    ks: Kustomization,
    inventory: Inventory,
    objects: Sequence[Obj],
    *,
    advance: Callable[[], None] = lambda: None,
    open_sealed: SealedOpener | None = None,
) -> list[ObjectChange]:
    """What applying ``objects`` (a build of ``ks``) would change, found by server-side
    dry runs (``dryRun=All``: nothing is written) as kustomize-controller's field manager.

    Objects the reconciler skips (``…/reconcile: disabled``, ``…/ssa: Ignore``, an existing
    ``…/ssa: IfNotPresent``) are not compared; inventory entries the build no longer has
    are ``deleted`` when ``spec.prune`` is on, they exist and are not ``…/prune: disabled``.
    ``advance`` is called once per object (a progress bar). With ``open_sealed`` (the
    Sealed Secrets keys, as ``app diff`` gets them) a SealedSecret re-sealed with the same
    plaintext is not a change (``gitsail.diff.sealed``); SealedSecret ciphertext is masked
    in the field changes either way (``gitsail.diff.redact``)."""
    owner = FluxLabels(ks.name, ks.namespace)
    target_namespace = ks.render.target_namespace or ""
    changes: list[ObjectChange] = []
    built: set[ResourceKey] = set()
    for obj in objects:
        prepared = await _prepared(kube, obj, target_namespace, owner)
        key = ResourceKey.of(prepared)
        built.add(key)
        api_version = str(prepared.get("apiVersion", ""))
        live = await _read(kube, api_version, key)
        advance()
        if skipped(prepared) or skipped(live) or (live is not None and if_not_present(prepared)):
            continue
        try:
            predicted = await kube.apply(
                prepared, field_manager=RECONCILER_FIELD_MANAGER, force=True, dry_run=True
            )
        except KubeError as exc:
            if live is None:  # e.g. its namespace or CRD comes with the same apply
                changes.append(ObjectChange(_ref(key), CREATED))
            else:
                changes.append(ObjectChange(_ref(key), FAILED, message=exc.message))
            continue
        if live is None:
            changes.append(ObjectChange(_ref(key), CREATED))
            continue
        compared = diff_resource(predicted, live, open_sealed=open_sealed)
        if not compared.synced:
            changes.append(ObjectChange(_ref(key), DRIFTED, field_changes(compared)))
    if ks.sync.prune:
        for entry in inventory:
            if entry.key in built:
                continue
            live = await _read(kube, entry.api_version, entry.key)
            if live is not None and not prune_disabled(live):
                changes.append(ObjectChange(_ref(entry.key), DELETED))
    return changes


def _yaml_value(value: Any) -> list[str]:
    text: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=True)
    lines = text.rstrip("\n").splitlines()
    if lines and lines[-1] == "...":
        lines.pop()
    return lines


def render_changes(changes: Sequence[ObjectChange]) -> str:
    """Flux's human form: ``► Kind/ns/name drifted`` and each field as dyff shows it."""
    out: list[str] = []
    for change in changes:
        if change.action == FAILED:
            out.append(f"✗ {change.object} dry-run failed: {change.message}")
            continue
        out.append(f"► {change.object} {change.action}")
        for field in change.fields:
            out.append("")
            out.append(field.path)
            if field.live is _ABSENT:
                out.append("  + one entry added:")
                out.extend(f"    {line}" for line in _yaml_value(field.desired))
            elif field.desired is _ABSENT:
                out.append("  - one entry removed:")
                out.extend(f"    {line}" for line in _yaml_value(field.live))
            else:
                out.append("  ± value change")
                out.extend(f"    - {line}" for line in _yaml_value(field.live))
                out.extend(f"    + {line}" for line in _yaml_value(field.desired))
        if change.fields:
            out.append("")
    return "\n".join(out) + ("\n" if out else "")


# -- tree -------------------------------------------------------------------------------------

_FLUX_KS_GROUP = "kustomize.toolkit.fluxcd.io"
_ARGO_GROUP = "argoproj.io"


@dataclass(frozen=True)
class TreeNode:
    """An object and what it manages: a Kustomization's inventory, an Application's
    ``status.resources``; leaves have no children."""

    key: ResourceKey
    children: tuple[TreeNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Flux's ``tree -o json`` shape (``ObjMetadata``: Namespace, Name, GroupKind)."""
        out: dict[str, Any] = {
            "resource": {
                "Namespace": self.key.namespace,
                "Name": self.key.name,
                "GroupKind": {"Group": self.key.group, "Kind": self.key.kind},
            }
        }
        if self.children:
            out["resources"] = [c.to_dict() for c in self.children]
        return out

    def lines(self) -> list[str]:
        """The tree as flux prints it: ``├── `` / ``└── `` under the root's line."""
        out = [_ref(self.key)]
        for i, child in enumerate(self.children):
            last = i == len(self.children) - 1
            head, rest = ("└── ", "    ") if last else ("├── ", "│   ")
            sub = child.lines()
            out.append(head + sub[0])
            out.extend(rest + line for line in sub[1:])
        return out


async def managed_tree(
    kube: Kube, key: ResourceKey, seen: frozenset[ResourceKey] = frozenset()
) -> TreeNode:
    """``key`` with what it manages, recursively: Kustomizations by their ``status.inventory``,
    Argo CD Applications by their ``status.resources`` (beyond Flux). An object already on the
    path (a cycle), one that is gone, or one whose list is unreadable is a leaf."""
    if key in seen:
        return TreeNode(key)
    if (key.group, key.kind) == (_FLUX_KS_GROUP, "Kustomization"):
        api_version = KUSTOMIZATION_API_VERSION
    elif (key.group, key.kind) == (_ARGO_GROUP, "Application"):
        api_version = "argoproj.io/v1alpha1"
    else:
        return TreeNode(key)
    obj = await _read(kube, api_version, key)
    if obj is None:
        return TreeNode(key)
    status = obj.get("status") or {}
    keys: list[ResourceKey]
    try:
        if key.kind == "Kustomization":
            keys = [e.key for e in Inventory.from_flux(status.get("inventory"))]
        else:
            keys = [e.key for e in Inventory.from_argo(status.get("resources") or [])]
    except ValueError:
        return TreeNode(key)
    inner = seen | {key}
    children = [await managed_tree(kube, k, inner) for k in keys]
    return TreeNode(key, tuple(children))
