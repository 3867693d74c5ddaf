"""``gitsail doctor --fix``: the mechanical fixes, made in the work tree for the user to review.

Only one rule has a fix that is both mechanical and safe:

- ``plain-secret``: the Secret is sealed with the Sealed Secrets certificate the user gives
  (``--cert``, as ``gitsail seal --cert``), and its document in the file is replaced by the
  SealedSecret: the rest of the file (other documents, their comments, ``---`` markers) is
  kept byte for byte. The values stay in Git's history, so the fix says to rotate them.
  A Secret without a namespace is not sealed (a strict-scope SealedSecret is bound to one;
  the fix would have to guess it) unless the Secret's annotations ask for cluster-wide
  scope.

Not fixed, on purpose: sync policies (turning on ``prune`` deletes objects; a person decides),
``:latest`` tags (which version is meant is a decision, and pinning today's digest hides
that), CI files (the replacement is a pipeline, ``gitsail ci init``), limits and probes
(their values are the application's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from gitsail.secrets.sealedsecret import seal_secret
from gitsail.secrets.sealing import SealingError
from gitsail.workflow.doctor import MAX_FILE_BYTES, Finding

__all__ = ["FIXABLE", "FixReport", "seal_plain_secrets"]

FIXABLE = frozenset({"plain-secret"})


@dataclass(frozen=True)
class FixReport:
    fixed: tuple[str, ...]  # "file: what was done"
    skipped: tuple[str, ...]  # "file: why not"


def _dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def seal_plain_secrets(
    root: Path, findings: Sequence[Finding], public_key: Any, *, dry_run: bool = False
) -> FixReport:
    """Seal every Secret a ``plain-secret`` finding names, in place (see the docstring)."""
    fixed: list[str] = []
    skipped: list[str] = []
    root = root.resolve()
    files = sorted({f.file for f in findings if f.rule == "plain-secret"})
    for rel in files:
        path = (root / rel).resolve()
        if root not in path.parents or path.is_symlink() or not path.is_file():
            skipped.append(f"{rel}: not a regular file inside the repository")
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            skipped.append(f"{rel}: larger than {MAX_FILE_BYTES} bytes")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            nodes: list[Node] = [
                n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None
            ]
            objs = [o for o in yaml.safe_load_all(text) if o is not None]
        except yaml.YAMLError:
            skipped.append(f"{rel}: not valid YAML")
            continue
        replacements: list[tuple[int, int, str]] = []
        for node, obj in zip(nodes, objs, strict=False):
            if not _plain_secret(obj):
                continue
            meta = obj.get("metadata") or {}
            name = meta.get("name", "")
            annotations = meta.get("annotations") or {}
            cluster_wide = str(annotations.get("sealedsecrets.bitnami.com/cluster-wide")) == "true"
            if not meta.get("namespace") and not cluster_wide:
                skipped.append(
                    f"{rel}: Secret {name} has no namespace; add metadata.namespace "
                    "(a sealed value is bound to it) and run --fix again"
                )
                continue
            try:
                sealed = seal_secret(public_key, obj)
            except SealingError as exc:
                skipped.append(f"{rel}: Secret {name}: {exc}")
                continue
            start, end = node.start_mark.index, node.end_mark.index
            segment = text[start:end]
            trailing = segment[len(segment.rstrip()) :]  # the newline before a "---" or EOF
            replacements.append((start, end, _dump(sealed) + trailing))
            fixed.append(
                f"{rel}: Secret {name} replaced by its SealedSecret; rotate its values (the "
                "old ones are in Git's history)"
            )
        if not replacements or dry_run:
            continue
        for start, end, new in sorted(replacements, reverse=True):
            text = text[:start] + new + text[end:]
        if not text.endswith("\n"):
            text += "\n"
        tmp = path.with_name(f".{path.name}.gitsail-fix")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return FixReport(tuple(fixed), tuple(skipped))


def _plain_secret(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("kind") == "Secret"
        and str(obj.get("apiVersion")) == "v1"
        and bool(obj.get("data") or obj.get("stringData"))
    )
