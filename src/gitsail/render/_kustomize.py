"""Kustomize: the Application's kustomize options written into a copy, then ``kustomize build``.

Argo CD applies ``spec.source.kustomize`` by running ``kustomize edit set
namePrefix/nameSuffix/image/replicas/namespace``, ``kustomize edit add
label/annotation/component`` and appending ``patches`` in the app directory before it
builds. gitsail makes the same edits in Python, on the YAML node tree of the copied
kustomization file: untouched scalars keep their exact text (``newTag: 1.10`` stays
``1.10``), and there is no extra process per edit.

The build is ``kustomize build --load-restrictor LoadRestrictionsRootOnly`` without plugins,
exec functions or ``--enable-helm``, in a scrubbed environment (see ``_process``).

Remote references are refused before kustomize starts. kustomize reads a reference that is
not a local file or directory as remote: a git repository (``https://host/org/repo//path
?ref=v1``, ``git::…``, ``git@host:…``, ``github.com/org/repo``, ``file:///…``) cloned at
render time, or an http(s) file downloaded. Both would bypass the source stage (its
credentials, URL policy, access checks, timeouts and cache), and ``file:///`` would clone any
repository on the controller's disk. So ``refuse_remote_references`` walks the kustomization
tree of the copy (node tree only: aliases are never expanded) and refuses every reference in
a field kustomize may fetch (``resources``, ``bases``, ``components``, patch and generator
files, ``crds``, ``configurations``, ``openapi.path``, …) that is not in the repository and
could be read as remote (a scheme, ``@``, ``?``, ``//`` or a ``host.tld/`` prefix); a missing
plain path is left for kustomize to report, and a kustomization the walk cannot parse is
refused. As a second wall, kustomize runs
with git transports disabled and an unreachable HTTP proxy.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitsail.model import Obj
from gitsail.render._errors import RenderError
from gitsail.render._manifests import _K8sDumper, compose_yaml, load_manifests, read_yaml_file
from gitsail.render._options import KUSTOMIZATION_FILES, KustomizeOptions
from gitsail.render._process import ToolRunner
from gitsail.render._workspace import inside

__all__ = [
    "apply_kustomize_options",
    "kustomize_build",
    "parse_image",
    "refuse_remote_references",
]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_TAG = re.compile(r"^(.*):([a-zA-Z0-9._-]*|\*)$")


def parse_image(spec: str) -> dict[str, str]:
    """An Argo CD / ``kustomize edit set image`` argument as a kustomization image entry.

    ``name=newName[:tag][@digest]``, ``name:tag``, ``name@digest``, ``name=newName``.
    """
    new_name_allowed = False
    name = ""
    if "=" in spec:
        name, _, spec = spec.partition("=")
        new_name_allowed = True
    image, _, digest = spec.partition("@")
    tag = ""
    match = _TAG.match(image)
    if match and "/" not in match.group(2):
        image, tag = match.group(1), match.group(2)
    if not image or (not new_name_allowed and not (tag or digest)):
        raise RenderError(f"image {spec!r}: expected name=newName:tag, name:tag or name@digest")
    entry = {"name": name or image}
    if new_name_allowed and image != name:
        entry["newName"] = image
    if tag:
        entry["newTag"] = tag
    if digest:
        entry["digest"] = digest
    return entry


# --- node helpers -------------------------------------------------------------------------


def _scalar(value: str | int) -> ScalarNode:
    if isinstance(value, int):
        return ScalarNode(_INT, str(value))
    return ScalarNode(_STR, value)


def _node(data: Any) -> Node:
    representer = yaml.representer.SafeRepresenter(sort_keys=False)
    return representer.represent_data(data)


def _get(mapping: MappingNode, key: str) -> Node | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return cast(Node, value_node)
    return None


def _set(mapping: MappingNode, key: str, node: Node) -> None:
    for i, (key_node, _) in enumerate(mapping.value):
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            mapping.value[i] = (key_node, node)
            return
    mapping.value.append((_scalar(key), node))


def _child(mapping: MappingNode, key: str, node_type: type[Node], where: str) -> Any:
    existing = _get(mapping, key)
    if existing is None or (isinstance(existing, ScalarNode) and existing.value in ("", "~")):
        existing = MappingNode(_MAP, []) if node_type is MappingNode else SequenceNode(_SEQ, [])
        _set(mapping, key, existing)
    if not isinstance(existing, node_type):
        raise RenderError(
            f"{where}: `{key}` must be a {node_type.__name__.removesuffix('Node').lower()}"
        )
    return existing


# --- the edits ----------------------------------------------------------------------------


def _set_images(root: MappingNode, images: tuple[str, ...], where: str) -> None:
    seq: SequenceNode = _child(root, "images", SequenceNode, where)
    for spec in images:
        entry = parse_image(spec)
        item = next(
            (
                n
                for n in seq.value
                if isinstance(n, MappingNode) and _value_of(n, "name") == entry["name"]
            ),
            None,
        )
        if item is None:
            seq.value.append(_node(entry))
            continue
        if "newName" in entry:
            _set(item, "newName", _scalar(entry["newName"]))
        if "newTag" in entry or "digest" in entry:
            item.value = [
                (k, v)
                for k, v in item.value
                if not (isinstance(k, ScalarNode) and k.value in ("newTag", "digest"))
            ]
            for key in ("newTag", "digest"):
                if key in entry:
                    _set(item, key, _scalar(entry[key]))


def _value_of(mapping: MappingNode, key: str) -> str:
    node = _get(mapping, key)
    return node.value if isinstance(node, ScalarNode) else ""


def _set_replicas(root: MappingNode, options: KustomizeOptions, where: str) -> None:
    seq: SequenceNode = _child(root, "replicas", SequenceNode, where)
    for replica in options.replicas:
        item = next(
            (
                n
                for n in seq.value
                if isinstance(n, MappingNode) and _value_of(n, "name") == replica.name
            ),
            None,
        )
        if item is None:
            seq.value.append(_node({"name": replica.name, "count": replica.count}))
        else:
            _set(item, "count", _scalar(replica.count))


def _add_pairs(
    mapping: MappingNode, pairs: tuple[tuple[str, str], ...], force: bool, what: str, where: str
) -> None:
    for key, value in pairs:
        if _get(mapping, key) is not None and not force:
            raise RenderError(
                f"{where}: {what} {key!r} is already in the kustomization; "
                f"set forceCommon{what.capitalize()}s to override it"
            )
        _set(mapping, key, _scalar(value))


def _add_labels(root: MappingNode, options: KustomizeOptions, where: str) -> None:
    if not options.label_without_selector:
        common: MappingNode = _child(root, "commonLabels", MappingNode, where)
        _add_pairs(common, options.common_labels, options.force_common_labels, "label", where)
        return
    labels: SequenceNode = _child(root, "labels", SequenceNode, where)
    entry: Obj = {"pairs": dict(options.common_labels), "includeSelectors": False}
    if options.label_include_templates:
        entry["includeTemplates"] = True
    labels.value.append(_node(entry))


def _add_components(
    root: MappingNode, options: KustomizeOptions, app_dir: Path, copy_root: Path, where: str
) -> None:
    seq: SequenceNode = _child(root, "components", SequenceNode, where)
    present = {n.value for n in seq.value if isinstance(n, ScalarNode)}
    for component in options.components:
        if "://" not in component:
            target = (app_dir / component).resolve()
            if not inside(target, copy_root.resolve()):
                raise RenderError(f"{where}: component {component!r} is outside the repository")
            if not target.exists():
                if options.ignore_missing_components:
                    continue
                raise RenderError(
                    f"{where}: component {component!r} does not exist "
                    "(set ignoreMissingComponents to skip it)"
                )
        if component not in present:
            seq.value.append(_scalar(component))
            present.add(component)


def kustomization_file(app_dir: Path) -> Path | None:
    return next((app_dir / n for n in KUSTOMIZATION_FILES if (app_dir / n).is_file()), None)


def apply_kustomize_options(app_dir: Path, copy_root: Path, options: KustomizeOptions) -> None:
    """Write ``options`` into the kustomization file of ``app_dir`` (inside a copy)."""
    path = kustomization_file(app_dir)
    if path is None:
        raise RenderError(
            f"no kustomization file ({', '.join(KUSTOMIZATION_FILES)}) in the app directory"
        )
    where = path.relative_to(copy_root).as_posix()
    root = compose_yaml(read_yaml_file(path, source=where), source=where)
    if root is None:
        root = MappingNode(_MAP, [])
    if not isinstance(root, MappingNode):
        raise RenderError(f"{where}: a kustomization must be a mapping")

    if options.name_prefix:
        _set(root, "namePrefix", _scalar(options.name_prefix))
    if options.name_suffix:
        _set(root, "nameSuffix", _scalar(options.name_suffix))
    if options.images:
        _set_images(root, options.images, where)
    if options.replicas:
        _set_replicas(root, options, where)
    if options.common_labels:
        _add_labels(root, options, where)
    if options.common_annotations:
        annotations: MappingNode = _child(root, "commonAnnotations", MappingNode, where)
        _add_pairs(
            annotations,
            options.common_annotations,
            options.force_common_annotations,
            "annotation",
            where,
        )
    if options.namespace:
        _set(root, "namespace", _scalar(options.namespace))
    if options.patches:
        patches: SequenceNode = _child(root, "patches", SequenceNode, where)
        patches.value.extend(_node(p) for p in options.patches)
    if options.components:
        _add_components(root, options, app_dir, copy_root, where)

    text = yaml.serialize(root, Dumper=_K8sDumper, allow_unicode=True)
    path.unlink()  # never write through a hard or symbolic link
    path.write_text(str(text), encoding="utf-8")


# --- remote references ---------------------------------------------------------------------

# Fields holding a file or directory (kustomize clones a git URL here) ...
_DIRECTORY_FIELDS = ("resources", "bases", "components")
# ... and fields holding a file (kustomize downloads an http(s) URL here). Entries of the
# fields in _INLINE_OK may be inline YAML instead of a path.
_FILE_FIELDS = ("crds", "configurations", "transformers", "generators", "validators")
_INLINE_OK = ("transformers", "generators", "validators", "patchesStrategicMerge")
_PATH_ENTRY_FIELDS = ("patches", "patchesJson6902", "replacements")
_GENERATORS = ("configMapGenerator", "secretGenerator")
# What kustomize may read as remote: a scheme or shorthand (``https:``, ``git::``, ``gh:``),
# scp-like ``user@host:path``, query parameters, ``//`` subdirectories, ``host.tld/…``.
_REMOTE = re.compile(r"(?i)[:@?]|//|^[\w.-]+\.[a-z]{2,}(?::\d+)?/")
_MAX_KUSTOMIZATION_BYTES = 8 * 1024 * 1024


def _remote_refused(where: str, field_name: str, ref: str) -> RenderError:
    return RenderError(
        f"{where}: {field_name} entry {ref!r} is a remote reference; gitsail refuses "
        "remote kustomize bases and files (they would be fetched at render time, outside "
        "the source stage's credentials, URL policy and access checks). Vendor it into "
        "the repository, or deploy it as its own Application"
    )


def _compose_kustomization(path: Path, where: str) -> MappingNode | None:
    try:
        if path.stat().st_size > _MAX_KUSTOMIZATION_BYTES:
            raise RenderError(f"{where}: larger than {_MAX_KUSTOMIZATION_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
        root = compose_yaml(text, source=where)  # bounded; several documents refuse
    except RenderError as err:
        raise RenderError(f"{err}; gitsail cannot check it") from None
    except UnicodeDecodeError:
        raise RenderError(f"{where}: not UTF-8 text; gitsail cannot check it") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise RenderError(f"{where}{line}: {problem}; gitsail cannot check it") from None
    except OSError as err:
        raise RenderError(f"{where}: cannot read it ({err.strerror})") from None
    if root is None:
        return None
    if not isinstance(root, MappingNode):
        raise RenderError(f"{where}: a kustomization must be a mapping")
    return root


def _scalars(node: Node | None) -> list[str]:
    if isinstance(node, ScalarNode):
        return [str(node.value)]
    if isinstance(node, SequenceNode):
        return [str(n.value) for n in node.value if isinstance(n, ScalarNode)]
    return []


def _entries(node: Node | None) -> list[MappingNode]:
    if isinstance(node, SequenceNode):
        return [n for n in node.value if isinstance(n, MappingNode)]
    return []


def _references(root: MappingNode) -> list[tuple[str, str, bool]]:
    """(field, reference, may be a directory) for every path-like entry of a kustomization."""
    refs: list[tuple[str, str, bool]] = []
    for name in _DIRECTORY_FIELDS:
        refs += [(name, ref, True) for ref in _scalars(_get(root, name))]
    for name in (*_FILE_FIELDS, "patchesStrategicMerge"):
        for ref in _scalars(_get(root, name)):
            inline = "\n" in ref or ref.lstrip().startswith(("{", "apiVersion:", "kind:"))
            if not (name in _INLINE_OK and inline):
                refs.append((name, ref, False))
    for name in _PATH_ENTRY_FIELDS:
        for entry in _entries(_get(root, name)):
            refs += [(f"{name}.path", ref, False) for ref in _scalars(_get(entry, "path"))]
    openapi = _get(root, "openapi")
    if isinstance(openapi, MappingNode):
        refs += [("openapi.path", ref, False) for ref in _scalars(_get(openapi, "path"))]
    for name in _GENERATORS:
        for gen in _entries(_get(root, name)):
            for ref in _scalars(_get(gen, "files")):
                refs.append((f"{name}.files", ref.split("=", 1)[-1], False))
            for key in ("envs", "env"):
                refs += [(f"{name}.{key}", ref, False) for ref in _scalars(_get(gen, key))]
    return [(name, ref.strip(), directory) for name, ref, directory in refs if ref.strip()]


def refuse_remote_references(app_dir: Path, root: Path) -> None:
    """Raise RenderError if a kustomization under ``app_dir`` names something remote.

    Walks ``app_dir``'s kustomization and every local kustomization it reaches through
    ``resources``/``bases``/``components`` inside ``root``, each once.
    """
    real_root = root.resolve()
    pending = [app_dir.resolve()]
    visited: set[Path] = set()
    while pending:
        directory = pending.pop()
        if directory in visited or not inside(directory, real_root):
            continue
        visited.add(directory)
        path = kustomization_file(directory)
        if path is None:
            continue
        where = os.path.relpath(path, real_root)
        node = _compose_kustomization(path, where)
        if node is None:
            continue
        for name, ref, may_be_directory in _references(node):
            local = Path(os.path.normpath(directory / ref))
            if not local.exists() and not local.is_symlink():
                if _REMOTE.search(ref):
                    raise _remote_refused(where, name, ref)
                continue  # a missing local path: kustomize reports it
            if may_be_directory and local.is_dir():
                pending.append(local.resolve())


# kustomize starts `git` for remote bases and fetches http(s) files itself: with every git
# transport disabled and all HTTP sent to a closed port, a reference the walk above missed
# still cannot reach the network (Go does not proxy loopback, so that stays refused by the
# walk alone).
_NO_NETWORK = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.allow",
    "GIT_CONFIG_VALUE_0": "never",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


async def kustomize_build(
    runner: ToolRunner, binary: Path, app_dir: Path, *, display: str, root: Path | None = None
) -> list[Obj]:
    """``kustomize build`` of ``app_dir``; the objects in the order kustomize printed them.

    ``root`` is the copy of the repository (default ``app_dir``): remote references in any
    kustomization reached inside it are refused before kustomize runs.
    """
    await asyncio.to_thread(refuse_remote_references, app_dir, root or app_dir)
    out = await runner.run(
        [str(binary), "build", str(app_dir), "--load-restrictor", "LoadRestrictionsRootOnly"],
        cwd=app_dir,
        what="kustomize build",
        env={"XDG_CONFIG_HOME": str(runner.home / "config"), **_NO_NETWORK},
    )
    text = out.decode("utf-8", "replace")
    return await asyncio.to_thread(
        load_manifests, text, source=f"kustomize build {display}", policy=runner.policy
    )
