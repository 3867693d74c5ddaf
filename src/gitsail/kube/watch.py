"""Watch events: the records a watch stream yields and how a stream line becomes one.

A watch (``GET <collection>?watch=true``) answers with one JSON object per line,
``{"type": ..., "object": ...}``. ``ADDED``, ``MODIFIED`` and ``DELETED`` carry the object;
``BOOKMARK`` carries only ``metadata.resourceVersion`` (sent when ``allowWatchBookmarks`` is
set) so a watcher can resume from a recent version even when nothing it watches changed.
``ERROR`` carries a ``Status``: it ends the stream and becomes an exception here; code 410
(``Gone``) means the requested resourceVersion is older than the server remembers and the
watcher must list again (the informer in ``cache.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gitsail import codec
from gitsail.kube.errors import KubeError, error_from_status
from gitsail.model import Obj

__all__ = ["EventType", "WatchEvent", "parse_event"]

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
_TYPES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch. ``object`` is the whole object (for BOOKMARK, only its
    ``metadata.resourceVersion`` is meaningful)."""

    type: EventType
    object: Obj

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")

    def __repr__(self) -> str:
        meta = self.object.get("metadata") or {}
        ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"WatchEvent({self.type} {self.object.get('kind', '')} {ns}{meta.get('name', '')})"


def parse_event(
    line: str | bytes, *, api_version: str = "", kind: str = "", context: str = ""
) -> WatchEvent:
    """Parse one stream line; ``ERROR`` raises its ``KubeError`` (``Gone`` for 410).

    ``api_version`` and ``kind`` are filled into objects that lack them (as lists do).
    """
    try:
        raw = codec.loads(line)
    except ValueError:
        raise KubeError(
            0, "BadWatchEvent", "watch stream sent a line that is not JSON", context=context
        ) from None
    etype = raw.get("type") if isinstance(raw, dict) else None
    obj = raw.get("object") if isinstance(raw, dict) else None
    if etype == "ERROR":
        status = obj if isinstance(obj, dict) else {"message": "watch error without a Status"}
        raise error_from_status(status, context=context)
    if etype not in _TYPES or not isinstance(obj, dict):
        raise KubeError(
            0, "BadWatchEvent", f"watch stream sent an event of type {etype!r}", context=context
        )
    if etype != "BOOKMARK":
        if api_version:
            obj.setdefault("apiVersion", api_version)
        if kind:
            obj.setdefault("kind", kind)
    return WatchEvent(etype, obj)
