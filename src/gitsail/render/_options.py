"""Render options: what an Argo CD ``Application``'s ``spec.source`` asks of the renderer.

``RenderOptions.from_source`` reads the Argo CD field names (camelCase) into frozen records
with Python names. As Argo CD's API server does, a block whose fields are all empty
(``helm: {}``) is dropped, so it does not force a tool; two non-empty tool blocks are an
error ("multiple application sources defined"). Options gitsail cannot honour are errors,
not silent no-ops: ``plugin``. ``directory.jsonnet`` values become argv of the jsonnet
binary, so names are checked here (an identifier, never ``-…`` or ``name=…``), values may not
hold NUL bytes or exceed ``JSONNET_VALUE_BYTES``, and library paths may not leave the
repository (``..``); where they point is checked again on the checkout.

``detect_tool`` then picks the tool the way Argo CD does: an explicit block wins, then
``Chart.yaml`` → helm, a kustomization file → kustomize, otherwise a plain directory.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gitsail.model import Obj
from gitsail.render._errors import RenderError

__all__ = [
    "JSONNET_VALUE_BYTES",
    "KUSTOMIZATION_FILES",
    "DirectoryOptions",
    "HelmFileParameter",
    "HelmOptions",
    "HelmParameter",
    "JsonnetOptions",
    "JsonnetVar",
    "KustomizeOptions",
    "KustomizeReplica",
    "RenderOptions",
    "detect_tool",
]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# One argv string; Linux refuses longer ones (MAX_ARG_STRLEN is 128 KiB).
JSONNET_VALUE_BYTES = 64 * 1024
_JSONNET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,252}")


@dataclass(frozen=True)
class JsonnetVar:
    """One ``extVars``/``tlas`` entry: a string, or Jsonnet code when ``code`` is set."""

    name: str
    value: str
    code: bool = False


@dataclass(frozen=True)
class JsonnetOptions:
    """``spec.source.directory.jsonnet``; ``libs`` are relative to the repository root."""

    ext_vars: tuple[JsonnetVar, ...] = ()
    tlas: tuple[JsonnetVar, ...] = ()
    libs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirectoryOptions:
    """``spec.source.directory``: which files of a plain directory are manifests."""

    recurse: bool = False
    include: str = ""
    exclude: str = ""
    jsonnet: JsonnetOptions = JsonnetOptions()


@dataclass(frozen=True)
class KustomizeReplica:
    name: str
    count: int


@dataclass(frozen=True)
class KustomizeOptions:
    """``spec.source.kustomize``: edits applied to the app's kustomization before building."""

    name_prefix: str = ""
    name_suffix: str = ""
    images: tuple[str, ...] = ()
    replicas: tuple[KustomizeReplica, ...] = ()
    namespace: str = ""
    common_labels: tuple[tuple[str, str], ...] = ()
    common_annotations: tuple[tuple[str, str], ...] = ()
    force_common_labels: bool = False
    force_common_annotations: bool = False
    label_without_selector: bool = False
    label_include_templates: bool = False
    patches: tuple[Obj, ...] = ()
    components: tuple[str, ...] = ()
    ignore_missing_components: bool = False


@dataclass(frozen=True)
class HelmParameter:
    name: str
    value: str
    force_string: bool = False


@dataclass(frozen=True)
class HelmFileParameter:
    name: str
    path: str


@dataclass(frozen=True)
class HelmOptions:
    """``spec.source.helm``: how ``helm template`` is called."""

    release_name: str = ""
    value_files: tuple[str, ...] = ()
    ignore_missing_value_files: bool = False
    values: str = ""
    values_object: Obj | None = None
    parameters: tuple[HelmParameter, ...] = ()
    file_parameters: tuple[HelmFileParameter, ...] = ()
    skip_crds: bool = False
    skip_schema_validation: bool = False
    namespace: str = ""
    kube_version: str = ""
    api_versions: tuple[str, ...] = ()
    pass_credentials: bool = False


