"""Private, writable copies of a read-only artifact for the tools that need one.

The artifact root is shared by every app of a repository revision and must never change,
so kustomize edits and ``helm dependency build`` run in a copy. ``.git`` is left out. Files
are copied with their content only (a read-only checkout gives read-only modes), so the copy
is writable. Symlinks stay symlinks; one that points outside the artifact root is left out
of the copy (a repository must not be able to make a tool read the renderer's filesystem; a
render that needs it then fails on the missing file), and an absolute one that points inside
is rewritten to the same file in the copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["copy_artifact", "inside"]


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def copy_artifact(root: Path, dest: Path, only: Sequence[Path] | None = None) -> None:
    """Copy ``root`` (without ``.git``) to the new directory ``dest``.

    With ``only`` (absolute paths of the files a render reads, from
    ``gitsail.source.input_files``) just those are copied: a render never pays for the
    rest of a large repository or a developer's work tree.
    """
    real_root = root.resolve()
    dest.mkdir(parents=True)
    if only is not None:
        for src in only:
            rel = src.relative_to(root)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                _copy_link(src, dest / rel, real_root, dest)
            elif src.is_file():
                shutil.copyfile(src, dest / rel)
        return
    for current, dirs, files in os.walk(root):
        src_dir = Path(current)
        rel_dir = src_dir.relative_to(root)
        out_dir = dest / rel_dir
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in list(dirs):
            if (src_dir / name).is_symlink():
                dirs.remove(name)  # os.walk does not follow it; link it like a file
                files.append(name)
            else:
                (out_dir / name).mkdir()
        for name in files:
            src = src_dir / name
            if src.is_symlink():
                _copy_link(src, out_dir / name, real_root, dest)
            elif src.is_file():
                shutil.copyfile(src, out_dir / name)


def _copy_link(src: Path, out: Path, real_root: Path, dest: Path) -> None:
    target = src.resolve()
    if not inside(target, real_root):
        return
    link = src.readlink()
    if link.is_absolute():
        link = Path(os.path.relpath(dest / target.relative_to(real_root), out.parent))
    out.symlink_to(link)
