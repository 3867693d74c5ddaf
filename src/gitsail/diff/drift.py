"""Drift attribution: who changed a field that differs from Git, and when.

Every write to an object records, in ``metadata.managedFields``, which fields the writing
field manager now owns (FieldsV1), with the operation (``Apply`` or ``Update``), the
subresource (``scale``, ``status`` ...) and a timestamp. For each changed path of a diff,
``attribute_drift`` walks those field sets (``gitsail.diff.fields.owns``) and reports every
manager other than gitsail's own that owns the path: ``kubectl scale`` shows up as manager
``kubectl`` (or ``kubectl-scale``), operation ``Update``, subresource ``scale`` on
``/spec/replicas``, with the time of that write.

List items are matched by their FieldsV1 keys (``k:{"name":"app"}``) against the item found at
the pointer's index in ``compared`` (default: ``live``). Pass the compared live object
(``ResourceDiff.live``) there when ignore rules removed list items, so indices line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gitsail.diff.fields import managed_fields, owns
from gitsail.diff.pointer import parse_pointer
from gitsail.model import Obj

__all__ = ["DriftAttribution", "attribute_drift"]


@dataclass(frozen=True)
class DriftAttribution:
    """``manager`` owns the changed field at ``path`` since its write at ``time`` (RFC 3339)."""

    path: str
    manager: str
    operation: str
    time: str
    subresource: str = ""

    def __str__(self) -> str:
        via = f"{self.operation} {self.subresource}".strip()
        when = f" at {self.time}" if self.time else ""
        return f"{self.path} changed by {self.manager} ({via}){when}"


def attribute_drift(
    live: Obj,
    changed_paths: Sequence[str],
    *,
    ours: str = "gitsail",
    compared: Obj | None = None,
) -> list[DriftAttribution]:
    """For each changed path (in order), the managers other than ``ours`` that own it.

    Managers owning one path are listed most recent write first. Paths nobody else owns
    (or that are absent from ``live`` and not under an atomically owned field) yield nothing.
    """
    entries = [e for e in managed_fields(live) if e.manager != ours]
    target = compared if compared is not None else live
    found: list[DriftAttribution] = []
    for path in changed_paths:
        tokens = parse_pointer(path)
        owners = [e for e in entries if owns(e.fields, target, tokens)]
        owners.sort(key=lambda e: e.time, reverse=True)
        found.extend(
            DriftAttribution(path, e.manager, e.operation, e.time, e.subresource) for e in owners
        )
    return found