@dataclass(frozen=True)
class RenderOptions:
    """Everything besides the artifact that decides a render's output.

    ``app_name`` is the default Helm release name; ``namespace`` is the destination
    namespace (Helm's ``--namespace`` unless ``helm.namespace`` says otherwise). A ``None``
    block means the source did not set it.
    """

    app_name: str = ""
    namespace: str = ""
    chart: str = ""
    directory: DirectoryOptions | None = None
    kustomize: KustomizeOptions | None = None
    helm: HelmOptions | None = None

    @classmethod
    def from_source(
        cls, source: Mapping[str, Any], *, app_name: str, namespace: str
    ) -> RenderOptions:
        """Build options from an Argo CD ``spec.source`` dict; RenderError on bad input."""
        if not isinstance(source, Mapping):
            raise RenderError("spec.source must be a mapping")
        if _present(source.get("plugin")):
            raise RenderError(
                "spec.source.plugin: config management plugins are not supported by gitsail; "
                "render with helm, kustomize or a plain directory"
            )
        options = cls(
            app_name=app_name,
            namespace=namespace,
            chart=_str(source, "chart", "spec.source"),
            directory=_directory(source.get("directory")),
            kustomize=_kustomize(source.get("kustomize")),
            helm=_helm(source.get("helm")),
        )
        options.explicit_tool()
        return options

    def explicit_tool(self) -> str:
        """The tool the options force, or ``""``; RenderError when they ask for two."""
        tools = [
            name
            for name, block in (
                ("kustomize", self.kustomize),
                ("helm", self.helm),
                ("directory", self.directory),
            )
            if block is not None
        ]
        if self.chart and "helm" not in tools:
            tools.append("helm")
        if len(tools) > 1:
            raise RenderError(f"multiple application sources defined: {','.join(tools)}")
        return tools[0] if tools else ""

    def canonical_json(self) -> str:
        """A stable JSON text of every option (sorted keys): part of the render cache key."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)


def detect_tool(directory: Path, options: RenderOptions) -> str:
    """``"helm"``, ``"kustomize"`` or ``"directory"``, decided as Argo CD decides it."""
    explicit = options.explicit_tool()
    if explicit:
        return explicit
    if (directory / "Chart.yaml").is_file():
        return "helm"
    if any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        return "kustomize"
    return "directory"


# --- parsing helpers --------------------------------------------------------------------


def _present(value: Any) -> bool:
    """Argo CD's IsZero: a block counts only if some field holds a non-empty value."""
    if isinstance(value, Mapping):
        return any(_present(v) for v in value.values())
    if isinstance(value, list | tuple):
        return len(value) > 0
    return value not in (None, "", False, 0)


