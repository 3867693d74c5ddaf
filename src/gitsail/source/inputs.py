"""Which files a render of an app reads, and the content digest over exactly those files.

The render cache is keyed by this digest, not by commit: in a monorepo a commit to one app
must not re-render the others. So the digest covers the files the render tool will open:

- a plain directory: every file under the app's path;
- a kustomization: the kustomization file, then every local file or directory it names
  (``resources``, ``bases``, ``components``, patches of all three styles, generator
  ``files``/``envs``, ``crds``, ``configurations``, ``openapi.path``, ``replacements``,
  ``transformers``/``generators``/``validators`` given as files, ``helmCharts`` charts and
  values), following directories into their own kustomizations, each visited once;
- a Helm chart: every file of the chart (and of ``file://`` dependencies) plus the value
  files the app names;
- Jsonnet in a plain directory: also every file its programs import next to themselves
  (``../common/x.libsonnet``); an import found only through a library directory (``libs``,
  which only the render knows) is unbounded.

A reference outside the repository root is an error (a render must not read the host's
files). A reference that cannot be bounded — a remote kustomize base, a Helm dependency that
is neither vendored nor local, a value file from another source — makes ``input_files``
return None, and the digest then covers the whole tree: correct, only less cacheable.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from gitsail.source.errors import InvalidSource, PathNotFound
from gitsail.source.jsonnet_imports import JsonnetImportError, imports

__all__ = ["KUSTOMIZATION_FILES", "detect_tool", "input_digest", "input_files", "tree_files"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SKIP_DIRS = {".git"}
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|[\w.-]+\.[a-z]{2,}(?::\d+)?/)", re.IGNORECASE)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class _Unbounded(Exception):
    """The inputs reach outside what we can see (a remote reference)."""


def detect_tool(directory: Path) -> str:
    """``kustomize`` | ``helm`` | ``directory`` for an app directory, by its marker files."""
    if any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        return "kustomize"
    if (directory / "Chart.yaml").is_file():
        return "helm"
    return "directory"


def tree_files(directory: Path) -> Iterator[Path]:
    """Every file under ``directory`` (not following directory symlinks), ``.git`` skipped."""
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        base = Path(current)
        for name in sorted(files):
            yield base / name
        for name in dirs:
            if (base / name).is_symlink():
                yield base / name


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(errors="replace"), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.files: set[Path] = set()
        self.visited: set[Path] = set()

    # -- paths ---------------------------------------------------------------------------

    def inside(self, base: Path, ref: str, what: str) -> Path:
        """``ref`` relative to ``base``, symlinks resolved, refused if it leaves the root."""
        target = Path(os.path.normpath(base / ref)).resolve()
        if target != self.root and self.root not in target.parents:
            rel = os.path.relpath(base, self.root)
            raise InvalidSource(
                f"{what} {ref!r} in {rel!r} points outside the repository; "
                "only files inside the repository can be rendered"
            )
        return target

    def add_file(self, path: Path) -> None:
        if path.is_file():
            self.files.add(path)

    def add_tree(self, directory: Path) -> None:
        if directory in self.visited:
            return
        self.visited.add(directory)
        for file in tree_files(directory):
            resolved = self.inside(file.parent, file.name, "symlink")
            if resolved.is_dir():
                self.add_tree(resolved)
            else:
                self.add_file(resolved)

    # -- kustomize -----------------------------------------------------------------------

    def ref(self, base: Path, ref: str, what: str, *, directory_ok: bool = True) -> None:
        """A file or directory named by a kustomization; remote references are unbounded."""
        ref = ref.strip()
        if not ref:
            return
        local = Path(os.path.normpath(base / ref))
        if not local.exists() and not local.is_symlink():
            if _REMOTE.match(ref) or "?ref=" in ref or "//" in ref:
                raise _Unbounded(ref)
            return  # missing: the render reports it
        target = self.inside(base, ref, what)
        if target.is_dir() and directory_ok:
            self.kustomization(target)
        else:
            self.add_file(target)

    def kustomization(self, directory: Path) -> None:
        if directory in self.visited:
            return
        kfile = next(
            (directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None
        )
        if kfile is None:
            self.add_tree(directory)
            return
        self.visited.add(directory)
        self.add_file(kfile.resolve())
        doc = _load_yaml(kfile)
        if not isinstance(doc, dict):
            return
        for key in ("resources", "bases", "components"):
            for ref in _strings(doc.get(key)):
                self.ref(directory, ref, key)
        for key in ("transformers", "generators", "validators"):
            for ref in _strings(doc.get(key)):
                if "\n" not in ref:
                    self.ref(directory, ref, key)
        for key in ("crds", "configurations"):
            for ref in _strings(doc.get(key)):
                self.ref(directory, ref, key, directory_ok=False)
        for ref in _strings(doc.get("patchesStrategicMerge")):
            if "\n" not in ref and not ref.lstrip().startswith(("{", "apiVersion:")):
                self.ref(directory, ref, "patchesStrategicMerge", directory_ok=False)
        for key in ("patches", "patchesJson6902", "replacements"):
            for entry in _dicts(doc.get(key)):
                for ref in _strings(entry.get("path")):
                    self.ref(directory, ref, key, directory_ok=False)
        openapi = doc.get("openapi")
        if isinstance(openapi, dict):
            for ref in _strings(openapi.get("path")):
                self.ref(directory, ref, "openapi.path", directory_ok=False)
        for key in ("configMapGenerator", "secretGenerator"):
            for gen in _dicts(doc.get(key)):
                for file_entry in _strings(gen.get("files")):
                    source = file_entry.split("=", 1)[-1]
                    self.ref(directory, source, f"{key}.files", directory_ok=False)
                for env_file in [*_strings(gen.get("envs")), *_strings(gen.get("env"))]:
                    self.ref(directory, env_file, f"{key}.envs", directory_ok=False)
        self.helm_charts(directory, doc)

    def helm_charts(self, directory: Path, doc: dict[str, Any]) -> None:
        globals_ = doc.get("helmGlobals")
        chart_home = "charts"
        if isinstance(globals_, dict) and isinstance(globals_.get("chartHome"), str):
            chart_home = globals_["chartHome"]
        for chart in _dicts(doc.get("helmCharts")):
            name = str(chart.get("name") or "")
            version = str(chart.get("version") or "")
            home = self.inside(directory, chart_home, "helmGlobals.chartHome")
            candidates = [home / f"{name}-{version}" / name, home / name] if version else []
            candidates.append(home / name)
            local = next((c for c in candidates if name and c.is_dir()), None)
            if local is not None:
                self.helm_chart(self.inside(local.parent, local.name, "helmCharts chart"))
            elif name:
                raise _Unbounded(name)  # kustomize would pull it from chart.repo
            for ref in [
                *_strings(chart.get("valuesFile")),
                *_strings(chart.get("additionalValuesFiles")),
            ]:
                self.value_file(directory, ref)

    # -- helm ----------------------------------------------------------------------------

    def helm_chart(self, directory: Path) -> None:
        if directory in self.visited:
            return
        self.add_tree(directory)
        chart = _load_yaml(directory / "Chart.yaml")
        deps = chart.get("dependencies") if isinstance(chart, dict) else None
        charts_dir = directory / "charts"
        vendored = {p.name for p in charts_dir.iterdir()} if charts_dir.is_dir() else set()
        for dep in _dicts(deps):
            repo = str(dep.get("repository") or "")
            name = str(dep.get("name") or "")
            if repo.startswith("file://"):
                self.helm_chart(self.inside(directory, repo.removeprefix("file://"), "dependency"))
            elif not any(v == name or v.startswith(f"{name}-") for v in vendored):
                raise _Unbounded(name)

    # -- jsonnet -------------------------------------------------------------------------

    def jsonnet_imports(self) -> None:
        pending = [f for f in self.files if f.suffix in (".jsonnet", ".libsonnet")]
        while pending:
            program = pending.pop()
            try:
                found = imports(program.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, JsonnetImportError):
                raise _Unbounded(program.name) from None  # the render reports it
            for item in found:
                # go-jsonnet looks next to the importing file first; anything else goes
                # through the library path, which only the render options know.
                if not Path(os.path.normpath(program.parent / item.path)).exists():
                    raise _Unbounded(item.path)
                target = self.inside(program.parent, item.path, f"jsonnet {item.kind}")
                if target.is_file() and target not in self.files:
                    self.files.add(target)
                    if item.kind == "import":
                        pending.append(target)

    def value_file(self, base: Path, ref: str) -> None:
        if ref.startswith("$") or _REMOTE.match(ref):
            raise _Unbounded(ref)
        self.add_file(self.inside(base, ref, "value file"))


def _app_dir(root: Path, path: str) -> Path:
    collector = _Collector(root)
    rel = path.strip().strip("/") or "."
    directory = Path(os.path.normpath(collector.root / rel))
    if not directory.exists():
        raise PathNotFound(f"path {path!r} does not exist in the repository")
    return collector.inside(collector.root, rel, "path")


def input_files(
    root: Path,
    path: str,
    *,
    tool_hint: str | None = None,
    value_files: Sequence[str] = (),
) -> list[Path] | None:
    """The files a render of ``root/path`` reads (absolute, sorted), or None if unbounded.

    ``tool_hint`` is ``kustomize``, ``helm`` or ``directory`` (detected when None; any other
    tool cannot be bounded). ``value_files`` are Helm value files relative to ``path``.
    Raises PathNotFound if ``path`` is missing, InvalidSource if a reference leaves ``root``.
    """
    collector = _Collector(root)
    directory = _app_dir(root, path)
    tool = tool_hint or detect_tool(directory)
    try:
        if directory.is_file():
            collector.add_file(directory)
        elif tool == "kustomize":
            collector.kustomization(directory)
            if (directory / "Chart.yaml").is_file():
                collector.helm_chart(directory)
        elif tool == "helm":
            collector.helm_chart(directory)
        elif tool == "directory":
            collector.add_tree(directory)
            collector.jsonnet_imports()
        else:
            return None
        for ref in value_files:
            collector.value_file(directory, ref)
    except _Unbounded:
        return None
    return sorted(collector.files, key=lambda p: p.relative_to(collector.root).as_posix())


def _digest(root: Path, files: Iterable[Path], domain: bytes) -> str:
    digest = hashlib.sha256(domain)
    for file in files:
        rel = file.relative_to(root).as_posix()
        content = hashlib.sha256(file.read_bytes()).hexdigest()
        digest.update(f"{len(rel)}:{rel}\0{content}\n".encode())
    return "sha256:" + digest.hexdigest()


def input_digest(
    root: Path,
    path: str,
    *,
    tool_hint: str | None = None,
    value_files: Sequence[str] = (),
) -> str:
    """``sha256:<hex>`` over the relative paths and contents of ``input_files``.

    Falls back to every file of the tree when the inputs cannot be bounded.
    """
    resolved = root.resolve()
    files = input_files(resolved, path, tool_hint=tool_hint, value_files=value_files)
    if files is not None:
        return _digest(resolved, files, b"gitsail-inputs-v1\n")
    everything = [f.resolve() for f in tree_files(resolved) if f.is_file()]
    inside = sorted(
        (f for f in everything if resolved in f.parents),
        key=lambda p: p.relative_to(resolved).as_posix(),
    )
    return _digest(resolved, inside, b"gitsail-tree-v1\n")
