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
files). The check fails closed: a ``kustomization.yaml`` or ``Chart.yaml`` it cannot read
(invalid YAML, not UTF-8, over the YAML limits, a reference that is not a string) is an
``InvalidSource`` naming the file, never skipped. Files are read the way kustomize's YAML
library reads them into string fields: every scalar is its text, whatever its tag (``!foo x``
is ``x``, ``123`` is ``"123"``), ``!!binary`` is its decoded text, aliases and ``<<`` merges
are expanded, duplicate keys are refused. So the walk sees the same references the tool
follows. A reference that cannot be bounded — a remote kustomize base, a Helm dependency that
is neither vendored nor local, a value file from another source — makes ``input_files``
return None, and the digest then covers the whole tree: correct, only less cacheable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source.boundedyaml import YAMLLimitError, check_document, check_stream, decode_text
from gitsail.source.errors import InvalidSource, PathNotFound
from gitsail.source.jsonnet_imports import JsonnetImportError, imports

__all__ = ["KUSTOMIZATION_FILES", "detect_tool", "input_digest", "input_files", "tree_files"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SKIP_DIRS = {".git"}
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|[\w.-]+\.[a-z]{2,}(?::\d+)?/)", re.IGNORECASE)

_LoaderBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_NULL_TEXT = re.compile(r"^(?:~|null|Null|NULL|)$")
_STANDARD_TAGS = (
    "null", "bool", "int", "float", "binary", "timestamp", "omap", "pairs", "set", "str",
    "seq", "map", "value", "yaml",
)  # fmt: skip


class _TextLoader(_LoaderBase):  # type: ignore[misc]
    """Scalars as their text, collections by node kind, whatever the tag (see above)."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        "<": [(_MERGE, re.compile(r"^<<$"))],
        **{ch: [(_NULL, _NULL_TEXT)] for ch in ("~", "n", "N", "")},
    }

    def construct_any(self, node: Node) -> Any:
        if node.tag == _NULL:
            return None
        if isinstance(node, ScalarNode):
            if node.tag == "tag:yaml.org,2002:binary":
                try:
                    raw = base64.b64decode("".join(str(node.value).split()), validate=True)
                except ValueError:  # binascii.Error, or a character outside ASCII
                    raise ConstructorError(
                        None, None, "invalid base64 in a !!binary value", node.start_mark
                    ) from None
                return raw.decode("utf-8", "replace")
            return str(node.value)
        if isinstance(node, SequenceNode):
            return [self.construct_object(child, deep=True) for child in node.value]
        return self.construct_mapping(node, deep=True)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        own = [pair for pair in node.value if pair[0].tag != _MERGE]
        seen: set[str] = set()
        for key_node, _ in own:
            if isinstance(key_node, ScalarNode) and key_node.value in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(str(key_node.value))
        if len(own) != len(node.value):
            self.flatten_mapping(node)  # merged pairs first; own pairs override them
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ConstructorError(
                    None, None, "a mapping key is not a scalar", key_node.start_mark
                )
            mapping[str(key_node.value)] = self.construct_object(value_node, deep=True)
        return mapping


for _tag in (None, *(f"tag:yaml.org,2002:{t}" for t in _STANDARD_TAGS)):
    _TextLoader.add_constructor(_tag, _TextLoader.construct_any)


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


def _load_yaml(path: Path, root: Path, policy: Policy) -> Any:
    """One YAML document read as kustomize reads it; InvalidSource if it cannot be read."""
    where = path.relative_to(root).as_posix() if root in path.parents else path.name
    try:
        text = decode_text(path.read_bytes(), where)
        check_stream(text, where, policy)
        loader = _TextLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            check_document(node, where, policy)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YAMLLimitError as err:
        raise InvalidSource(f"{err}; gitsail cannot check which files it references") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise InvalidSource(
            f"{where}{line}: {problem}; gitsail cannot check which files it references"
        ) from None
    except (yaml.YAMLError, RecursionError) as err:
        raise InvalidSource(f"{where}: invalid YAML ({type(err).__name__})") from None
    except OSError as err:
        raise InvalidSource(f"{where}: cannot read: {err.strerror or err}") from None


def _strings(value: Any, key: str, kfile: str) -> list[str]:
    """A string or a list of strings; anything else is refused (the tool would misread it)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidSource(
        f"{kfile}: {key} must be a list of strings; gitsail cannot check which files it references"
    )


