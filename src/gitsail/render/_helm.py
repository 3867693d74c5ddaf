r"""Helm: ``helm template`` called the way Argo CD's repo-server calls it.

``helm template --namespace=<ns> [--kube-version=v] [--api-versions=a]… [--include-crds]
--skip-tests [--values=file]… [--set|--set-string|--set-file=k=v]…
[--skip-schema-validation] -- <release> <chart>``.

Every value that reaches helm's argv is held to helm's (or Kubernetes') own rules first, and
nothing a tenant writes can be read as a flag: options are ``--flag=value``, positionals come
after ``--``. Release names follow Helm's rule (lowercase DNS-1123 subdomain, at most 53
characters), namespaces are DNS-1123 labels, ``kubeVersion`` is a version and each
``apiVersions`` entry a ``group/version[/Kind]`` (no commas: helm splits that flag on them).
``--set`` keys must be keys in helm's strvals syntax (``a.b[0].c``, ``\.`` for a literal dot)
and nothing more: an unescaped ``=`` or ``,`` would start a second assignment (with
``--set-file``, one that reads any file of the host). Values are escaped so helm reads back
exactly the text of the spec (``\``, ``,``, ``{`` and the other strvals characters get a
backslash); a value written as ``{a,b}`` is still Helm's list, element by element.

Values, lowest precedence first: the chart's values.yaml, ``valueFiles`` (in order; globs
expanded in place, sorted), then ``valuesObject`` — or, when it is not set, ``values`` (Argo CD
uses one or the other, never both) — written to a private file, then ``parameters``. Value
files are relative to the chart directory (a leading ``/`` means the repository root, as in
Argo CD) and must resolve inside the repository; remote and ``$ref`` value files are refused.
``fileParameters`` paths follow the same rule (a leading ``/`` is the repository root, never
the host's) and are escaped like values. A value file path may not contain a comma or a
quote: helm's flag parser splits ``--values`` on commas.

Helm follows symbolic links when it loads a chart, so before it runs the chart directory (and
every local ``file://`` dependency) is walked: a link that leaves the repository, or a file
that is not a regular file (a FIFO would hang helm), refuses the render and names the entry.
A chart's ``values.schema.json`` may only reference its own definitions (``$ref: "#/…"``):
helm's JSON-schema validator would otherwise load ``file://`` and ``http(s)://`` references
from the renderer's host and network.

Local ``file://`` dependencies missing from ``charts/`` are built with ``helm dependency
build --skip-refresh`` in a private copy of the artifact; remote ones would need the network
at render time and are an error that says how to vendor them. Helm's cache, config and data
homes are private directories under the renderer's work directory, and plugins are off.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gitsail.model import Obj
from gitsail.render._errors import RenderError
from gitsail.render._manifests import load_manifests, load_yaml_documents, read_yaml_file
from gitsail.render._options import HelmOptions, RenderOptions
from gitsail.render._process import ToolRunner
from gitsail.render._workspace import copy_artifact, inside, walk_inside

__all__ = [
    "check_api_version",
    "check_kube_version",
    "check_namespace",
    "check_release_name",
    "check_set_key",
    "helm_template",
    "missing_dependencies",
    "set_value",
]

_SENSITIVE = re.compile(r"pass|secret|token|key|cred|auth|cert|private", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?\[]")

# --- helm's own rules for what reaches its argv ----------------------------------------

RELEASE_NAME_MAX = 53  # Helm: names end up in labels and Secret names of 63 characters
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KUBE_VERSION = re.compile(r"^v?[0-9]+(\.[0-9]+){0,2}([-+][0-9A-Za-z.+-]*)?$")
_API_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(/[A-Za-z0-9][A-Za-z0-9.-]*){0,2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters helm's strvals parser gives a meaning to somewhere (keys stop at = [ , . ;
# values at , ; lists are { } ), each escaped with a backslash. An escaped character is
# always read literally, so escaping more than the position needs is harmless.
_STRVALS_SPECIAL = re.compile(r"([\\,=.\[\]{}])")
_PATH_SPECIAL = re.compile(r'[,"\x00-\x1f\x7f]')


def check_release_name(name: str, where: str) -> str:
    """``name`` if Helm accepts it as a release name; RenderError saying why not otherwise."""
    if len(name) > RELEASE_NAME_MAX or not _RELEASE_NAME.match(name):
        raise RenderError(
            f"{where} {name!r} is not a valid Helm release name (lowercase letters, digits, "
            f"'-' and '.', starting and ending with a letter or digit, at most "
            f"{RELEASE_NAME_MAX} characters); set spec.source.helm.releaseName to one"
        )
    return name


def check_namespace(name: str, where: str) -> str:
    """``name`` if it is a Kubernetes namespace name (DNS-1123 label)."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise RenderError(
            f"{where} {name!r} is not a valid namespace name (lowercase letters, digits and "
            "'-', starting and ending with a letter or digit, at most 63 characters)"
        )
    return name


