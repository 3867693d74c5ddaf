"""Private, writable copies of a read-only artifact for the tools that need one.

The artifact root is shared by every app of a repository revision and must never change,
so kustomize edits and ``helm dependency build`` run in a copy. ``.git`` is left out. Files
are copied with their content only (a read-only checkout gives read-only modes), so the copy
is writable. Symlinks stay symlinks; one that points outside the artifact root is left out
of the copy (a repository must not be able to make a tool read the renderer's filesystem; a
render that needs it then fails on the missing file), and an absolute one that points inside
is rewritten to the same file in the copy.

Helm reads a chart in place and follows symbolic links, so ``walk_inside`` checks a chart
before helm sees it: every link must resolve inside the repository root and every entry must
be a directory or a regular file (a FIFO or a device would hang or feed the tool). It refuses
with the name of the offending entry rather than leaving it out, so the user can fix it.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from gitsail.render._errors import RenderError

__all__ = ["copy_artifact", "inside", "walk_inside"]


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


def walk_inside(tree: Path, root: Path) -> list[Path]:
    """The regular files under ``tree`` as a tool that follows links reads them.

    Links are followed when they resolve inside ``root`` (each real directory once, so a
    link to an ancestor does not loop); a link that leaves ``root``, or an entry that is
    neither a directory nor a regular file, raises RenderError naming it.
    """
    real_root = root.resolve()
    files: list[Path] = []
    seen: set[Path] = set()
    pending = [tree]
    while pending:
        directory = pending.pop()
        real = directory.resolve()
        if real in seen:
            continue
        seen.add(real)
        with os.scandir(directory) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            path = directory / name
            shown = os.path.relpath(path, root)
            if path.is_symlink():
                target = path.resolve()
                if not inside(target, real_root):
                    raise RenderError(
                        f"{shown} is a symbolic link to a path outside the repository; the "
                        "tool would follow it, so the render is refused (remove the link or "
                        "point it inside the repository)"
                    )
                if not target.exists():
                    continue  # dangling inside the repository: the tool reports it if used
                mode = target.stat().st_mode
            else:
                mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                pending.append(path)
            elif stat.S_ISREG(mode):
                files.append(path)
            else:
                raise RenderError(
                    f"{shown} is not a regular file or directory (a FIFO, socket or device); "
                    "the render is refused"
                )
    return files
