"""The difference between two renders of one app, object by object, Secrets redacted.

Objects are matched by group, kind, namespace and name; each pair becomes an ``ObjectDiff``
(added, removed or changed) with a unified diff of their YAML. Secret values are masked on
both sides with one mask table (``gitsail.diff.redact_pair``) before anything is compared or
printed, so a changed Secret shows that it changed and never what it holds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gitsail.diff import redact_pair
from gitsail.model import Obj
from gitsail.render import dump_yaml

__all__ = ["ObjectDiff", "diff_renders", "markdown_diff"]

MAX_DIFF_LINES = 400


@dataclass(frozen=True)
class ObjectDiff:
    kind: str
    namespace: str
    name: str
    change: str  # "added" | "removed" | "changed"
    diff: str

    @property
    def title(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    return (
        group,
        str(obj.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _index(objs: Iterable[Obj]) -> dict[tuple[str, str, str, str], Obj]:
    return {_key(obj): obj for obj in objs if isinstance(obj, dict)}


def diff_renders(before: Sequence[Obj], after: Sequence[Obj]) -> list[ObjectDiff]:
    """Every object that differs between two renders, in a stable order."""
    old, new = _index(before), _index(after)
    out: list[ObjectDiff] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = redact_pair(old.get(key), new.get(key))
        if a == b:
            continue
        a_text = dump_yaml(a).splitlines(keepends=True) if a is not None else []
        b_text = dump_yaml(b).splitlines(keepends=True) if b is not None else []
        lines = list(difflib.unified_diff(a_text, b_text, "before", "after", n=3))
        if len(lines) > MAX_DIFF_LINES:
            lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines\n"]
        change = "added" if a is None else "removed" if b is None else "changed"
        out.append(ObjectDiff(key[1], key[2], key[3], change, "".join(lines)))
    return out


def markdown_diff(diffs: Sequence[ObjectDiff]) -> str:
    """One collapsible ``diff`` block per object, for a pull request."""
    if not diffs:
        return "_No rendered change._\n"
    parts = []
    for d in diffs:
        body = d.diff.replace("```", "` ` `")
        parts.append(
            f"<details><summary>{d.change}: <code>{d.title}</code></summary>\n\n"
            f"```diff\n{body}```\n\n</details>\n"
        )
    return "\n".join(parts)