def check_kube_version(version: str, where: str) -> str:
    """``version`` if helm can read it as ``--kube-version`` (``v1.30``, ``1.30.2+k3s1``)."""
    if len(version) > 64 or not _KUBE_VERSION.match(version):
        raise RenderError(
            f"{where} {version!r} is not a Kubernetes version (expected e.g. v1.30.2 or 1.30)"
        )
    return version


def check_api_version(api_version: str, where: str) -> str:
    """``api_version`` if it is ``version``, ``group/version`` or ``group/version/Kind``."""
    if len(api_version) > 512 or not _API_VERSION.match(api_version):
        raise RenderError(
            f"{where} {api_version!r} is not an API version (expected v1, apps/v1 or "
            "group/version/Kind; no commas or spaces)"
        )
    return api_version


def check_set_key(key: str, where: str) -> str:
    """``key`` if helm's strvals parser reads all of it as one key path, and only that.

    A key is segments separated by ``.``, each optionally followed by list indexes
    ``[N]``; a backslash makes the next character literal (``annotations.a\\.b/c``). An
    unescaped ``=`` or ``,`` would end the key and start another assignment, so they are
    refused, as are empty segments, malformed indexes and control characters.
    """

    def bad(reason: str) -> RenderError:
        return RenderError(
            f"{where} {key!r} is not a Helm value key: {reason} (write keys as a.b[0].c; "
            "escape a literal '.', '=', ',', '[' or ']' with a backslash)"
        )

    if not key:
        raise bad("it is empty")
    if _CONTROL.search(key):
        raise bad("it contains control characters")
    i, segment, after_index = 0, False, False
    while i < len(key):
        char = key[i]
        if char == "\\":
            if i + 1 == len(key):
                raise bad("it ends with a lone backslash")
            if after_index:
                raise bad("text follows a list index")
            segment, i = True, i + 2
            continue
        if char in "=,]":
            raise bad(f"unescaped {char!r}")
        if char == ".":
            if not segment:
                raise bad("empty key segment")
            segment, after_index = False, False
        elif char == "[":
            if not segment:
                raise bad("a list index needs a name before it")
            end = key.find("]", i)
            if end < 0 or not key[i + 1 : end].isdigit() or not key[i + 1 : end].isascii():
                raise bad("a list index must be [digits]")
            i, after_index = end + 1, True
            continue
        elif after_index:
            raise bad("text follows a list index")
        else:
            segment = True
        i += 1
    if not segment:
        raise bad("empty key segment")
    return key


def _strvals_escape(text: str) -> str:
    return _STRVALS_SPECIAL.sub(r"\\\1", text)


def set_value(value: str) -> str:
    """``value`` in strvals syntax, so helm reads back exactly ``value``.

    As in Argo CD, a value written as ``{a,b}`` is Helm's list syntax: its elements (split on
    commas) are escaped one by one and the braces kept.
    """
    if len(value) >= 2 and value.startswith("{") and value.endswith("}"):
        return "{" + ",".join(_strvals_escape(item) for item in value[1:-1].split(",")) + "}"
    return _strvals_escape(value)


def _check_tool_path(path: Path, raw: str, what: str) -> Path:
    if _PATH_SPECIAL.search(str(path)):
        raise RenderError(
            f"{what} {raw!r}: helm cannot be given a path with a comma, a quote or a control "
            "character (it splits the flag on commas); rename the file"
        )
    return path


# --- inputs -------------------------------------------------------------------------------


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
    if "\x00" in raw:
        raise RenderError(f"{what} {raw!r}: a path cannot contain a NUL character")
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
        files = [_check_tool_path(m, raw, "value file") for m in matches if m.is_file()]
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
    """Value files and ``--set-file`` assignments, all checked to be files inside ``root``."""
    real_root = root.resolve()
    if not inside(chart_dir.resolve(), real_root):
        raise RenderError("the chart directory is outside the repository")
    file_params = []
    for i, item in enumerate(helm.file_parameters):
        where = f"spec.source.helm.fileParameters[{i}]"
        key = check_set_key(item.name, f"{where}.name")
        path = _resolve_in_root(item.path, chart_dir, root, f"{where}.path")
        if not inside(path.resolve(), real_root) or not path.is_file():
            raise RenderError(
                f"{where}: {item.path!r} is not a file in the repository (paths are relative "
                "to the chart directory, a leading '/' is the repository root)"
            )
        file_params.append(f"{key}={set_value(str(path.resolve()))}")
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
    if not isinstance(deps, list):
        raise RenderError("Chart.yaml: dependencies must be a list")
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


def _local_dependency(dep: dict[str, Any], chart_dir: Path, root: Path) -> Path:
    """The directory of a ``file://`` dependency, refused unless it is inside ``root``."""
    repo = str(dep.get("repository") or "")
    raw = repo.removeprefix("file://")
    target = (Path(raw) if raw.startswith("/") else chart_dir / raw).resolve()
    if not inside(target, root.resolve()):
        raise RenderError(
            f"chart dependency {dep['name']!r} from {repo}: the path is outside the "
            "repository; a chart may only depend on charts of its own repository"
        )
    return target


# --- values.schema.json ---------------------------------------------------------------------

