"""Helm: ``helm template`` called the way Argo CD's repo-server calls it.

``helm template <release> <chart> --namespace <ns> [--kube-version v] [--api-versions a]…
[--include-crds] --skip-tests [-f file]… [--set|--set-string|--set-file k=v]…
[--skip-schema-validation]``.

Values, lowest precedence first: the chart's values.yaml, ``valueFiles`` (in order; globs
expanded in place, sorted), then ``valuesObject`` — or, when it is not set, ``values`` (Argo CD
uses one or the other, never both) — written to a private file, then ``parameters``. Value
files are relative to the chart directory (a leading ``/`` means the repository root, as in
Argo CD) and must resolve inside the repository; remote and ``$ref`` value files are refused.

Local ``file://`` dependencies missing from ``charts/`` are built with ``helm dependency
build --skip-refresh`` in a private copy of the artifact; remote ones would need the network
at render time and are an error that says how to vendor them. Helm's cache, config and data
homes are private directories under the renderer's work directory, and plugins are off.
"""

from __future__ import annotations

import asyncio
import glob
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gitsail.model import Obj
from gitsail.render._errors import RenderError
from gitsail.render._manifests import load_manifests, load_yaml_documents, read_yaml_file
from gitsail.render._options import HelmOptions, RenderOptions
from gitsail.render._process import ToolRunner
from gitsail.render._workspace import copy_artifact, inside

__all__ = ["helm_template", "missing_dependencies"]

_SENSITIVE = re.compile(r"pass|secret|token|key|cred|auth|cert|private", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?\[]")


def _escape_set_value(value: str) -> str:
    # `{a,b}` is Helm's list syntax; elsewhere an unescaped comma would split the flag.
    if value.startswith("{") and value.endswith("}"):
        return value
    return re.sub(r"(?<!\\),", r"\\,", value)


def _secret_values(helm: HelmOptions) -> Iterator[str]:
    for param in helm.parameters:
        if _SENSITIVE.search(param.name) and len(param.value) >= 4:
            yield param.value

    def walk(node: Any, sensitive: bool) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, sensitive or bool(_SENSITIVE.search(str(key))))
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, sensitive)
        elif sensitive and isinstance(node, str) and len(node) >= 4:
            yield node

    yield from walk(helm.values_object or {}, False)


def _resolve_in_root(raw: str, chart_dir: Path, root: Path, what: str) -> Path:
    if "://" in raw:
        raise RenderError(f"{what} {raw!r}: remote files are not supported; commit it to the repo")
    if raw.startswith("$"):
        raise RenderError(f"{what} {raw!r}: multi-source $ref values are not supported")
    return root / raw.lstrip("/") if raw.startswith("/") else chart_dir / raw


def _value_files(helm: HelmOptions, chart_dir: Path, root: Path) -> list[Path]:
    real_root = root.resolve()
    out: list[Path] = []
    for raw in helm.value_files:
        candidate = _resolve_in_root(raw, chart_dir, root, "value file")
        if _GLOB_CHARS.search(raw):
            matches = [Path(p) for p in sorted(glob.glob(str(candidate)))]  # noqa: PTH207
        else:
            matches = [candidate] if candidate.exists() else []
        for match in matches:
            if not inside(match.resolve(), real_root):
                raise RenderError(f"value file {raw!r} resolves outside the repository")
        files = [m for m in matches if m.is_file()]
        if not files:
            if helm.ignore_missing_value_files:
                continue
            raise RenderError(
                f"value file {raw!r} not found (relative to the chart directory; "
                "set ignoreMissingValueFiles to skip missing files)"
            )
        out.extend(files)
    return out


def _inputs(helm: HelmOptions, chart_dir: Path, root: Path) -> tuple[list[Path], list[str]]:
    """Value files and ``--set-file`` specs, all checked to be files inside ``root``."""
    real_root = root.resolve()
    if not inside(chart_dir.resolve(), real_root):
        raise RenderError("the chart directory is outside the repository")
    file_params = []
    for item in helm.file_parameters:
        path = _resolve_in_root(item.path, chart_dir, root, "file parameter")
        if not inside(path.resolve(), real_root) or not path.is_file():
            raise RenderError(
                f"file parameter {item.name!r}: {item.path!r} is not a file in the repository"
            )
        file_params.append(f"{item.name}={path}")
    return _value_files(helm, chart_dir, root), file_params


def _inline_values(helm: HelmOptions) -> str:
    if helm.values_object:
        return json.dumps(helm.values_object)
    if not helm.values.strip():
        return ""
    docs = [data for _, data in load_yaml_documents(helm.values, source="spec.source.helm.values")]
    if len(docs) > 1 or (docs and docs[0] is not None and not isinstance(docs[0], dict)):
        raise RenderError("spec.source.helm.values must be one YAML mapping")
    return helm.values


