"""Render options from an Argo CD ``Application``'s ``spec.source``.

``render_options`` reads the Argo CD field names (camelCase) into render's kind-neutral
``RenderOptions``. As Argo CD's API server does, a block whose fields are all empty
(``helm: {}``) is dropped, so it does not force a tool; two non-empty tool blocks are an
error ("multiple application sources defined"). Options gitsail cannot honour are errors, not
silent no-ops: ``plugin``, ``kustomize.commonAnnotationsEnvsubst``. Jsonnet variables and
library paths go through render's own checks (``jsonnet_var``, ``jsonnet_lib``), which name
the field path given here. Every error is a ``RenderError``: the engine reports it as a
comparison error after the fetch, as it always has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitsail.model import Obj
from gitsail.render import (
    DirectoryOptions,
    HelmFileParameter,
    HelmOptions,
    HelmParameter,
    JsonnetOptions,
    JsonnetVar,
    KustomizeOptions,
    KustomizeReplica,
    RenderError,
    RenderOptions,
    jsonnet_lib,
    jsonnet_var,
)

__all__ = ["render_options"]


def render_options(source: Mapping[str, Any], *, app_name: str, namespace: str) -> RenderOptions:
    """Build options from an Argo CD ``spec.source`` dict; RenderError on bad input.

    ``app_name`` is the default Helm release name; ``namespace`` the destination namespace.
    """
    if not isinstance(source, Mapping):
        raise RenderError("spec.source must be a mapping")
    if _present(source.get("plugin")):
        raise RenderError(
            "spec.source.plugin: config management plugins are not supported by gitsail; "
            "render with helm, kustomize or a plain directory"
        )
    options = RenderOptions(
        app_name=app_name,
        namespace=namespace,
        chart=_str(source, "chart", "spec.source"),
        directory=_directory(source.get("directory")),
        kustomize=_kustomize(source.get("kustomize")),
        helm=_helm(source.get("helm")),
    )
    options.explicit_tool()
    return options


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
        value = _str(item, "value", at)
        out.append(jsonnet_var(name, value, code=_bool(item, "code", at), at=at))
    return tuple(out)


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
        libs=tuple(jsonnet_lib(lib, at=f"{where}.libs[{i}]") for i, lib in enumerate(libs)),
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
