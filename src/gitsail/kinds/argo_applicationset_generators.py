"""ApplicationSet generators: from a generator record to parameter sets.

Each result is a list of ``(template, params)``: the template the set (or the generator's
own ``template``) gives, and one parameter set, flat for fasttemplate
(``{"path.basename": "guestbook"}``) and nested for goTemplate
(``{"path": {"basename": "guestbook"}}``), as Argo CD's documentation shows for each
generator:

- ``list``: each element (and each item of ``elementsYaml``, itself filled with nothing but
  read as a YAML list); an element's ``values`` map becomes ``values.<key>``.
- ``clusters``: Argo CD cluster Secrets (``argocd.argoproj.io/secret-type: cluster``) in the
  control namespace, plus the implicit ``in-cluster`` (``https://kubernetes.default.svc``,
  no labels) unless a Secret names that server; the ``selector`` reads the Secret's labels.
  Parameters ``name``, ``nameNormalized``, ``server``, ``project``, ``metadata.labels.*``,
  ``metadata.annotations.*`` and ``values.*`` (values filled with the cluster's parameters).
- ``git``: a checkout of ``repoURL`` at ``revision`` (the ``Sources`` seam). ``directories``:
  every directory matching a ``path`` glob (``*`` within one path segment, as Go's
  ``path.Match``) and no ``exclude`` glob. ``files``: every file matching a glob (``*``
  crossing ``/``, as ``git ls-files`` globs), read as JSON or YAML (a list makes one set per
  item), nested keys flattened for fasttemplate. ``path``, ``path.basename``,
  ``path.basenameNormalized``, ``path.filename``, ``path.filenameNormalized``, ``path[N]``
  (goTemplate: ``.path.path``, ``.path.segments``), under ``pathParamPrefix`` when given.
- ``matrix``: every pair of the two children's sets; the second child's spec is filled with
  each set of the first (so a git path can name a cluster), parameters combined (a key with
  two different values is an error under fasttemplate).
- ``merge``: the first child's sets, each updated by the sets of later children that agree
  on every ``mergeKeys`` value; sets of later children that match none are dropped.

Every result is bounded (``Policy.appset_parameter_sets``), every file read is bounded
(``Policy.appset_file_bytes``); a breach is a ``GeneratorError``, so nothing is deleted.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from gitsail.kinds.argo_applicationset import (
    AppSet,
    ClustersGenerator,
    Generator,
    GitGenerator,
    ListGenerator,
    MatrixGenerator,
    MergeGenerator,
    flatten,
    merge_template,
    parse_generator,
    render_value,
)
from gitsail.kinds.errors import SpecError
from gitsail.kinds.gotemplate import TemplateError
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source import redact_text

__all__ = [
    "IN_CLUSTER",
    "Cluster",
    "Generated",
    "GeneratorError",
    "Sources",
    "cluster_from_secret",
    "generate",
]

IN_CLUSTER = "https://kubernetes.default.svc"

ParamSet = tuple[Obj, dict[str, Any]]  # (template, params)


class GeneratorError(Exception):
    """A generator could not produce its parameter sets (git unreachable, a bad file, over
    a limit): the set keeps every Application it has."""


@dataclass(frozen=True)
class Cluster:
    name: str
    server: str
    project: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


def cluster_from_secret(secret: Obj) -> Cluster | None:
    """A cluster Secret's name, server and metadata (its credentials are never read here)."""
    meta = secret.get("metadata") or {}
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}

    def field(key: str) -> str:
        if key in string_data:
            return str(string_data[key])
        raw = data.get(key)
        if not raw:
            return ""
        try:
            return base64.b64decode(raw).decode()
        except ValueError:
            return ""

    server = field("server").rstrip("/")
    if not server:
        return None
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    annotations = {
        str(k): str(v)
        for k, v in (meta.get("annotations") or {}).items()
        # gitsail's connection status (controller/clusters.py) is not the user's metadata
        if not str(k).startswith("status.gitsail.io/")
    }
    return Cluster(
        name=field("name") or server,
        server=server,
        project=field("project"),
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
    )


