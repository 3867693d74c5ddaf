"""The inventory: which objects a delivery applied, so the next sync knows what to prune.

An ``Inventory`` is an ordered set of entries, each an object's identity (``ResourceKey``:
group, kind, namespace, name) and the API version it was applied with (``v``). Identity
ignores the version, as the API server does (``apps/v1`` and ``apps/v1beta2`` name the
same Deployment), so a version change never makes an object stale.

The prune set of a sync is ``last.diff(new)``: what the last sync recorded and the new
desired set no longer holds. Only those entries are ever pruned, and only when the live
object still carries the delivery's mark (``gitsail.sync.ownership``).

Two stored forms, both read and written here:

- Argo CD's ``status.resources`` rows: ``{group, version, kind, namespace, name, ...}``
  (the other fields of a row, sync and health status, belong to the Application's status
  writer and are ignored on reading).
- Flux's ``status.inventory``: ``{"entries": [{"id": ..., "v": ...}]}`` as
  kustomize-controller writes it. ``id`` is ``<namespace>_<name>_<group>_<kind>`` (empty
  namespace for cluster-scoped objects, empty group for the core group:
  ``_podinfo__Namespace``); in RBAC object names (``system:auth-delegator``) a ``:`` is
  written ``__``. ``v`` is the version alone (``v1``), without the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gitsail.model import Obj, ResourceKey, split_api_version

__all__ = ["Inventory", "InventoryEntry", "InventoryError"]

_SEPARATOR = "_"
_COLON = "__"
_RBAC_GROUP = "rbac.authorization.k8s.io"
_RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


class InventoryError(ValueError):
    """A stored inventory could not be read; the message names the entry."""


@dataclass(frozen=True, order=True)
class InventoryEntry:
    key: ResourceKey
    version: str  # the API version without its group: "v1", "v1beta2"

    @property
    def api_version(self) -> str:
        return f"{self.key.group}/{self.version}" if self.key.group else self.version

    @classmethod
    def of(cls, obj: Obj) -> InventoryEntry:
        """The entry for an object (its namespace as given: prepare objects first)."""
        _, version = split_api_version(str(obj.get("apiVersion", "")))
        return cls(ResourceKey.of(obj), version)

    # -- Flux: id and v --------------------------------------------------------------

    @property
    def flux_id(self) -> str:
        name = self.key.name
        if self.key.group == _RBAC_GROUP and self.key.kind in _RBAC_KINDS:
            name = name.replace(":", _COLON)
        return _SEPARATOR.join((self.key.namespace, name, self.key.group, self.key.kind))

    def to_flux(self) -> dict[str, str]:
        return {"id": self.flux_id, "v": self.version}

    @classmethod
    def from_flux(cls, ref: Mapping[str, Any]) -> InventoryEntry:
        """From one ``status.inventory.entries`` item; InventoryError if its id is not
        ``<namespace>_<name>_<group>_<kind>``."""
        raw_id = ref.get("id")
        version = ref.get("v")
        if not isinstance(raw_id, str) or not isinstance(version, str):
            raise InventoryError(f"inventory entry {dict(ref)!r}: needs string 'id' and 'v'")
        namespace, sep, rest = raw_id.partition(_SEPARATOR)
        name_group, sep2, kind = rest.rpartition(_SEPARATOR)
        name, sep3, group = name_group.rpartition(_SEPARATOR)
        name = name.replace(_COLON, ":")
        if not (sep and sep2 and sep3) or not name or not kind or _SEPARATOR in name:
            raise InventoryError(
                f"inventory entry id {raw_id!r} is not <namespace>_<name>_<group>_<kind>"
            )
        return cls(ResourceKey(group, kind, namespace, name), version)

    # -- Argo CD: status.resources rows ------------------------------------------------

    def to_argo(self) -> dict[str, str]:
        return {
            "group": self.key.group,
            "version": self.version,
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
        }

    @classmethod
    def from_argo(cls, row: Mapping[str, Any]) -> InventoryEntry:
        key = ResourceKey.from_ref(row)
        if not key.kind or not key.name:
            raise InventoryError(f"status.resources row {dict(row)!r}: needs kind and name")
        return cls(key, str(row.get("version") or ""))


@dataclass(frozen=True)
class Inventory:
    """An ordered set of entries, at most one per ``ResourceKey`` (the first one given)."""

    entries: tuple[InventoryEntry, ...] = ()

    def __post_init__(self) -> None:
        seen: set[ResourceKey] = set()
        unique = []
        for entry in self.entries:
            if entry.key not in seen:
                seen.add(entry.key)
                unique.append(entry)
        if len(unique) != len(self.entries):
            object.__setattr__(self, "entries", tuple(unique))

    @classmethod
    def of(cls, objects: Iterable[Obj]) -> Inventory:
        return cls(tuple(InventoryEntry.of(o) for o in objects))

    def __iter__(self) -> Iterator[InventoryEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> frozenset[ResourceKey]:
        return frozenset(e.key for e in self.entries)

    def get(self, key: ResourceKey) -> InventoryEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def diff(self, other: Inventory) -> Inventory:
        """The stale entries: in this (older) inventory and not in ``other``, by identity."""
        keep = other.keys()
        return Inventory(tuple(e for e in self.entries if e.key not in keep))

    def merge(self, other: Inventory) -> Inventory:
        """This inventory plus ``other``'s entries it does not hold (this one's win)."""
        return Inventory(self.entries + other.entries)

    def without(self, keys: Iterable[ResourceKey]) -> Inventory:
        drop = frozenset(keys)
        return Inventory(tuple(e for e in self.entries if e.key not in drop))

    # -- codecs ------------------------------------------------------------------------

    def to_flux(self) -> dict[str, list[dict[str, str]]]:
        """``status.inventory`` as kustomize-controller writes it."""
        return {"entries": [e.to_flux() for e in self.entries]}

    @classmethod
    def from_flux(cls, inventory: Mapping[str, Any] | None) -> Inventory:
        """From ``status.inventory`` (None or no entries: empty)."""
        entries = (inventory or {}).get("entries") or []
        if not isinstance(entries, list):
            raise InventoryError("status.inventory.entries is not a list")
        return cls(tuple(InventoryEntry.from_flux(e) for e in entries if isinstance(e, dict)))

    def to_argo(self) -> list[dict[str, str]]:
        """The identity part of Argo CD ``status.resources`` rows."""
        return [e.to_argo() for e in self.entries]

    @classmethod
    def from_argo(cls, rows: Iterable[Mapping[str, Any]] | None) -> Inventory:
        """From ``status.resources``; rows without a kind or name are skipped (Argo CD
        never writes them, and an entry without a name could not be pruned anyway)."""
        entries = []
        for row in rows or []:
            if isinstance(row, Mapping):
                try:
                    entries.append(InventoryEntry.from_argo(row))
                except InventoryError:
                    continue
        return cls(tuple(entries))
