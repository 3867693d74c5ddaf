"""Set an image's tag or digest where an environment's directory defines it.

Where, in this order:

1. **A kustomization** (``kustomization.yaml``/``.yml``/``Kustomization`` in the directory):
   its ``images:`` list, as ``kustomize edit set image`` writes it — the entry whose ``name``
   is the image gets ``newName`` (when one is given), ``newTag`` (and loses ``digest``) or
   ``digest`` (and loses ``newTag``); a missing entry is appended. Nothing else is touched:
   the bases the overlay reads are shared with other environments.
2. **Otherwise every YAML file under the directory** (Helm values files and plain manifests):

   - a value of a key ``image`` that is an image reference with this name
     (``image: myregistry.io/myapp:1.0.0``) becomes the new reference;
   - a mapping with ``repository`` (optionally with a sibling ``registry``, as Bitnami charts
     split it) naming this image and a ``tag`` gets the new tag (and ``digest`` when the
     mapping has that key);
   - ``keys``: dotted paths into a values file (``image.tag``) set to the new tag;
   - ``policy``: lines marked with Flux's setter comment ``# {"$imagepolicy": "NS:NAME"}``
     (the whole reference) or ``"NS:NAME:tag"``, ``":name"``, ``":digest"`` get that part.

The result is a list of ``FileEdit`` records (old and new text and what changed, with the line);
nothing is written until ``write_edits``. Edits are text splices (``yamledit``): comments,
key order, quoting and indentation stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitsail.source.yamledit import (
    EditError,
    Splice,
    apply_splices,
    compose,
    delete_key,
    last_index,
    line_end,
    lookup,
    parse_setter_marker,
    replace_scalar,
    scalar_text,
    set_key,
    walk,
)
from gitsail.workflow.imageref import ImageRefError, ImageUpdate, parse_image

__all__ = [
    "KUSTOMIZATION_NAMES",
    "Change",
    "FileEdit",
    "ImagePlan",
    "find_kustomization",
    "kustomize_images",
    "plan_image_set",
    "write_edits",
]

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MAX_FILES = 2000


@dataclass(frozen=True)
class Change:
    """One value changed: where (file:line, a path of keys), from what, to what."""

    file: str
    line: int
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class FileEdit:
    """A file's text before and after, and the changes between them."""

    path: Path
    before: str
    after: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ImagePlan:
    """The edits to make, and how many places name the image (0: it is nowhere)."""

    edits: tuple[FileEdit, ...]
    matched: int


_Edit = Callable[[Node, str, str], None]