def _block(value: Any, where: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RenderError(f"{where} must be a mapping, got {type(value).__name__}")
    return value if _present(value) else None


def _str(block: Mapping[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RenderError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return str(value)


def _bool(block: Mapping[str, Any], key: str, where: str) -> bool:
    value = block.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RenderError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _list(block: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = block.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise RenderError(f"{where}.{key} must be a list, got {type(value).__name__}")
    return list(value)


def _str_list(block: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    items = _list(block, key, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise RenderError(f"{where}.{key}[{i}] must be a string, got {item!r}")
    return tuple(items)


def _str_map(block: Mapping[str, Any], key: str, where: str) -> tuple[tuple[str, str], ...]:
    value = block.get(key)
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise RenderError(f"{where}.{key} must be a mapping of strings")
    pairs = []
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise RenderError(f"{where}.{key}.{k} must be a string, got {v!r}")
        pairs.append((k, v))
    return tuple(sorted(pairs))


def _directory(value: Any) -> DirectoryOptions | None:
    where = "spec.source.directory"
    block = _block(value, where)
    if block is None:
        return None
    return DirectoryOptions(
        recurse=_bool(block, "recurse", where),
        include=_str(block, "include", where),
        exclude=_str(block, "exclude", where),
        jsonnet=_jsonnet(block.get("jsonnet"), f"{where}.jsonnet"),
    )


def _jsonnet_vars(block: Mapping[str, Any], key: str, where: str) -> tuple[JsonnetVar, ...]:
    out = []
    for i, item in enumerate(_list(block, key, where)):
        at = f"{where}.{key}[{i}]"
        if not isinstance(item, Mapping):
            raise RenderError(f"{at} must be a mapping with name, value and code")
        name = _str(item, "name", at)
        if not _JSONNET_NAME.fullmatch(name):
            raise RenderError(
                f"{at}.name {name!r} is not a Jsonnet identifier (letters, digits and _, "
                "not starting with a digit)"
            )
        value = _str(item, "value", at)
        if "\0" in value:
            raise RenderError(f"{at}.value of {name} holds a NUL byte")
        if len(value.encode()) > JSONNET_VALUE_BYTES:
            raise RenderError(
                f"{at}.value of {name} is longer than {JSONNET_VALUE_BYTES} bytes; "
                "put large data in a file of the repository and import it"
            )
        out.append(JsonnetVar(name=name, value=value, code=_bool(item, "code", at)))
    return tuple(out)


def _jsonnet_lib(raw: str, at: str) -> str:
    """A library directory relative to the repository root (as in Argo CD, ``/x`` is ``x``)."""
    path = raw.strip()
    if not path:
        raise RenderError(f"{at} is empty; name a directory relative to the repository root")
    if "\0" in path or "\\" in path:
        raise RenderError(f"{at} {raw!r} may not hold NUL bytes or backslashes")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise RenderError(
                f"{at} {raw!r} leaves the repository; library paths are relative to its root"
            )
    return posixpath.normpath("/".join(parts)) if parts else "."


def _jsonnet(value: Any, where: str) -> JsonnetOptions:
    block = _block(value, where)
    if block is None:
        return JsonnetOptions()
    unknown = sorted(set(block) - {"extVars", "tlas", "libs"})
    if unknown:
        raise RenderError(f"{where}: unknown field(s) {', '.join(unknown)}")
    libs = _str_list(block, "libs", where)
    return JsonnetOptions(
        ext_vars=_jsonnet_vars(block, "extVars", where),
        tlas=_jsonnet_vars(block, "tlas", where),
        libs=tuple(_jsonnet_lib(lib, f"{where}.libs[{i}]") for i, lib in enumerate(libs)),
    )


def _replicas(block: Mapping[str, Any], where: str) -> tuple[KustomizeReplica, ...]:
    out = []
    for i, item in enumerate(_list(block, "replicas", where)):
        at = f"{where}.replicas[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise RenderError(f"{at} must be a mapping with name and count")
        count = item.get("count")
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RenderError(f"{at}.count must be a non-negative integer, got {count!r}")
        out.append(KustomizeReplica(name=item["name"], count=count))
    return tuple(out)


_PATCH_KEYS = frozenset({"path", "patch", "target", "options"})


def _patches(block: Mapping[str, Any], where: str) -> tuple[Obj, ...]:
    out: list[Obj] = []
    for i, item in enumerate(_list(block, "patches", where)):
        at = f"{where}.patches[{i}]"
        if not isinstance(item, Mapping):
            raise RenderError(f"{at} must be a mapping")
        unknown = sorted(set(item) - _PATCH_KEYS)
        if unknown:
            raise RenderError(f"{at}: unknown field(s) {', '.join(unknown)}")
        if not item.get("path") and not item.get("patch"):
            raise RenderError(f"{at} needs a path or a patch")
        patch: Obj = {k: v for k, v in item.items() if _present(v)}
        target = patch.get("target")
        if target is not None:
            if not isinstance(target, Mapping):
                raise RenderError(f"{at}.target must be a mapping")
            patch["target"] = {k: v for k, v in target.items() if _present(v)}
        out.append(patch)
    return tuple(out)


def _kustomize(value: Any) -> KustomizeOptions | None:
    where = "spec.source.kustomize"
    block = _block(value, where)
    if block is None:
        return None
    if _bool(block, "commonAnnotationsEnvsubst", where):
        raise RenderError(
            f"{where}.commonAnnotationsEnvsubst is not supported by gitsail; "
            "write the annotation values literally"
        )
    return KustomizeOptions(
        name_prefix=_str(block, "namePrefix", where),
        name_suffix=_str(block, "nameSuffix", where),
        images=_str_list(block, "images", where),
        replicas=_replicas(block, where),
        namespace=_str(block, "namespace", where),
        common_labels=_str_map(block, "commonLabels", where),
        common_annotations=_str_map(block, "commonAnnotations", where),
        force_common_labels=_bool(block, "forceCommonLabels", where),
        force_common_annotations=_bool(block, "forceCommonAnnotations", where),
        label_without_selector=_bool(block, "labelWithoutSelector", where),
        label_include_templates=_bool(block, "labelIncludeTemplates", where),
        patches=_patches(block, where),
        components=_str_list(block, "components", where),
        ignore_missing_components=_bool(block, "ignoreMissingComponents", where),
    )


def _parameters(block: Mapping[str, Any], where: str) -> tuple[HelmParameter, ...]:
    out = []
    for i, item in enumerate(_list(block, "parameters", where)):
        at = f"{where}.parameters[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise RenderError(f"{at} must be a mapping with a name")
        out.append(
            HelmParameter(
                name=item["name"],
                value=_str(item, "value", at),
                force_string=_bool(item, "forceString", at),
            )
        )
    return tuple(out)


def _file_parameters(block: Mapping[str, Any], where: str) -> tuple[HelmFileParameter, ...]:
    out = []
    for i, item in enumerate(_list(block, "fileParameters", where)):
        at = f"{where}.fileParameters[{i}]"
        if not isinstance(item, Mapping) or not item.get("name") or not item.get("path"):
            raise RenderError(f"{at} must be a mapping with a name and a path")
        out.append(HelmFileParameter(name=_str(item, "name", at), path=_str(item, "path", at)))
    return tuple(out)


def _helm(value: Any) -> HelmOptions | None:
    where = "spec.source.helm"
    block = _block(value, where)
    if block is None:
        return None
    values_object = block.get("valuesObject")
    if values_object is not None and not isinstance(values_object, Mapping):
        raise RenderError(f"{where}.valuesObject must be a mapping")
    return HelmOptions(
        release_name=_str(block, "releaseName", where),
        value_files=_str_list(block, "valueFiles", where),
        ignore_missing_value_files=_bool(block, "ignoreMissingValueFiles", where),
        values=_str(block, "values", where),
        values_object=dict(values_object) if values_object else None,
        parameters=_parameters(block, where),
        file_parameters=_file_parameters(block, where),
        skip_crds=_bool(block, "skipCrds", where),
        skip_schema_validation=_bool(block, "skipSchemaValidation", where),
        namespace=_str(block, "namespace", where),
        kube_version=_str(block, "kubeVersion", where),
        api_versions=_str_list(block, "apiVersions", where),
        pass_credentials=_bool(block, "passCredentials", where),
    )
