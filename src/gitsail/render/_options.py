"""Render options: everything besides the artifact that decides a render's output.

Kind-neutral frozen records with Python names (``RenderOptions`` and its tool blocks). A kind
adapter builds them from its own spec (the Argo CD ``Application``'s ``spec.source`` is read by
``gitsail.kinds.argo_application``); render never reads an Argo CD or Flux field name. A
``None`` block means the spec did not set it; two tool blocks are an error ("multiple
application sources defined", as Argo CD says it).

What render must be able to trust, it checks itself, whoever built the record: Jsonnet
``extVars``/``tlas`` become argv of the jsonnet binary, so ``jsonnet_var`` (and
``JsonnetVar`` itself) refuse a name that is not an identifier (never ``-…`` or ``name=…``),
a value with a NUL byte or over ``JSONNET_VALUE_BYTES``; ``jsonnet_lib`` refuses a library
path that leaves the repository (``..``); where it points is checked again on the checkout.

``detect_tool`` then picks the tool the way Argo CD does: an explicit block wins, then
``Chart.yaml`` → helm, a kustomization file → kustomize, otherwise a plain directory.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import asdict, dataclass
from pathlib import Path

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
    "jsonnet_lib",
    "jsonnet_var",
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

    def __post_init__(self) -> None:
        problem = _jsonnet_var_problem(self.name, self.value)
        if problem:
            raise RenderError(f"jsonnet variable {self.name[:60]!r} {problem}")


@dataclass(frozen=True)
class JsonnetOptions:
    """Jsonnet variables and library directories; ``libs`` are relative to the repository root."""

    ext_vars: tuple[JsonnetVar, ...] = ()
    tlas: tuple[JsonnetVar, ...] = ()
    libs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirectoryOptions:
    """Which files of a plain directory are manifests."""

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
    """Edits applied to the app's kustomization before building."""

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
    """How ``helm template`` is called."""

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


def _jsonnet_var_problem(name: str, value: str) -> str:
    if not _JSONNET_NAME.fullmatch(name):
        return "is not a Jsonnet identifier (letters, digits and _, not starting with a digit)"
    if "\0" in value:
        return "holds a NUL byte"
    if len(value.encode()) > JSONNET_VALUE_BYTES:
        return (
            f"is longer than {JSONNET_VALUE_BYTES} bytes; put large data in a file of the "
            "repository and import it"
        )
    return ""


def jsonnet_var(name: str, value: str, *, code: bool = False, at: str) -> JsonnetVar:
    """A checked ``JsonnetVar``; RenderError naming ``at`` (the field path) when unsafe."""
    if not _JSONNET_NAME.fullmatch(name):
        raise RenderError(
            f"{at}.name {name!r} is not a Jsonnet identifier (letters, digits and _, "
            "not starting with a digit)"
        )
    if "\0" in value:
        raise RenderError(f"{at}.value of {name} holds a NUL byte")
    if len(value.encode()) > JSONNET_VALUE_BYTES:
        raise RenderError(
            f"{at}.value of {name} is longer than {JSONNET_VALUE_BYTES} bytes; "
            "put large data in a file of the repository and import it"
        )
    return JsonnetVar(name=name, value=value, code=code)


def jsonnet_lib(raw: str, *, at: str) -> str:
    """A library directory relative to the repository root (as in Argo CD, ``/x`` is ``x``);
    RenderError naming ``at`` when it is empty or leaves the repository."""
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