def _chart_metadata(chart_dir: Path) -> dict[str, Any]:
    chart_yaml = chart_dir / "Chart.yaml"
    if not chart_yaml.is_file():
        raise RenderError("no Chart.yaml in the chart directory")
    text = read_yaml_file(chart_yaml, source="Chart.yaml")
    docs = [d for _, d in load_yaml_documents(text, source="Chart.yaml")]
    meta = docs[0] if docs else None
    if not isinstance(meta, dict):
        raise RenderError("Chart.yaml must be a mapping")
    return meta


def missing_dependencies(chart_dir: Path) -> list[dict[str, Any]]:
    """Dependencies in Chart.yaml that ``charts/`` holds neither as a directory nor a .tgz."""
    deps = _chart_metadata(chart_dir).get("dependencies") or []
    charts = chart_dir / "charts"
    vendored = {p.name for p in charts.iterdir()} if charts.is_dir() else set()
    missing = []
    for dep in deps:
        if not isinstance(dep, dict) or not dep.get("name"):
            raise RenderError("Chart.yaml: every dependency needs a name")
        name = str(dep["name"])
        if name in vendored or any(
            v.startswith(f"{name}-") and v.endswith(".tgz") for v in vendored
        ):
            continue
        missing.append(dep)
    return missing


def _helm_env(runner: ToolRunner) -> dict[str, str]:
    base = runner.home / "helm"
    return {
        "HELM_CACHE_HOME": str(base / "cache"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_DATA_HOME": str(base / "data"),
        "HELM_NO_PLUGINS": "1",
    }


async def _build_dependencies(
    runner: ToolRunner, binary: Path, chart_dir: Path, root: Path, work: Path
) -> Path:
    missing = missing_dependencies(chart_dir)
    if not missing:
        return chart_dir
    for dep in missing:
        repo = str(dep.get("repository") or "")
        if not repo.startswith("file://"):
            raise RenderError(
                f"chart dependency {dep['name']!r} from {repo or 'no repository'} is not in "
                "charts/ and would need the network at render time; vendor it "
                "(`helm dependency build` and commit charts/) or use a file:// dependency"
            )
    copy = work / "src"
    copy_artifact(root, copy)
    chart_copy = copy / chart_dir.relative_to(root)
    await runner.run(
        [str(binary), "dependency", "build", str(chart_copy), "--skip-refresh"],
        cwd=chart_copy,
        what="helm dependency build",
        env=_helm_env(runner),
    )
    return chart_copy


async def helm_template(
    runner: ToolRunner,
    binary: Path,
    *,
    chart_dir: Path,
    root: Path,
    work: Path,
    options: RenderOptions,
    kube_version: str,
    api_versions: Sequence[str],
    display: str,
) -> list[Obj]:
    """Render the chart at ``chart_dir`` (inside ``root``); objects in Helm's output order."""
    helm = options.helm or HelmOptions()
    value_files, file_params = _inputs(helm, chart_dir, root)
    inline = _inline_values(helm)
    chart = await _build_dependencies(runner, binary, chart_dir, root, work)

    release = helm.release_name or options.app_name or chart_dir.name
    namespace = helm.namespace or options.namespace
    argv = [str(binary), "template", release, str(chart)]
    if namespace:
        argv += ["--namespace", namespace]
    if helm.kube_version or kube_version:
        argv += ["--kube-version", helm.kube_version or kube_version]
    for api_version in helm.api_versions or api_versions:
        argv += ["--api-versions", api_version]
    if not helm.skip_crds:
        argv.append("--include-crds")
    argv.append("--skip-tests")
    for path in value_files:
        argv += ["--values", str(path)]
    if inline:
        inline_file = work / "gitsail-inline-values.yaml"
        inline_file.write_text(inline, encoding="utf-8")
        argv += ["--values", str(inline_file)]
    for param in helm.parameters:
        flag = "--set-string" if param.force_string else "--set"
        argv += [flag, f"{param.name}={_escape_set_value(param.value)}"]
    for spec in file_params:
        argv += ["--set-file", spec]
    if helm.skip_schema_validation:
        argv.append("--skip-schema-validation")

    out = await runner.run(
        argv,
        cwd=work,
        what="helm template",
        env=_helm_env(runner),
        secrets=list(_secret_values(helm)),
    )
    text = out.decode("utf-8", "replace")
    return await asyncio.to_thread(
        load_manifests, text, source=f"helm template {display}", policy=runner.policy
    )