_SCHEMA_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
_SCHEMA_META = re.compile(r"^https?://json-schema\.org/[A-Za-z0-9/_.#-]*$")


def _check_schema_node(node: Any, where: str) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _SCHEMA_REFS and not (isinstance(value, str) and value.startswith("#")):
                    raise RenderError(
                        f"{where}: {key} {value!r} points outside the schema; helm would load it "
                        "from the renderer's disk or network. Inline the definition and "
                        'reference it as "#/$defs/…", or set spec.source.helm.'
                        "skipSchemaValidation: true"
                    )
                if key == "$schema" and not (isinstance(value, str) and _SCHEMA_META.match(value)):
                    raise RenderError(
                        f"{where}: $schema {value!r} is not a json-schema.org draft; helm "
                        "would fetch it"
                    )
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_chart_tree(chart_dir: Path, root: Path, *, schemas: bool) -> None:
    """Links out and special files refused; with ``schemas``, external schema refs too."""
    files = walk_inside(chart_dir, root)
    if not schemas:
        return
    for schema in (f for f in files if f.name == "values.schema.json"):
        where = os.path.relpath(schema, root)
        try:
            document = json.loads(schema.read_bytes())
        except (ValueError, OSError) as exc:
            raise RenderError(f"{where} is not valid JSON: {exc}") from None
        _check_schema_node(document, where)


# --- running helm ---------------------------------------------------------------------------


def _helm_env(runner: ToolRunner) -> dict[str, str]:
    base = runner.home / "helm"
    return {
        "HELM_CACHE_HOME": str(base / "cache"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_DATA_HOME": str(base / "data"),
        "HELM_NO_PLUGINS": "1",
    }


async def _build_dependencies(
    runner: ToolRunner, binary: Path, chart_dir: Path, root: Path, work: Path, *, schemas: bool
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
        local = _local_dependency(dep, chart_dir, root)
        await asyncio.to_thread(_check_chart_tree, local, root, schemas=schemas)
    copy = work / "src"
    await asyncio.to_thread(copy_artifact, root, copy)
    chart_copy = copy / chart_dir.relative_to(root)
    await runner.run(
        [str(binary), "dependency", "build", "--skip-refresh", "--", str(chart_copy)],
        cwd=chart_copy,
        what="helm dependency build",
        env=_helm_env(runner),
    )
    return chart_copy


def _release_name(helm: HelmOptions, options: RenderOptions, chart_dir: Path) -> str:
    if helm.release_name:
        return check_release_name(helm.release_name, "spec.source.helm.releaseName")
    if options.app_name:
        return check_release_name(options.app_name, "the application name (the release name)")
    # `gitsail render` of a bare chart directory: a release name derived from its name.
    derived = re.sub(r"[^a-z0-9]+", "-", chart_dir.name.lower()).strip("-")
    return derived[:RELEASE_NAME_MAX].rstrip("-") or "release"


def _template_flags(
    helm: HelmOptions, options: RenderOptions, kube_version: str, api_versions: Sequence[str]
) -> list[str]:
    """The capability flags of ``helm template``, each ``--flag=value`` and checked."""
    argv = []
    if helm.namespace:
        argv.append(f"--namespace={check_namespace(helm.namespace, 'spec.source.helm.namespace')}")
    elif options.namespace:
        argv.append(f"--namespace={check_namespace(options.namespace, 'destination namespace')}")
    if helm.kube_version:
        version = check_kube_version(helm.kube_version, "spec.source.helm.kubeVersion")
        argv.append(f"--kube-version={version}")
    elif kube_version:
        argv.append(f"--kube-version={check_kube_version(kube_version, 'cluster version')}")
    where = "spec.source.helm.apiVersions" if helm.api_versions else "cluster API versions"
    for api_version in helm.api_versions or api_versions:
        argv.append(f"--api-versions={check_api_version(api_version, where)}")
    if not helm.skip_crds:
        argv.append("--include-crds")
    argv.append("--skip-tests")
    for i, param in enumerate(helm.parameters):
        key = check_set_key(param.name, f"spec.source.helm.parameters[{i}].name")
        flag = "--set-string" if param.force_string else "--set"
        argv.append(f"{flag}={key}={set_value(param.value)}")
    return argv


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
    release = _release_name(helm, options, chart_dir)
    flags = _template_flags(helm, options, kube_version, api_versions)
    value_files, file_params = _inputs(helm, chart_dir, root)
    inline = _inline_values(helm)
    schemas = not helm.skip_schema_validation
    await asyncio.to_thread(_check_chart_tree, chart_dir, root, schemas=schemas)
    chart = await _build_dependencies(runner, binary, chart_dir, root, work, schemas=schemas)

    argv = [str(binary), "template", *flags]
    argv += [f"--values={path}" for path in value_files]
    if inline:
        inline_file = work / "gitsail-inline-values.yaml"
        inline_file.write_text(inline, encoding="utf-8")
        argv.append(f"--values={inline_file}")
    argv += [f"--set-file={spec}" for spec in file_params]
    if helm.skip_schema_validation:
        argv.append("--skip-schema-validation")
    argv += ["--", release, str(chart)]

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
