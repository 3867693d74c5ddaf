"""Flux's ``Setters`` update strategy: rewrite the values marked for an ImagePolicy.

A marker is a YAML comment at the end of the line of a scalar value::

    image: ghcr.io/org/app:1.0.0 # {"$imagepolicy": "flux-system:app"}
    tag: 1.0.0 # {"$imagepolicy": "flux-system:app:tag"}
    repository: ghcr.io/org/app # {"$imagepolicy": "flux-system:app:name"}

``NS:NAME`` sets the whole reference (the policy's ``latestRef`` name and tag), ``:tag``
the tag, ``:name`` the image name. ``:digest`` markers are left alone (gitsail does not
reflect digests yet: ``digestReflectionPolicy`` other than ``Never`` is refused) and a
marker naming a policy not given is left alone too, as Flux leaves them.

Every ``.yaml``/``.yml`` file under the update path is read (symbolic links are not
followed and never leave the checkout; at most ``MAX_FILES`` files, files over
``MAX_FILE_BYTES`` skipped unless they carry a marker, which is then an error). The edits are
text splices (``gitsail.source.yamledit``): only the characters of the changed values move,
comments, key order and quoting stay. A marked value that cannot be edited safely (a block
scalar, an anchor) is an ``EditError`` naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from gitsail.source.yamledit import (
    MAX_FILE_BYTES,
    EditError,
    Splice,
    apply_splices,
    compose,
    lookup,
    parse_setter_marker,
    replace_scalar,
    walk,
)

__all__ = [
    "MAX_FILES",
    "PolicyImage",
    "SetterChange",
    "SetterResult",
    "apply_setters",
    "parse_marker",
]

MAX_FILES = 5000


@dataclass(frozen=True)
class PolicyImage:
    """What a policy chose: ``name`` (the repository's image) and ``tag``."""

    name: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class SetterChange:
    """One value changed: ``setter`` is the marker's text (``ns:name`` or ``ns:name:tag``)."""

    file: str  # relative to the checkout, forward slashes
    line: int
    setter: str
    old: str
    new: str
    object_kind: str = ""
    object_name: str = ""
    object_namespace: str = ""
    object_api_version: str = ""


@dataclass(frozen=True)
class SetterResult:
    changes: tuple[SetterChange, ...]
    files: dict[str, str]  # relative path -> new text (the files that changed)
    markers: int  # markers seen (for a policy given or not)


parse_marker = parse_setter_marker


def _yaml_files(root: Path, start: Path) -> list[Path]:
    files: list[Path] = []
    for directory, dirs, names in os.walk(start, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(names):
            path = Path(directory) / name
            if path.suffix not in (".yaml", ".yml") or path.is_symlink() or not path.is_file():
                continue
            files.append(path)
            if len(files) > MAX_FILES:
                raise EditError(
                    f"{start.relative_to(root).as_posix() or '.'}: more than {MAX_FILES} YAML "
                    "files under the update path; point spec.update.path at a smaller directory"
                )
    return files


def _object_of(doc: Node) -> tuple[str, str, str, str]:
    """(apiVersion, kind, name, namespace) of a document that is a Kubernetes object."""
    if not isinstance(doc, MappingNode):
        return "", "", "", ""

    def scalar(node: Node | None, key: str) -> str:
        found = lookup(node, key) if node is not None else None
        return str(found[1].value) if found and isinstance(found[1], ScalarNode) else ""

    meta = lookup(doc, "metadata")
    meta_node = meta[1] if meta is not None else None
    return (
        scalar(doc, "apiVersion"),
        scalar(doc, "kind"),
        scalar(meta_node, "name"),
        scalar(meta_node, "namespace"),
    )


def apply_setters(
    root: Path, update_path: str, policies: Mapping[str, PolicyImage]
) -> SetterResult:
    """The edits the markers under ``root/update_path`` ask for, given each policy's choice
    (``"ns:name"`` -> ``PolicyImage``). Nothing is written: ``files`` holds the new texts."""
    base = root.resolve()
    start = (base / update_path).resolve()
    if start != base and base not in start.parents:
        raise EditError(f"the update path {update_path!r} leaves the repository")
    if not start.is_dir():
        raise EditError(f"the update path {update_path!r} is not a directory in the repository")
    changes: list[SetterChange] = []
    files: dict[str, str] = {}
    markers = 0
    for path in _yaml_files(base, start):
        shown = path.relative_to(base).as_posix()
        if path.stat().st_size > MAX_FILE_BYTES:
            with path.open("rb") as handle:
                if b"$imagepolicy" not in handle.read():
                    continue
            raise EditError(f"{shown}: over {MAX_FILE_BYTES} bytes with a setter marker")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text: no markers
        if "$imagepolicy" not in text:
            continue
        splices: list[Splice] = []
        for doc in compose(text, shown):
            api_version, kind, name, namespace = _object_of(doc)
            for _keys, node in walk(doc):
                if not isinstance(node, ScalarNode):
                    continue
                marker = parse_marker(text, node)
                if marker is None:
                    continue
                markers += 1
                policy, part = marker
                chosen = policies.get(policy)
                if chosen is None or part == "digest":
                    continue
                value = {"": chosen.reference, "tag": chosen.tag, "name": chosen.name}[part]
                if node.value == value:
                    continue
                splices.append(replace_scalar(text, node, value, shown))
                changes.append(
                    SetterChange(
                        file=shown,
                        line=node.start_mark.line + 1,
                        setter=f"{policy}:{part}" if part else policy,
                        old=str(node.value),
                        new=value,
                        object_kind=kind,
                        object_name=name,
                        object_namespace=namespace,
                        object_api_version=api_version,
                    )
                )
        if splices:
            files[shown] = apply_splices(text, splices)
    return SetterResult(tuple(changes), files, markers)
