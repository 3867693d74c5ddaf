"""``WrittenVersions``: the resourceVersion at which this client's last write left an object.

A controller reads its own objects from a watch cache, but must never act on a copy older
than its own last write to it (an operation it already cleared, run again; a status written
over). Knowing the version its last write produced, it can tell: a cached copy at exactly
that version holds the write; any other copy (older than the write, or newer because
someone else wrote: the watch brings that change, and another reconcile with it), and any
copy of an object it has not written since ``track`` (or ``clear``: a replica taking over
a shard cannot know what the last owner wrote), is read again from the server. Only
equality is used, as resourceVersions are opaque strings.

Only the kinds asked for are recorded (``track``), so the table holds one short entry per
object of those kinds written since the start. A write in flight, or one whose outcome is
not known (it failed, maybe after it reached the server), leaves a mark that no version
equals, until the next write that succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["WrittenVersions"]

# The mark of a write whose outcome is unknown: no resourceVersion is empty.
_UNKNOWN = ""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class WrittenVersions:
    """The version of the last write per object of the tracked kinds (see the module)."""

    def __init__(self) -> None:
        self._kinds: set[tuple[str, str]] = set()
        self._versions: dict[tuple[str, str, str, str], str] = {}

    def track(self, api_version: str, kind: str) -> None:
        """Record the writes to objects of this kind from now on."""
        self._kinds.add((_group(api_version), kind))

    def tracks(self, group: str, kind: str) -> bool:
        return (group, kind) in self._kinds

    def begin(self, group: str, kind: str, namespace: str | None, name: str) -> None:
        """A write to the object is about to be sent: until it ends, no copy is current."""
        self.record(group, kind, namespace, name, None)

    def record(self, group: str, kind: str, namespace: str | None, name: str, written: Any) -> None:
        """A write to the object ended: ``written`` is the object the server returned, or
        None when the outcome is not known (a write that raised)."""
        if (group, kind) not in self._kinds or not name:
            return
        version = ""
        if isinstance(written, Mapping):
            meta = written.get("metadata")
            if isinstance(meta, Mapping):
                version = str(meta.get("resourceVersion") or "")
        self._versions[(group, kind, namespace or "", name)] = version or _UNKNOWN

    def forget(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        """The object is gone: its entry goes too."""
        self._versions.pop((_group(api_version), kind, namespace or "", name), None)

    def clear(self) -> None:
        """Forget every version (the kinds stay tracked): no copy is current until written."""
        self._versions.clear()

    def current(self, api_version: str, kind: str, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` (a cached copy) is at the version of this client's last write to
        it. False when it wrote none since ``track``/``clear``, while a write is in flight
        or its outcome is unknown: a caller that must see its own writes reads the server."""
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return False
        group = _group(api_version)
        key = (group, kind, str(meta.get("namespace") or ""), str(meta.get("name")))
        written = self._versions.get(key)
        return bool(written) and written == str(meta.get("resourceVersion") or "")

    def __len__(self) -> int:
        return len(self._versions)
