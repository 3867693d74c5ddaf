"""Content-addressed directories in the cache: built aside, sealed read-only, moved in place.

A directory is written under a unique ``.partial`` name and renamed to its final name only
when complete, so a crash never leaves something that looks finished, and two writers of
the same content simply keep the first. Sealing refuses symlinks that point outside the
tree (a renderer must not read the host through the repository) and removes write bits.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from gitsail.source.errors import FetchError, InvalidSource

__all__ = ["remove_tree", "replace_dir", "seal_tree"]


def seal_tree(tree: Path, what: str) -> None:
    """Refuse symlinks that leave ``tree``; make its content read-only."""
    root = tree.resolve()
    for current, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            entry = Path(current) / name
            if entry.is_symlink():
                target = entry.resolve()
                if target != root and root not in target.parents:
                    rel = entry.relative_to(tree).as_posix()
                    raise InvalidSource(
                        f"{what} contains the symlink {rel!r} pointing outside it; gitsail "
                        "refuses to render it (remove the symlink)"
                    )
                continue
            mode = stat.S_IMODE(entry.lstat().st_mode)
            entry.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    tree.chmod(0o555)


def remove_tree(tree: Path) -> None:
    """Delete a (possibly sealed) tree."""
    if not tree.exists() or tree.is_symlink():
        return
    tree.chmod(0o700)
    for current, dirs, _ in os.walk(tree):
        for name in dirs:
            entry = Path(current) / name
            if not entry.is_symlink():
                entry.chmod(0o700)
    shutil.rmtree(tree, ignore_errors=True)


def replace_dir(partial: Path, target: Path) -> None:
    """Move ``partial`` to ``target``; if another writer got there first, keep theirs."""
    try:
        partial.rename(target)
    except OSError as exc:
        remove_tree(partial)
        if not target.is_dir():
            raise FetchError(f"cannot create {target}: {exc}") from exc
