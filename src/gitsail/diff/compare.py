"""Per-resource comparison: desired (from a server-side apply dry run) against live.

The pipeline for one resource, in this order:

1. ``normalize`` both sides (server bookkeeping, status, empties; ``gitsail.diff.normalize``);
2. redact Secrets on both sides with one mask table (``gitsail.diff.redact``): from here on
   no step sees a Secret value, so nothing below can print or compare one;
3. apply the ignore rules to both sides, with the live object's managedFields deciding what
   ``managedFieldsManagers`` own (``gitsail.diff.ignore``);
4. walk both trees for the JSON pointers of differing leaves (a subtree present on one side
   only is reported once, at its root; lists are compared by index), and render a unified
   diff of their YAML, live → desired.

Because the desired side comes back from the apiserver with defaults filled in, defaults
never show up as differences, and no client-side defaulting table is needed.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from gitsail.diff.errors import DiffError
from gitsail.diff.ignore import IgnoreRule, apply_ignore_rules
from gitsail.diff.normalize import normalize, prune_empty
from gitsail.diff.pointer import format_pointer
from gitsail.diff.redact import redact_pair
from gitsail.diff.sealed import SealedOpener, unify_resealed
from gitsail.model import Obj, ResourceKey

__all__ = ["OUT_OF_SYNC", "SYNCED", "ResourceDiff", "changed_paths", "diff_resource"]

SYNCED = "Synced"
OUT_OF_SYNC = "OutOfSync"

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class ResourceDiff:
    """The comparison of one resource; safe to log, store and show (Secrets are redacted).

    ``desired`` and ``live`` are the compared forms (normalized, ignored, redacted).
    ``changed_paths`` are JSON pointers of the differing leaves; empty when the resource is
    missing or must be pruned (the whole object differs, see ``missing``/``requires_pruning``).
    """

    key: ResourceKey
    status: str
    desired: Obj | None
    live: Obj | None
    changed_paths: tuple[str, ...]
    requires_pruning: bool
    missing: bool

    @property
    def synced(self) -> bool:
        return self.status == SYNCED

    @functools.cached_property
    def unified(self) -> str:
        """A unified diff of the compared forms as YAML, "" when in sync. Made when first
        asked for (``app diff``, the UI): a controller compares thousands of resources and
        shows none of these texts."""
        if self.status == SYNCED:
            return ""
        return _unified(self.key, self.live, self.desired)


def _same_scalar(a: Any, b: Any) -> bool:
    # JSON true is not 1 and 1 is 1.0; Python's == says otherwise for the first.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _walk(a: Any, b: Any, path: list[str | int], out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in a and key in b:
                _walk(a[key], b[key], [*path, key], out)
            else:
                out.append(format_pointer([*path, key]))
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            if index < len(a) and index < len(b):
                _walk(a[index], b[index], [*path, index], out)
            else:
                out.append(format_pointer([*path, index]))
    elif type(a) in (dict, list) or type(b) in (dict, list) or not _same_scalar(a, b):
        out.append(format_pointer(path))


def changed_paths(live: Obj, desired: Obj) -> tuple[str, ...]:
    """JSON pointers where ``live`` and ``desired`` differ (keys sorted, lists by index)."""
    out: list[str] = []
    _walk(live, desired, [], out)
    return tuple(out)


def _yaml_lines(obj: Obj | None) -> list[str]:
    if obj is None:
        return []
    text: str = yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False)
    return text.splitlines()


def _unified(key: ResourceKey, live: Obj | None, desired: Obj | None) -> str:
    lines = difflib.unified_diff(
        _yaml_lines(live),
        _yaml_lines(desired),
        fromfile=f"live {key}" if live is not None else f"live {key} (missing)",
        tofile=f"desired {key}" if desired is not None else f"desired {key} (to be pruned)",
        lineterm="",
    )
    return "\n".join(lines)


def _compared(
    obj: Obj | None, rules: Sequence[IgnoreRule], raw_live: Obj | None, jq_budget: float | None
) -> Obj | None:
    if obj is None:
        return None
    if not rules:
        return obj  # normalized already: nothing could have been emptied since
    ignored = apply_ignore_rules(obj, rules, live=raw_live, jq_budget=jq_budget, owned=True)
    pruned: Obj = prune_empty(ignored)
    return pruned


def diff_resource(
    desired: Obj | None,
    live: Obj | None,
    *,
    rules: Sequence[IgnoreRule] = (),
    jq_budget: float | None = None,
    open_sealed: SealedOpener | None = None,
) -> ResourceDiff:
    """Compare the dry-run result ``desired`` with ``live`` (either may be ``None``, not both).

    With ``open_sealed`` (the Sealed Secrets keys), a SealedSecret value re-sealed without a
    change of plaintext is in sync (``gitsail.diff.sealed``).

    Raises DiffError when both are ``None`` or an ignore rule is unusable (its message names
    the rule, never object data).
    """
    if desired is None and live is None:
        raise DiffError("nothing to compare: neither a desired nor a live object was given")
    key = ResourceKey.of(desired if desired is not None else live or {})
    if open_sealed is not None and desired is not None and live is not None:
        desired = unify_resealed(desired, live, open_sealed)
    # normalize copies; what follows works on those private copies in place.
    redacted_desired, redacted_live = redact_pair(
        normalize(desired) if desired is not None else None,
        normalize(live) if live is not None else None,
        owned=True,
    )
    cmp_desired = _compared(redacted_desired, rules, live, jq_budget)
    cmp_live = _compared(redacted_live, rules, live, jq_budget)
    missing = cmp_live is None
    requires_pruning = cmp_desired is None and cmp_live is not None
    paths = (
        changed_paths(cmp_live, cmp_desired)
        if cmp_live is not None and cmp_desired is not None
        else ()
    )
    out_of_sync = missing or requires_pruning or bool(paths)
    return ResourceDiff(
        key=key,
        status=OUT_OF_SYNC if out_of_sync else SYNCED,
        desired=cmp_desired,
        live=cmp_live,
        changed_paths=paths,
        requires_pruning=requires_pruning,
        missing=missing,
    )
