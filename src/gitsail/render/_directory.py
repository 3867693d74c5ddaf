"""Plain directories of manifests, read in Python with Argo CD's rules.

Only the app directory's own files are read unless ``recurse`` is set; ``.yaml``, ``.yml``,
``.json`` and ``.jsonnet`` files count (Jsonnet files are evaluated by ``_jsonnet.Jsonnet``;
``.libsonnet`` files are only imported, never rendered on their own).
``include``/``exclude`` are globs matched against the path relative to the app directory,
as Argo CD matches them (gobwas/glob without separators: ``*`` also crosses ``/``; ``?``,
``[a-z]``, ``[!x]`` and ``{a,b}`` alternation); exclude wins.
Files are read in lexical path order, the order of Go's ``filepath.Walk``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from gitsail.model import Obj
from gitsail.render._errors import RenderError
from gitsail.render._manifests import load_manifests
from gitsail.render._options import DirectoryOptions
from gitsail.render._workspace import inside

__all__ = [
    "glob_match",
    "manifest_files",
    "read_directory",
    "render_directory",
    "render_directory_async",
    "uses_jsonnet",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json", ".jsonnet")
JSONNET_SUFFIX = ".jsonnet"


def _translate(pattern: str) -> str:
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                raise ValueError(f"unterminated [ in glob {pattern!r}")
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    if depth:
        raise ValueError(f"unterminated {{ in glob {pattern!r}")
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern), re.DOTALL)


def glob_match(pattern: str, path: str) -> bool:
    """Argo CD's glob match of ``pattern`` against a whole relative path."""
    try:
        return _compile(pattern).fullmatch(path) is not None
    except (ValueError, re.error) as err:
        raise RenderError(f"bad glob {pattern!r}: {err}") from None


def manifest_files(app_dir: Path, root: Path, options: DirectoryOptions) -> list[Path]:
    """The manifest files of ``app_dir`` in render order, checked to stay inside ``root``."""
    real_root = root.resolve()
    # os.walk does not descend into symlinked directories, so a file reached through plain
    # directories lies inside app_dir's real path: resolve app_dir once, and a file only
    # when it is itself a symlink (a realpath per file was 5 % of a controller's CPU).
    if not inside(app_dir.resolve(), real_root):
        raise RenderError("the app directory is a symlink that points outside the repository")
    found: list[tuple[tuple[str, ...], Path]] = []
    for current, dirs, files in os.walk(app_dir):
        base = Path(current)
        dirs[:] = [] if not options.recurse else sorted(d for d in dirs if d != ".git")
        for name in files:
            if not name.endswith(MANIFEST_SUFFIXES):
                continue
            path = base / name
            rel = path.relative_to(app_dir).as_posix()
            if options.exclude and glob_match(options.exclude, rel):
                continue
            if options.include and not glob_match(options.include, rel):
                continue
            if path.is_symlink() and not inside(path.resolve(), real_root):
                raise RenderError(f"{rel} is a symlink that points outside the repository")
            found.append((tuple(rel.split("/")), path))
    return [path for _, path in sorted(found)]


def uses_jsonnet(app_dir: Path, root: Path, options: DirectoryOptions | None) -> bool:
    """Whether a render of ``app_dir`` evaluates any Jsonnet file."""
    if not app_dir.is_dir():
        return False
    files = manifest_files(app_dir, root, options or DirectoryOptions())
    return any(f.name.endswith(JSONNET_SUFFIX) for f in files)


def read_directory(app_dir: Path, root: Path, options: DirectoryOptions | None) -> list[Obj | Path]:
    """The objects of the YAML/JSON files, with each Jsonnet file's path in its place."""
    if not app_dir.is_dir():
        raise RenderError(f"app directory {app_dir.name or app_dir} does not exist")
    parts: list[Obj | Path] = []
    for path in manifest_files(app_dir, root, options or DirectoryOptions()):
        if path.name.endswith(JSONNET_SUFFIX):
            parts.append(path)
            continue
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RenderError(f"{rel}: cannot read: {err}") from None
        parts.extend(load_manifests(text, source=rel))
    return parts


def render_directory(app_dir: Path, root: Path, options: DirectoryOptions | None) -> list[Obj]:
    """Every object of every manifest file, in file order then document order.

    Without a Jsonnet evaluator a Jsonnet file is an error, never an empty render.
    """
    objs: list[Obj] = []
    for part in read_directory(app_dir, root, options):
        if isinstance(part, Path):
            rel = part.relative_to(root).as_posix()
            raise RenderError(f"{rel}: Jsonnet files need the jsonnet binary to render")
        objs.append(part)
    return objs


async def render_directory_async(
    app_dir: Path,
    root: Path,
    options: DirectoryOptions | None,
    *,
    jsonnet: Callable[[Path], Awaitable[list[Obj]]],
) -> list[Obj]:
    """``render_directory`` with each Jsonnet file evaluated by ``jsonnet``, in file order."""
    objs: list[Obj] = []
    for part in await asyncio.to_thread(read_directory, app_dir, root, options):
        if isinstance(part, Path):
            objs.extend(await jsonnet(part))
        else:
            objs.append(part)
    return objs