def find_kustomization(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def _read(path: Path, texts: Mapping[Path, str] | None = None) -> str:
    if texts is not None and path in texts:
        return texts[path]
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EditError(f"{path}: cannot read it: {exc}") from None


def kustomize_images(path: Path) -> list[dict[str, str]]:
    """The ``images:`` entries of a kustomization file (name, newName, newTag, digest)."""
    docs = compose(_read(path), str(path))
    found = lookup(docs[0], "images") if docs else None
    if found is None or not isinstance(found[1], SequenceNode):
        return []
    entries = []
    for item in found[1].value:
        if isinstance(item, MappingNode):
            entries.append(
                {
                    str(k.value): str(v.value)
                    for k, v in item.value
                    if isinstance(k, ScalarNode) and isinstance(v, ScalarNode)
                }
            )
    return entries


# -- kustomizations ------------------------------------------------------------------------


def _kustomization_edit(
    path: Path, update: ImageUpdate, shown: str, texts: Mapping[Path, str] | None = None
) -> FileEdit | None:
    text = _read(path, texts)
    docs = compose(text, shown)
    if len(docs) != 1 or not isinstance(docs[0], MappingNode):
        raise EditError(f"{shown}: a kustomization is one YAML mapping")
    root = docs[0]
    wanted = [("newName", update.new_name), ("newTag", update.tag), ("digest", update.digest)]
    found = lookup(root, "images")
    entry: Node | None = None
    if found is not None and isinstance(found[1], SequenceNode):
        for item in found[1].value:
            name = lookup(item, "name")
            if (
                name is not None
                and isinstance(name[1], ScalarNode)
                and name[1].value == update.name
            ):
                entry = item
                break
    splices: list[Splice] = []
    changes: list[Change] = []
    field = f"images[{update.name}]"
    if entry is None:
        lines = [f"name: {scalar_text(update.name)}"]
        lines += [f"{k}: {scalar_text(v)}" for k, v in wanted if v]
        splices.append(_append_item(text, root, found, lines, shown))
        line = text.count("\n", 0, splices[0].start) + 2
        changes.append(Change(shown, line, field, "", update.describe()))
    elif (swap := _swap(text, entry, update, shown)) is not None:
        splices.append(swap[0])
        changes.append(swap[1])
        if update.new_name and (s := set_key(text, entry, "newName", update.new_name, shown)):
            splices.append(s)
            changes.append(
                Change(shown, entry.start_mark.line + 1, f"{field}.newName", "", update.new_name)
            )
    else:
        for key, value in wanted:
            old = lookup(entry, key)
            old_text = str(old[1].value) if old and isinstance(old[1], ScalarNode) else ""
            if value:
                splice = set_key(text, entry, key, value, shown)
            elif key == ("newTag" if update.digest else "digest") and (
                bool(update.tag) != bool(update.digest)
            ):  # a tag replaces the digest and a digest the tag, as kustomize does
                splice = delete_key(text, entry, key, shown)
            else:
                splice = None
            if splice is not None:
                splices.append(splice)
                at = old[0].start_mark.line + 1 if old else entry.start_mark.line + 1
                changes.append(Change(shown, at, f"{field}.{key}", old_text, value))
    if not splices:
        return None
    return FileEdit(path, text, apply_splices(text, splices), tuple(changes))


def _swap(text: str, entry: Node, update: ImageUpdate, shown: str) -> tuple[Splice, Change] | None:
    """A tag replaced by a digest (or the reverse) in the same line, as one splice."""
    if bool(update.tag) == bool(update.digest):
        return None
    old_key, new_key, value = (
        ("newTag", "digest", update.digest) if update.digest else ("digest", "newTag", update.tag)
    )
    old = lookup(entry, old_key)
    if old is None or lookup(entry, new_key) is not None or not isinstance(old[1], ScalarNode):
        return None
    key_node, value_node = old
    splice = Splice(
        key_node.start_mark.index, value_node.end_mark.index, f"{new_key}: {scalar_text(value)}"
    )
    field = f"images[{update.name}].{new_key}"
    return splice, Change(shown, key_node.start_mark.line + 1, field, str(value_node.value), value)


def _append_item(
    text: str, root: Node, found: tuple[ScalarNode, Node] | None, lines: list[str], shown: str
) -> Splice:
    """A new item at the end of the ``images:`` block sequence (or a new ``images:`` key)."""
    if found is None or (isinstance(found[1], ScalarNode) and found[1].value in ("", "~", "null")):
        block = "images:\n- " + "\n  ".join(lines) + "\n"
        if found is not None:  # `images:` with nothing: replace that line
            start = found[0].start_mark.index
            end = line_end(text, found[1].end_mark.index)
            return Splice(start, min(end + 1, len(text)), block)
        prefix = "" if not text or text.endswith("\n") else "\n"
        return Splice(len(text), len(text), prefix + block)
    seq = found[1]
    if not isinstance(seq, SequenceNode):
        raise EditError(f"{shown}:{seq.start_mark.line + 1}: images is not a list")
    if seq.flow_style:
        if seq.value:
            raise EditError(f"{shown}:{seq.start_mark.line + 1}: images in flow style; edit it")
        column = found[0].start_mark.column
        block = "".join(
            "\n" + " " * column + ("- " if i == 0 else "  ") + line for i, line in enumerate(lines)
        )
        return Splice(found[0].end_mark.index + 1, seq.end_mark.index, block)
    dash = seq.start_mark.column
    inner = seq.value[0].start_mark.column if seq.value else dash + 2
    pad = " " * (inner - dash - 1)
    at = line_end(text, last_index(seq))
    block = "".join(
        "\n" + (" " * dash + "-" + pad if i == 0 else " " * inner) + line
        for i, line in enumerate(lines)
    )
    return Splice(at, at, block)


# -- values files and plain manifests --------------------------------------------------------


def _image_scalar(value: Node) -> str:
    """The image name of a scalar that is an image reference, or ""."""
    if not isinstance(value, ScalarNode) or not isinstance(value.value, str):
        return ""
    try:
        return parse_image(value.value).name
    except ImageRefError:
        return ""


def _values_edit(
    path: Path,
    update: ImageUpdate,
    shown: str,
    keys: Sequence[str],
    policy: str,
    texts: Mapping[Path, str] | None = None,
) -> tuple[FileEdit | None, int]:
    text = _read(path, texts)
    if "$imagepolicy" not in text and update.name not in text and not keys:
        return None, 0  # cheap: nothing here names the image
    target = update.target
    splices: dict[int, Splice] = {}
    changes: list[Change] = []
    matched: set[int] = set()

    def edit(node: Node, value: str, where: str) -> None:
        matched.add(int(node.start_mark.index))
        if not value or int(node.start_mark.index) in splices:
            return
        if isinstance(node, ScalarNode) and node.value == value:
            return
        old = str(node.value) if isinstance(node, ScalarNode) else ""
        splices[int(node.start_mark.index)] = replace_scalar(text, node, value, shown)
        changes.append(Change(shown, node.start_mark.line + 1, where, old, value))

    for doc in compose(text, shown):
        for path_keys, node in walk(doc):
            dotted = ".".join(path_keys)
            if isinstance(node, ScalarNode) and policy:
                marker = parse_setter_marker(text, node)
                if marker is not None and marker[0] == policy:
                    part = {
                        "": str(target),
                        "tag": target.tag,
                        "name": target.name,
                        "digest": target.digest,
                    }[marker[1]]
                    edit(node, part, dotted)
            if isinstance(node, ScalarNode) and dotted in keys:
                edit(node, _tag_text(update, shown, node), dotted)
            if path_keys and path_keys[-1] == "image" and _image_scalar(node) == update.name:
                edit(node, str(target), dotted)
            if isinstance(node, MappingNode):
                _repository_mapping(text, node, update, shown, dotted, edit)
    if not splices:
        return None, len(matched)
    after = apply_splices(text, list(splices.values()))
    return FileEdit(path, text, after, tuple(changes)), len(matched)


def _tag_text(update: ImageUpdate, shown: str, node: Node) -> str:
    if update.digest and update.tag:
        return f"{update.tag}@{update.digest}"
    if update.digest:
        raise EditError(
            f"{shown}:{node.start_mark.line + 1}: this value holds a tag; give a tag "
            "(or TAG@DIGEST) rather than a digest alone"
        )
    return update.tag


def _repository_mapping(
    text: str, node: MappingNode, update: ImageUpdate, shown: str, dotted: str, edit: _Edit
) -> None:
    repo = lookup(node, "repository")
    if repo is None or not isinstance(repo[1], ScalarNode):
        return
    registry = lookup(node, "registry")
    name = str(repo[1].value)
    if registry is not None and isinstance(registry[1], ScalarNode) and registry[1].value:
        name = f"{registry[1].value}/{name}"
    if name != update.name:
        return
    tag = lookup(node, "tag")
    digest = lookup(node, "digest")
    if update.new_name:
        if registry is not None:
            raise EditError(
                f"{shown}:{node.start_mark.line + 1}: registry/repository split; "
                "renaming needs a hand edit"
            )
        edit(repo[1], update.new_name, f"{dotted}.repository")
    if digest is not None and update.digest:
        edit(digest[1], update.digest, f"{dotted}.digest")
        if tag is not None and update.tag:
            edit(tag[1], update.tag, f"{dotted}.tag")
    elif tag is not None and (update.tag or update.digest):
        edit(tag[1], _tag_text(update, shown, tag[1]), f"{dotted}.tag")


def _yaml_files(directory: Path) -> list[Path]:
    files: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if ".git" in path.parts or not path.is_file() or path.is_symlink():
            continue
        if path.suffix not in (".yaml", ".yml") or path.name in ("Chart.yaml", "Chart.lock"):
            continue
        files.append(path)
        if len(files) > MAX_FILES:
            raise EditError(
                f"{directory}: more than {MAX_FILES} YAML files; point at a smaller one"
            )
    return files


def plan_image_set(
    directory: Path,
    update: ImageUpdate,
    *,
    keys: Sequence[str] = (),
    policy: str = "",
    root: Path | None = None,
    texts: Mapping[Path, str] | None = None,
) -> ImagePlan:
    """The edits that set ``update`` in the environment at ``directory`` (see the module
    docstring); paths in the changes are shown relative to ``root``. ``texts`` (resolved
    path → text) stand in for files on disk, to plan several updates one after another."""
    base = (root or directory).resolve()
    directory = directory.resolve()
    if not directory.is_dir():
        raise EditError(f"{directory} is not a directory")

    def shown(path: Path) -> str:
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            return str(path)

    kustomization = find_kustomization(directory)
    if kustomization is not None and not keys and not policy:
        edit = _kustomization_edit(kustomization.resolve(), update, shown(kustomization), texts)
        return ImagePlan((edit,) if edit is not None else (), 1)
    edits: list[FileEdit] = []
    matched = 0
    for path in _yaml_files(directory):
        if path.name in KUSTOMIZATION_NAMES:
            continue
        found, count = _values_edit(path.resolve(), update, shown(path), keys, policy, texts)
        matched += count
        if found is not None:
            edits.append(found)
    return ImagePlan(tuple(edits), matched)


def write_edits(edits: Sequence[FileEdit]) -> None:
    for edit in edits:
        edit.path.write_text(edit.after, encoding="utf-8")