class Sources(Protocol):
    """What generators read: the registered clusters and a checkout of a repository."""

    async def clusters(self) -> list[Cluster]: ...

    async def checkout(self, repo_url: str, revision: str) -> Path: ...


@dataclass(frozen=True)
class Generated:
    sets: tuple[ParamSet, ...]
    requeue_after: float | None  # the shortest requeueAfterSeconds of a polling generator


async def generate(appset: AppSet, sources: Sources, policy: Policy = DEFAULT_POLICY) -> Generated:
    """Every parameter set of the set's generators, in order; ``GeneratorError`` when any
    generator fails."""
    run = _Run(appset, sources, policy)
    sets: list[ParamSet] = []
    for generator in appset.generators:
        sets += await run.generator(generator, appset.template)
        run.check(len(sets))
    return Generated(tuple(sets), run.requeue)


class _Run:
    def __init__(self, appset: AppSet, sources: Sources, policy: Policy) -> None:
        self.appset = appset
        self.go = appset.go_template
        self.sources = sources
        self.policy = policy
        self.requeue: float | None = None
        self._clusters: list[Cluster] | None = None

    def check(self, count: int) -> None:
        limit = self.policy.appset_parameter_sets
        if count > limit:
            raise GeneratorError(
                f"the generators made more than {limit} parameter sets "
                "(GITSAIL_APPSET_PARAMETER_SETS)"
            )

    async def generator(self, generator: Generator, template: Obj) -> list[ParamSet]:
        template = merge_template(template, generator.template)
        spec = generator.spec
        if isinstance(spec, ListGenerator):
            params = self.list_params(spec)
        elif isinstance(spec, ClustersGenerator):
            params = await self.cluster_params(spec)
        elif isinstance(spec, GitGenerator):
            params = await self.git_params(spec)
        elif isinstance(spec, MatrixGenerator):
            return self.select(generator, await self.matrix(spec, template))
        else:
            return self.select(generator, await self.merge(spec, template))
        self.check(len(params))
        return self.select(generator, [(template, p) for p in params])

    def select(self, generator: Generator, sets: list[ParamSet]) -> list[ParamSet]:
        if generator.selector.empty:
            return sets
        return [s for s in sets if generator.selector.matches(flatten(s[1]))]

    # -- list --------------------------------------------------------------------------------

    def list_params(self, spec: ListGenerator) -> list[dict[str, Any]]:
        elements = list(spec.elements)
        if spec.elements_yaml:
            try:
                loaded = yaml.safe_load(spec.elements_yaml)
            except yaml.YAMLError as exc:
                raise GeneratorError(f"list generator: elementsYaml is not YAML: {exc}") from None
            if not isinstance(loaded, list) or not all(isinstance(e, dict) for e in loaded):
                raise GeneratorError("list generator: elementsYaml must be a list of maps")
            elements += loaded
        if self.go:
            return [dict(e) for e in elements]
        out = []
        for element in elements:
            params: dict[str, Any] = {}
            for key, value in element.items():
                if key == "values" and isinstance(value, dict):
                    params.update(flatten(value, "values"))
                elif isinstance(value, (dict, list)):
                    params[str(key)] = json.dumps(value, separators=(",", ":"))
                else:
                    params[str(key)] = value
            out.append(params)
        return out

    # -- clusters ------------------------------------------------------------------------------

    async def all_clusters(self) -> list[Cluster]:
        if self._clusters is None:
            found = await self.sources.clusters()
            if not any(c.server == IN_CLUSTER for c in found):
                found = [Cluster("in-cluster", IN_CLUSTER), *found]
            self._clusters = found
        return self._clusters

    async def cluster_params(self, spec: ClustersGenerator) -> list[dict[str, Any]]:
        out = []
        for cluster in await self.all_clusters():
            labels = dict(cluster.labels)
            if not spec.selector.matches(labels):
                continue
            nested: dict[str, Any] = {
                "name": cluster.name,
                "nameNormalized": _normalized(cluster.name),
                "server": cluster.server,
                "project": cluster.project,
                "metadata": {"labels": labels, "annotations": dict(cluster.annotations)},
            }
            params = nested if self.go else flatten(nested)
            if spec.values:
                values = self.fill(spec.values, params, "clusters generator values")
                if self.go:
                    params = {**params, "values": values}
                else:
                    params = {**params, **flatten(values, "values")}
            out.append(params)
        return out

    def fill(self, value: Any, params: Mapping[str, Any], what: str) -> Any:
        try:
            return render_value(value, params, go=self.go, missingkey=self.appset.missingkey)
        except TemplateError as exc:
            raise GeneratorError(f"{what}: {exc}") from None

    # -- git -----------------------------------------------------------------------------------

    async def git_params(self, spec: GitGenerator) -> list[dict[str, Any]]:
        self.requeue = (
            spec.requeue_after if self.requeue is None else min(self.requeue, spec.requeue_after)
        )
        try:
            root = await self.sources.checkout(spec.repo_url, spec.revision)
        except GeneratorError:
            raise
        except Exception as exc:  # any fetch failure keeps every app
            raise GeneratorError(redact_text(f"git generator: {spec.repo_url}: {exc}")) from exc
        if spec.directories:
            found = [
                self.path_params(d, None, spec.path_param_prefix) for d in self._dirs(root, spec)
            ]
            contents: list[dict[str, Any]] = [{} for _ in found]
        else:
            found, contents = [], []
            for rel in self._files(root, spec):
                for item in self._read(root, rel):
                    found.append(
                        self.path_params(posixpath.dirname(rel), rel, spec.path_param_prefix)
                    )
                    contents.append(item)
                    self.check(len(found))
        out = []
        for path_params, content in zip(found, contents, strict=True):
            flat = content if self.go else flatten(content)
            params: dict[str, Any] = {**flat, **path_params}
            if spec.values:
                values = self.fill(spec.values, params, "git generator values")
                if self.go:
                    params["values"] = values
                else:
                    params.update(flatten(values, "values"))
            out.append(params)
        return out

    def _walk(self, root: Path) -> tuple[list[str], list[str]]:
        dirs: list[str] = []
        files: list[str] = []
        limit = self.policy.appset_parameter_sets * 10
        for current, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d != ".git")
            rel = Path(current).relative_to(root).as_posix()
            for d in subdirs:
                dirs.append(d if rel == "." else f"{rel}/{d}")
            for n in sorted(names):
                files.append(n if rel == "." else f"{rel}/{n}")
            if len(dirs) + len(files) > limit:
                raise GeneratorError(f"git generator: the repository has over {limit} entries")
        return dirs, files

    def _dirs(self, root: Path, spec: GitGenerator) -> list[str]:
        dirs, _ = self._walk(root)
        include = [p.path for p in spec.directories if not p.exclude]
        exclude = [p.path for p in spec.directories if p.exclude]
        return [
            d
            for d in dirs
            if any(_path_match(p, d) for p in include)
            and not any(_path_match(p, d) for p in exclude)
        ]

    def _files(self, root: Path, spec: GitGenerator) -> list[str]:
        _, files = self._walk(root)
        return [f for f in files if any(fnmatch.fnmatchcase(f, p.path) for p in spec.files)]

    def _read(self, root: Path, rel: str) -> list[dict[str, Any]]:
        path = root / rel
        if path.is_symlink():
            raise GeneratorError(f"git files generator: {rel} is a symbolic link; refused")
        limit = self.policy.appset_file_bytes
        if path.stat().st_size > limit:
            raise GeneratorError(
                f"git files generator: {rel} is over {limit} bytes (GITSAIL_APPSET_FILE_BYTES)"
            )
        try:
            loaded = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise GeneratorError(f"git files generator: {rel} is not JSON or YAML: {exc}") from None
        items = loaded if isinstance(loaded, list) else [loaded]
        if not all(isinstance(i, dict) for i in items):
            raise GeneratorError(f"git files generator: {rel} must hold a map or a list of maps")
        return items

    def path_params(self, directory: str, filename: str | None, prefix: str) -> dict[str, Any]:
        segments = [s for s in directory.split("/") if s and s != "."]
        basename = segments[-1] if segments else ""
        nested: dict[str, Any] = {
            "path": "/".join(segments),
            "basename": basename,
            "basenameNormalized": _normalized(basename),
        }
        if filename is not None:
            base = posixpath.basename(filename)
            nested["filename"] = base
            nested["filenameNormalized"] = _normalized(base)
        if self.go:
            nested["segments"] = segments
            key = {"path": nested}
            return {prefix: key} if prefix else key
        head = f"{prefix}.path" if prefix else "path"
        flat: dict[str, Any] = {head: nested["path"]}
        for k, v in nested.items():
            if k != "path":
                flat[f"{head}.{k}"] = v
        for i, segment in enumerate(segments):
            flat[f"{head}[{i}]"] = segment
        return flat

    # -- matrix and merge ----------------------------------------------------------------------

    async def matrix(self, spec: MatrixGenerator, template: Obj) -> list[ParamSet]:
        first = parse_generator(spec.children[0], "matrix.generators[0]")
        out: list[ParamSet] = []
        for _, params in await self.generator(first, template):
            raw = self.fill(spec.children[1], params, "matrix: the second generator")
            try:
                second = parse_generator(raw, "matrix.generators[1]")
            except SpecError as exc:
                raise GeneratorError(f"matrix: {exc}") from None
            for child_template, child_params in await self.generator(second, template):
                out.append((child_template, self.combine(params, child_params)))
                self.check(len(out))
        return out

    def combine(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        if self.go:
            return _deep_merge(dict(b), a)  # the first child's values win, as Argo does
        out = dict(a)
        for key, value in b.items():
            if key in out and out[key] != value:
                raise GeneratorError(
                    f"matrix: the key {key!r} has two values ({out[key]!r} and {value!r})"
                )
            out[key] = value
        return out

    async def merge(self, spec: MergeGenerator, template: Obj) -> list[ParamSet]:
        children = [
            parse_generator(c, f"merge.generators[{i}]") for i, c in enumerate(spec.children)
        ]
        base = await self.generator(children[0], template)
        for child in children[1:]:
            by_key: dict[tuple[str, ...], dict[str, Any]] = {}
            for _, params in await self.generator(child, template):
                key = self.merge_key(params, spec.merge_keys)
                if key is not None:
                    by_key[key] = params
            merged: list[ParamSet] = []
            for tmpl, params in base:
                key = self.merge_key(params, spec.merge_keys)
                other = by_key.get(key) if key is not None else None
                if other is None:
                    merged.append((tmpl, params))
                elif self.go:
                    merged.append((tmpl, _deep_merge(params, other)))
                else:
                    merged.append((tmpl, {**params, **other}))
            base = merged
        return base

    def merge_key(self, params: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, ...] | None:
        flat = flatten(params) if self.go else {k: str(v) for k, v in params.items()}
        if not all(k in flat for k in keys):
            return None
        return tuple(str(flat[k]) for k in keys)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _normalized(name: str) -> str:
    # Argo's *Normalized parameters: lowercase, anything outside [a-z0-9-.] becomes '-'.
    return re.sub(r"[^a-z0-9.-]", "-", name.lower())


def _path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never cross ``/``."""
    regex = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            regex.append("[^/]*")
        elif ch == "?":
            regex.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                return False
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            regex.append(f"[{body}]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            regex.append(re.escape(pattern[i]))
        else:
            regex.append(re.escape(ch))
        i += 1
    return re.fullmatch("".join(regex), name) is not None
