"""Server-side apply answers already known, so that they are not asked for again.

A dry-run apply of a manifest onto a live object has one answer while neither changes. The
comparison asks it for every object it diffs, the sync's validation asks it again before
applying, and after a sync the next comparison asks it of the object the apply just
returned. ``Predictions`` keeps the latest of those answers per object and field manager,
with what it answers for: the manifest's digest, the live object's version
(``live_version``) and the field validation:

- the comparison reuses an answer while the live object is the same version;
- the sync's validation skips the dry run whose answer is known: the server accepted that
  very apply onto that very object;
- a real apply records its result as the answer for the object it produced (applying the
  same manifest again, with the same manager, gives the same object), so the comparison
  after a sync needs no dry run for objects nobody else changed since.

Nothing is memoized against a missing object (a create): only the server can validate it.

Some answers need neither the server nor a memo (``applies_as_is``): a manifest that this
field manager applied, unchanged since, onto an object nobody changed since in any field of
it. A restarted controller knows no answers, and without this would dry-run every object
of every app to find them all in sync.
"""

from __future__ import annotations

from typing import Any

from gitsail import codec
from gitsail.diff.fields import covers, item_node
from gitsail.model import Obj

__all__ = ["Predictions", "applies_as_is", "live_version", "manifest_digest"]

DEFAULT_LIMIT = 50_000  # objects (one slot each)


def live_version(live: Obj | None) -> str:
    """What a dry-run answer depends on in the live object ("" for none).

    For kinds with ``metadata.generation`` that is the generation plus the rest of the
    metadata: status writes (which change the resourceVersion all the time) do not change
    what applying the manifest would produce, so the answer is reused across them. Other
    kinds use the resourceVersion.
    """
    meta = (live or {}).get("metadata") or {}
    if "generation" not in meta:
        return str(meta.get("resourceVersion", ""))
    stable = {k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")}
    return f"g{meta['generation']}:{codec.digest(stable)}"


def manifest_digest(obj: Obj) -> str:
    return codec.digest(obj)


class Predictions:
    """The latest dry-run answer per object and field manager: for one (manifest digest,
    live version, field validation), which a ``get`` must match. One slot per object, so
    what is kept is bounded by the objects managed, never by how often they changed (an
    answer for a live version that is gone is replaced by the next one); at most ``limit``
    slots (all forgotten at once when full: they are only a shortcut)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._answers: dict[tuple[str, str, str, str, str], tuple[str, str, str, Obj]] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._answers)

    def get(
        self, obj: Obj, live: Obj | None, *, field_manager: str, validation: str = "Strict"
    ) -> Obj | None:
        """The known answer of applying ``obj`` onto ``live``, or None."""
        version = live_version(live)
        if not version:
            return None
        slot = self._answers.get(_slot(obj, field_manager))
        if slot is None or slot[:3] != (manifest_digest(obj), version, validation):
            return None
        self.hits += 1
        return slot[3]

    def put(
        self,
        obj: Obj,
        live: Obj | None,
        answer: Obj,
        *,
        field_manager: str,
        validation: str = "Strict",
    ) -> None:
        """Remember ``answer`` (a dry run's, or a real apply's) for ``obj`` onto ``live``;
        not when ``applies_as_is`` answers it (callers ask that first): an object applied
        as it stands is then not held twice, once in the watch cache and once here."""
        version = live_version(live)
        if not version:
            return
        key = _slot(obj, field_manager)
        if applies_as_is(obj, live, field_manager=field_manager):
            self._answers.pop(key, None)
            return
        if key not in self._answers and len(self._answers) >= self.limit:
            self._answers.clear()
        self._answers[key] = (manifest_digest(obj), version, validation, answer)

    def applied(
        self, obj: Obj, written: Obj, *, field_manager: str, validation: str = "Strict"
    ) -> None:
        """``obj`` was applied and the server stored ``written``: applying it again onto
        ``written`` gives ``written``."""
        self.put(obj, written, written, field_manager=field_manager, validation=validation)


def _slot(obj: Obj, field_manager: str) -> tuple[str, str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        field_manager,
    )


def applies_as_is(manifest: Obj, live: Obj | None, *, field_manager: str) -> bool:
    """Whether a server-side apply of ``manifest`` by ``field_manager`` would leave ``live``
    as it is (but for ``managedFields``), so that ``live`` is the dry run's answer.

    True only when both hold, which is what an apply changes nothing under:

    - every value the manifest sets is the live value, read along the field set that
      ``field_manager``'s own apply owns in ``live`` (``managedFields``, the entry of that
      manager's ``Apply`` of the manifest's ``apiVersion``): scalars of the same type
      (``"500m"`` against ``0.5`` is not known equal: the server answers that); maps by key
      and lists item by item, in the same order and of the same length (an item someone
      else added is a difference), where the set owns their members one by one; exactly
      equal where it owns the whole value at once (an atomic map, struct or list: applied,
      it replaces the live value, so a key the manifest dropped would go); a map or list
      the set does not reach at all is not judged, nor is a ``null`` anywhere;
    - the manifest still sets every field of that set: an apply would release, and so
      remove, any field it no longer sets.

    A live object without such an entry (never applied by this manager, or applied for
    another apiVersion) is False: only the server can say.
    """
    if live is None or str(manifest.get("apiVersion") or "") != live.get("apiVersion"):
        return False
    entry = None
    for item in (live.get("metadata") or {}).get("managedFields") or ():
        if (
            isinstance(item, dict)
            and item.get("manager") == field_manager
            and item.get("operation") == "Apply"
            and not item.get("subresource")
        ):
            if entry is not None:
                return False  # two entries for one manager: not a shape to judge
            entry = item
    if entry is None or entry.get("apiVersion") != manifest.get("apiVersion"):
        return False
    if entry.get("fieldsType", "FieldsV1") != "FieldsV1":
        return False
    fields = entry.get("fieldsV1")
    if not isinstance(fields, dict):
        return False
    # Object metadata is never atomic, and its name and namespace are no owned fields: a
    # manifest without labels or annotations has no ``f:metadata`` in its set.
    root = fields if "f:metadata" in fields else {**fields, "f:metadata": {".": {}}}
    return _within(manifest, live, root) and covers(manifest, fields, live)


def _within(want: Any, have: Any, owned: Any) -> bool:
    """Whether ``want`` (the manifest at some path) is in ``have`` (the live value there),
    read along ``owned``, the manager's field set node at that path (see above)."""
    if want is None:
        return False
    if not isinstance(want, dict | list):
        return type(want) is type(have) and want == have
    if not isinstance(owned, dict) or not owned:
        return _same(want, have)  # owned whole (a leaf), or not reached: exactly equal
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        for key, value in want.items():
            if key not in have:
                return False
            child = owned.get("f:" + key)
            if child is None and isinstance(value, dict | list):
                return False  # a map or list of the manifest that the set does not reach
            if not _within(value, have[key], child):
                return False
        return True
    if not isinstance(have, list) or len(want) != len(have):
        return False
    for index, (item, live_item) in enumerate(zip(want, have, strict=True)):
        child = item_node(owned, index, live_item)
        if child is None and isinstance(item, dict | list):
            return False
        if not _within(item, live_item, child):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equal, with scalars of the same type (``1`` is not ``1.0`` nor ``True``)."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return a is not None and type(a) is type(b) and a == b
