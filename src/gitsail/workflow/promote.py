"""Promotion: copy what was tested in one environment into the next one.

The article's promotion is a pull request that sets production's image to the tag staging
runs. ``plan_promotion`` does that for two directories of the same app:

1. read the images each environment sets — a kustomization's ``images:`` entries, or the
   image references and ``repository``/``tag`` pairs of values files and manifests;
2. for every image the source environment sets, and the target does not set the same way,
   plan an ``image set`` of the target (``imageset.plan_image_set``, one update after the
   other on the same in-memory text, so several images make one edit per file);
3. render the target before and after (on a private copy of the checkout with the new text)
   and diff the renders, for the pull request's description.

Only images are promoted: replica counts, resources and patches are what makes the
environments different, and stay as they are.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, ScalarNode

from gitsail.model import Obj
from gitsail.source.yamledit import EditError, compose, lookup, walk
from gitsail.workflow.imageref import ImageRefError, ImageUpdate, parse_image
from gitsail.workflow.imageset import (
    Change,
    FileEdit,
    find_kustomization,
    kustomize_images,
    plan_image_set,
)
from gitsail.workflow.rendered import ObjectDiff, diff_renders, markdown_diff

__all__ = ["ImageVersion", "Promotion", "environment_images", "plan_promotion", "render_diff"]

Render = Callable[[Path, Path], list[Obj]]  # (app directory, repository root) -> manifests


@dataclass(frozen=True)
class ImageVersion:
    """What an environment runs for an image name: maybe a new name, a tag, a digest."""

    new_name: str = ""
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        text = self.new_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text.lstrip(":") or "(base)"


@dataclass(frozen=True)
class Promotion:
    source: str
    target: str
    images: tuple[tuple[str, ImageVersion, ImageVersion], ...]  # name, target now, source
    edits: tuple[FileEdit, ...]
    diffs: tuple[ObjectDiff, ...]
    rendered: bool = True

    def markdown(self) -> str:
        """The pull request's description."""
        lines = [
            f"## Promote `{self.source}` → `{self.target}`",
            "",
            f"| image | `{self.target}` now | promoted from `{self.source}` |",
            "|---|---|---|",
        ]
        lines += [f"| `{name}` | `{old}` | `{new}` |" for name, old, new in self.images]
        lines += ["", "### Files", ""]
        lines += [
            f"- `{c.file}:{c.line}` {c.field}: `{c.old or '-'}` → `{c.new or '-'}`"
            for e in self.edits
            for c in e.changes
        ]
        lines += ["", f"### Rendered changes in `{self.target}`", ""]
        lines.append(markdown_diff(self.diffs) if self.rendered else "_Not rendered._\n")
        return "\n".join(lines)


def environment_images(directory: Path) -> dict[str, ImageVersion]:
    """The images an environment's directory sets, by the name they replace."""
    kustomization = find_kustomization(directory)
    if kustomization is not None:
        return {
            entry["name"]: ImageVersion(
                entry.get("newName", ""), entry.get("newTag", ""), entry.get("digest", "")
            )
            for entry in kustomize_images(kustomization)
            if entry.get("name")
        }
    found: dict[str, ImageVersion] = {}
    for path in sorted(directory.rglob("*.y*ml")):
        if not path.is_file() or path.name == "Chart.yaml" or ".git" in path.parts:
            continue
        for doc in compose(path.read_text(encoding="utf-8"), str(path)):
            for keys, node in walk(doc):
                if keys and keys[-1] == "image" and isinstance(node, ScalarNode):
                    try:
                        ref = parse_image(str(node.value))
                    except ImageRefError:
                        continue
                    found.setdefault(ref.name, ImageVersion("", ref.tag, ref.digest))
                elif isinstance(node, MappingNode):
                    repo, tag = lookup(node, "repository"), lookup(node, "tag")
                    if repo and tag and isinstance(repo[1], ScalarNode):
                        registry = lookup(node, "registry")
                        name = str(repo[1].value)
                        if registry and isinstance(registry[1], ScalarNode) and registry[1].value:
                            name = f"{registry[1].value}/{name}"
                        digest = lookup(node, "digest")
                        found.setdefault(
                            name,
                            ImageVersion(
                                "",
                                str(tag[1].value) if isinstance(tag[1], ScalarNode) else "",
                                str(digest[1].value)
                                if digest and isinstance(digest[1], ScalarNode)
                                else "",
                            ),
                        )
    return found


def _merge(edits: dict[Path, FileEdit], new: tuple[FileEdit, ...]) -> None:
    for edit in new:
        prior = edits.get(edit.path)
        if prior is None:
            edits[edit.path] = edit
        else:
            changes: tuple[Change, ...] = prior.changes + edit.changes
            edits[edit.path] = FileEdit(edit.path, prior.before, edit.after, changes)


def plan_promotion(source: Path, target: Path, root: Path, *, render: Render | None) -> Promotion:
    """What promoting ``source`` into ``target`` changes (nothing is written)."""
    if source.resolve() == target.resolve():
        raise EditError("--from and --to are the same directory")
    have = environment_images(target)
    want = environment_images(source)
    if not want:
        raise EditError(f"{source} sets no image; nothing to promote")
    edits: dict[Path, FileEdit] = {}
    images: list[tuple[str, ImageVersion, ImageVersion]] = []
    for name, version in sorted(want.items()):
        now = have.get(name, ImageVersion())
        if now == version:
            continue
        update = ImageUpdate(
            name=name, new_name=version.new_name, tag=version.tag, digest=version.digest
        )
        texts = {path: edit.after for path, edit in edits.items()}
        plan = plan_image_set(target, update, root=root, texts=texts)
        if plan.matched == 0:
            continue  # the target does not use this image
        _merge(edits, plan.edits)
        images.append((name, now, version))
    diffs: tuple[ObjectDiff, ...] = ()
    if render is not None and edits:
        diffs = tuple(render_diff(root, target, list(edits.values()), render))
    return Promotion(
        source=_shown(source, root),
        target=_shown(target, root),
        images=tuple(images),
        edits=tuple(edits.values()),
        diffs=diffs,
        rendered=render is not None,
    )


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def render_diff(root: Path, app: Path, edits: list[FileEdit], render: Render) -> list[ObjectDiff]:
    """Render ``app`` as the checkout is and as it would be with ``edits``; their diff."""
    root = root.resolve()
    before = render(app.resolve(), root)
    scratch = Path(tempfile.mkdtemp(prefix="gitsail-promote-"))
    try:
        copy = scratch / "repo"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".git"), symlinks=True)
        for edit in edits:
            (copy / edit.path.resolve().relative_to(root)).write_text(edit.after, encoding="utf-8")
        after = render(copy / app.resolve().relative_to(root), copy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return diff_renders(before, after)