def _string(value: Any, key: str, kfile: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise InvalidSource(f"{kfile}: {key} must be a string")


def _dicts(value: Any, key: str, kfile: str) -> list[dict[str, Any]]:
    """A list of mappings (or nothing); anything else is refused."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise InvalidSource(
        f"{kfile}: {key} must be a list of mappings; gitsail cannot check which files it references"
    )


def _mapping(value: Any, key: str, kfile: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise InvalidSource(f"{kfile}: {key} must be a mapping")


class _Collector:
    def __init__(self, root: Path, policy: Policy = DEFAULT_POLICY) -> None:
        self.root = root.resolve()
        self.policy = policy
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
        kfile = self.inside(directory, kfile.name, "kustomization file")
        self.add_file(kfile)
        where = kfile.relative_to(self.root).as_posix()
        doc = _load_yaml(kfile, self.root, self.policy)
        if doc is None:
            return  # an empty kustomization references nothing
        if not isinstance(doc, dict):
            raise InvalidSource(f"{where}: a kustomization must be a mapping")

        def strings(value: Any, key: str) -> list[str]:
            return _strings(value, key, where)

        def dicts(key: str) -> list[dict[str, Any]]:
            return _dicts(doc.get(key), key, where)

        for key in ("resources", "bases", "components"):
            for ref in strings(doc.get(key), key):
                self.ref(directory, ref, key)
        for key in ("transformers", "generators", "validators"):
            for ref in strings(doc.get(key), key):
                if "\n" not in ref:
                    self.ref(directory, ref, key)
        for key in ("crds", "configurations"):
            for ref in strings(doc.get(key), key):
                self.ref(directory, ref, key, directory_ok=False)
        for ref in strings(doc.get("patchesStrategicMerge"), "patchesStrategicMerge"):
            if "\n" not in ref and not ref.lstrip().startswith(("{", "apiVersion:")):
                self.ref(directory, ref, "patchesStrategicMerge", directory_ok=False)
        for key in ("patches", "patchesJson6902", "replacements"):
            for entry in dicts(key):
                for ref in strings(entry.get("path"), f"{key}[].path"):
                    self.ref(directory, ref, key, directory_ok=False)
        openapi = _mapping(doc.get("openapi"), "openapi", where)
        for ref in strings(openapi.get("path"), "openapi.path"):
            self.ref(directory, ref, "openapi.path", directory_ok=False)
        for key in ("configMapGenerator", "secretGenerator"):
            for gen in dicts(key):
                for file_entry in strings(gen.get("files"), f"{key}[].files"):
                    source = file_entry.split("=", 1)[-1]
                    self.ref(directory, source, f"{key}.files", directory_ok=False)
                for env_key in ("envs", "env"):
                    for env_file in strings(gen.get(env_key), f"{key}[].{env_key}"):
                        self.ref(directory, env_file, f"{key}.envs", directory_ok=False)
        self.helm_charts(directory, doc, where)

    def helm_charts(self, directory: Path, doc: dict[str, Any], where: str) -> None:
        globals_ = _mapping(doc.get("helmGlobals"), "helmGlobals", where)
        chart_home = _string(globals_.get("chartHome"), "helmGlobals.chartHome", where) or "charts"
        for chart in _dicts(doc.get("helmCharts"), "helmCharts", where):
            name = _string(chart.get("name"), "helmCharts[].name", where)
            version = _string(chart.get("version"), "helmCharts[].version", where)
            home = self.inside(directory, chart_home, "helmGlobals.chartHome")
            candidates = [home / f"{name}-{version}" / name, home / name] if version else []
            candidates.append(home / name)
            local = next((c for c in candidates if name and c.is_dir()), None)
            if local is not None:
                self.helm_chart(self.inside(local.parent, local.name, "helmCharts chart"))
            elif name:
                raise _Unbounded(name)  # kustomize would pull it from chart.repo
            for key in ("valuesFile", "additionalValuesFiles"):
                for ref in _strings(chart.get(key), f"helmCharts[].{key}", where):
                    self.value_file(directory, ref)

    # -- helm ----------------------------------------------------------------------------

    def helm_chart(self, directory: Path) -> None:
        if directory in self.visited:
            return
        self.add_tree(directory)
        chart_yaml = directory / "Chart.yaml"
        if not chart_yaml.is_file():
            return  # not a chart: helm reports it
        chart_file = self.inside(directory, "Chart.yaml", "Chart.yaml")
        where = chart_file.relative_to(self.root).as_posix()
        meta = _mapping(_load_yaml(chart_file, self.root, self.policy), "Chart.yaml", where)
        charts_dir = directory / "charts"
        vendored = {p.name for p in charts_dir.iterdir()} if charts_dir.is_dir() else set()
        for dep in _dicts(meta.get("dependencies"), "dependencies", where):
            repo = _string(dep.get("repository"), "dependencies[].repository", where)
            name = _string(dep.get("name"), "dependencies[].name", where)
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
    collector = _Collector(root)  # only for its path checks
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
    policy: Policy = DEFAULT_POLICY,
) -> list[Path] | None:
    """The files a render of ``root/path`` reads (absolute, sorted), or None if unbounded.

    ``tool_hint`` is ``kustomize``, ``helm`` or ``directory`` (detected when None; any other
    tool cannot be bounded). ``value_files`` are Helm value files relative to ``path``.
    Raises PathNotFound if ``path`` is missing, InvalidSource if a reference leaves ``root``
    or a file that names references cannot be read (never skipped).
    """
    collector = _Collector(root, policy)
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
    policy: Policy = DEFAULT_POLICY,
) -> str:
    """``sha256:<hex>`` over the relative paths and contents of ``input_files``.

    Falls back to every file of the tree when the inputs cannot be bounded.
    """
    resolved = root.resolve()
    files = input_files(resolved, path, tool_hint=tool_hint, value_files=value_files, policy=policy)
    if files is not None:
        return _digest(resolved, files, b"gitsail-inputs-v1\n")
    everything = [f.resolve() for f in tree_files(resolved) if f.is_file()]
    inside = sorted(
        (f for f in everything if resolved in f.parents),
        key=lambda p: p.relative_to(resolved).as_posix(),
    )
    return _digest(resolved, inside, b"gitsail-tree-v1\n")
