"""Small readers over plain-dict objects shared by the health checks.

Kubernetes objects arrive as JSON dicts in which any level may be absent or ``null``; these
helpers return a typed default instead, so the checks read like the rules they implement.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from gitsail.model import Obj


def mapping(obj: Any, *path: str) -> dict[str, Any]:
    """The dict at ``path`` inside ``obj``, or ``{}`` when any step is absent or not a dict."""
    cur: Any = obj
    for step in path:
        if not isinstance(cur, dict):
            return {}
        cur = cur.get(step)
    return cur if isinstance(cur, dict) else {}


def items(obj: Any, *path: str) -> list[Any]:
    """The list at ``path`` inside ``obj``, or ``[]``."""
    *parents, last = path
    value = mapping(obj, *parents).get(last)
    return value if isinstance(value, list) else []


def integer(obj: Any, *path: str, default: int = 0) -> int:
    """The integer at ``path`` (booleans are not integers), or ``default``."""
    *parents, last = path
    value = mapping(obj, *parents).get(last)
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def optional_int(obj: Any, *path: str) -> int | None:
    """The integer at ``path``, or ``None`` when it is absent (unlike ``integer``)."""
    *parents, last = path
    value = mapping(obj, *parents).get(last)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def text(obj: Any, *path: str) -> str:
    """The string at ``path``, or ``""``."""
    *parents, last = path
    value = mapping(obj, *parents).get(last)
    return value if isinstance(value, str) else ""


def flag(obj: Any, *path: str) -> bool:
    """True only when the value at ``path`` is the boolean ``true``."""
    *parents, last = path
    return mapping(obj, *parents).get(last) is True


def conditions(obj: Obj) -> list[dict[str, Any]]:
    """``status.conditions`` entries that are dicts."""
    return [c for c in items(obj, "status", "conditions") if isinstance(c, dict)]


def condition(obj: Obj, type_: str) -> dict[str, Any] | None:
    """The condition of ``type_`` in ``status.conditions``, if any."""
    for cond in conditions(obj):
        if cond.get("type") == type_:
            return cond
    return None


def is_true(cond: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return cond is not None and cond.get("status") == "True"


def is_false(cond: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return cond is not None and cond.get("status") == "False"


def describe(cond: dict[str, Any]) -> str:
    """``reason: message`` of a condition, whichever parts it has."""
    reason = str(cond.get("reason") or "")
    message = str(cond.get("message") or "")
    if reason and message:
        return f"{reason}: {message}"
    return reason or message


def generation_lag(obj: Obj) -> tuple[int, int] | None:
    """(generation, observed) when status.observedGeneration is behind metadata.generation."""
    generation = optional_int(obj, "metadata", "generation")
    observed = optional_int(obj, "status", "observedGeneration")
    if generation is None or observed is None or observed >= generation:
        return None
    return generation, observed
