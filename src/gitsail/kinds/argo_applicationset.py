"""Argo CD's ``ApplicationSet`` (argoproj.io/v1alpha1): its spec as frozen records, and the
templates that turn one parameter set into one ``Application``.

An ApplicationSet never renders or applies workloads: generators
(``argo_applicationset_generators``) produce parameter sets, each set fills the template,
and the reconciler (``argo_applicationset_reconciler``) creates, updates and deletes the
resulting Applications, which the Argo CD path delivers.

Templates, as Argo CD documents them:

- the default **fasttemplate**: in every string of the template (and every map key),
  ``{{ key }}`` is replaced by the parameter's value (whitespace inside the braces
  ignored); a key with no parameter is left exactly as written. Parameters are flat
  (``path.basename``, ``metadata.labels.env``).
- ``goTemplate: true``: every string is a Go template (``gitsail.kinds.gotemplate``) over
  nested parameters (``{{.path.basename}}``); ``goTemplateOptions: ["missingkey=error"]``
  makes a missing key an error. ``templatePatch`` (goTemplate only) is rendered as a whole,
  read as YAML and merged into the Application (maps merged, everything else replaced).

Every rendered Application is checked before anything is created: a Kubernetes name, no two
parameter sets naming the same Application, the set's own namespace.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.gotemplate import GoTemplate, TemplateError
from gitsail.model import Obj

__all__ = [
    "API_VERSION",
    "APPLICATIONS_SYNC",
    "KIND",
    "RESOURCES_FINALIZER",
    "AppSet",
    "ClustersGenerator",
    "Generator",
    "GitGenerator",
    "GitPath",
    "LabelSelector",
    "ListGenerator",
    "MatrixGenerator",
    "MergeGenerator",
    "RenderError",
    "RolloutStep",
    "flatten",
    "parse_applicationset",
    "parse_generator",
    "render_application",
    "render_applications",
    "render_value",
]

API_VERSION = "argoproj.io/v1alpha1"
KIND = "ApplicationSet"
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
APPLICATIONS_SYNC = ("create-only", "create-update", "create-delete", "sync")
DEFAULT_REQUEUE = 180.0  # Argo CD's default for generators that poll (git)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class RenderError(ValueError):
    """A parameter set could not fill the template (a missing key, a bad name, a bad
    templatePatch): the message names the parameter set's Application or index."""


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    # (key, operator, values) with operator In, NotIn, Exists, DoesNotExist
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class ListGenerator:
    elements: tuple[Obj, ...]
    elements_yaml: str = ""


@dataclass(frozen=True)
class ClustersGenerator:
    selector: LabelSelector
    values: Obj


@dataclass(frozen=True)
class GitPath:
    path: str
    exclude: bool = False


@dataclass(frozen=True)
class GitGenerator:
    repo_url: str
    revision: str
    directories: tuple[GitPath, ...]
    files: tuple[GitPath, ...]
    path_param_prefix: str
    values: Obj
    requeue_after: float


@dataclass(frozen=True)
class MatrixGenerator:
    # Raw children: the second is re-read with each parameter set of the first filled in.
    children: tuple[Obj, Obj]


@dataclass(frozen=True)
class MergeGenerator:
    merge_keys: tuple[str, ...]
    children: tuple[Obj, ...]


@dataclass(frozen=True)
class RolloutStep:
    """One step of ``strategy.rollingSync.steps``: the Applications whose labels match,
    at most ``max_update`` of them syncing at once (an int, or a percentage of the step)."""

    selector: LabelSelector
    max_update: int | str | None = None

    def limit(self, apps: int) -> int:
        value = self.max_update
        if value is None:
            return apps
        if isinstance(value, str):
            share = float(value.rstrip("%")) / 100
            return max(1, int(apps * share)) if share > 0 else 0
        return value


GeneratorSpec = ListGenerator | ClustersGenerator | GitGenerator | MatrixGenerator | MergeGenerator


@dataclass(frozen=True)
class Generator:
    """One entry of ``spec.generators`` (or a matrix/merge child)."""

    spec: GeneratorSpec
    template: Obj  # a per-generator template merged over the set's ({} when none)
    selector: LabelSelector  # the post-selector on parameter sets

    @property
    def kind(self) -> str:
        return {
            ListGenerator: "list",
            ClustersGenerator: "clusters",
            GitGenerator: "git",
            MatrixGenerator: "matrix",
            MergeGenerator: "merge",
        }[type(self.spec)]


@dataclass(frozen=True)
class AppSet:
    namespace: str
    name: str
    uid: str
    generation: int | None
    go_template: bool
    missingkey: str  # "default" or "error" (goTemplateOptions)
    generators: tuple[Generator, ...]
    template: Obj
    template_patch: str
    applications_sync: str  # one of APPLICATIONS_SYNC
    preserve_resources: bool
    rolling: tuple[RolloutStep, ...] | None = None  # strategy RollingSync: its steps

    @property
    def subject(self) -> str:
        return f"ApplicationSet {self.namespace}/{self.name}"

    @property
    def may_update(self) -> bool:
        return self.applications_sync != "create-only"

    @property
    def may_delete(self) -> bool:
        return self.applications_sync in ("create-delete", "sync")


# -- parsing ----------------------------------------------------------------------------------

_GENERATORS = ("list", "clusters", "git", "matrix", "merge")
_UNSUPPORTED_GENERATORS = ("scmProvider", "pullRequest", "clusterDecisionResource", "plugin")


def parse_applicationset(obj: Obj) -> AppSet:
    """The set's spec as records; ``SpecError`` names the field (``UnsupportedField`` for
    what Argo CD honours and gitsail does not)."""
    meta = obj.get("metadata") or {}
    subject = f"{KIND} {meta.get('namespace')}/{meta.get('name')}"
    try:
        return _parse(obj, meta)
    except SpecError as exc:
        raise exc.about(subject) from None


def _parse(obj: Obj, meta: Mapping[str, Any]) -> AppSet:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    go = spec.get("goTemplate", False)
    if not isinstance(go, bool):
        raise SpecError("spec.goTemplate", "must be true or false")
    missingkey = "default"
    for i, option in enumerate(_list(spec, "goTemplateOptions", "spec")):
        if not isinstance(option, str) or not option.startswith("missingkey="):
            raise UnsupportedField(f"spec.goTemplateOptions[{i}]", "only missingkey=... is known")
        missingkey = option.split("=", 1)[1]
        if missingkey not in ("default", "invalid", "zero", "error"):
            raise SpecError(f"spec.goTemplateOptions[{i}]", f"unknown option {option!r}")
    generators = tuple(
        parse_generator(g, f"spec.generators[{i}]")
        for i, g in enumerate(_list(spec, "generators", "spec"))
    )
    if not generators:
        raise SpecError("spec.generators", "at least one generator is required")
    template = spec.get("template")
    if not isinstance(template, dict):
        raise SpecError("spec.template", "must be an object (an Application's metadata and spec)")
    patch = spec.get("templatePatch") or ""
    if not isinstance(patch, str):
        raise SpecError("spec.templatePatch", "must be a string")
    if patch and not go:
        raise SpecError("spec.templatePatch", "is only read with goTemplate: true")
    policy = spec.get("syncPolicy") or {}
    if not isinstance(policy, dict):
        raise SpecError("spec.syncPolicy", "must be an object")
    applications_sync = policy.get("applicationsSync") or "sync"
    if applications_sync not in APPLICATIONS_SYNC:
        raise SpecError(
            "spec.syncPolicy.applicationsSync",
            f"{applications_sync!r} is not one of {', '.join(APPLICATIONS_SYNC)}",
        )
    preserve = policy.get("preserveResourcesOnDeletion", False)
    if not isinstance(preserve, bool):
        raise SpecError("spec.syncPolicy.preserveResourcesOnDeletion", "must be true or false")
    rolling = _strategy(spec.get("strategy"))
    if spec.get("ignoreApplicationDifferences"):
        raise UnsupportedField("spec.ignoreApplicationDifferences", "not implemented yet")
    generation = meta.get("generation")
    return AppSet(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else None,
        go_template=go,
        missingkey="error" if missingkey == "error" else "default",
        generators=generators,
        template=template,
        template_patch=patch,
        applications_sync=applications_sync,
        preserve_resources=preserve,
        rolling=rolling,
    )


def parse_generator(raw: Any, where: str) -> Generator:
    if not isinstance(raw, dict):
        raise SpecError(where, "must be an object")
    kinds = [k for k in raw if k in _GENERATORS or k in _UNSUPPORTED_GENERATORS]
    if len(kinds) != 1:
        raise SpecError(where, f"needs exactly one of {', '.join(_GENERATORS)}")
    kind = kinds[0]
    if kind in _UNSUPPORTED_GENERATORS:
        raise UnsupportedField(f"{where}.{kind}", "this generator is not implemented")
    body = raw[kind]
    if not isinstance(body, dict):
        raise SpecError(f"{where}.{kind}", "must be an object")
    here = f"{where}.{kind}"
    spec: GeneratorSpec
    if kind == "list":
        elements = tuple(_list(body, "elements", here))
        for i, e in enumerate(elements):
            if not isinstance(e, dict):
                raise SpecError(f"{here}.elements[{i}]", "must be an object")
        elements_yaml = body.get("elementsYaml") or ""
        if not isinstance(elements_yaml, str):
            raise SpecError(f"{here}.elementsYaml", "must be a string")
        spec = ListGenerator(elements, elements_yaml)
    elif kind == "clusters":
        spec = ClustersGenerator(
            _selector(body.get("selector"), f"{here}.selector"), _values(body, here)
        )
    elif kind == "git":
        spec = _git(body, here)
    elif kind == "matrix":
        children = _list(body, "generators", here)
        if len(children) != 2:
            raise SpecError(f"{here}.generators", "a matrix combines exactly two generators")
        for i, child in enumerate(children):
            parse_generator(child, f"{here}.generators[{i}]")
        spec = MatrixGenerator((children[0], children[1]))
    else:
        children = _list(body, "generators", here)
        if len(children) < 2:
            raise SpecError(f"{here}.generators", "a merge needs at least two generators")
        for i, child in enumerate(children):
            parse_generator(child, f"{here}.generators[{i}]")
        keys = _list(body, "mergeKeys", here)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise SpecError(f"{here}.mergeKeys", "needs at least one key name")
        spec = MergeGenerator(tuple(keys), tuple(children))
    template = body.get("template") or {}
    if not isinstance(template, dict):
        raise SpecError(f"{here}.template", "must be an object")
    return Generator(spec, template, _selector(raw.get("selector"), f"{where}.selector"))


def _strategy(raw: Any) -> tuple[RolloutStep, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError("spec.strategy", "must be an object")
    if raw.get("deletionOrder"):
        raise UnsupportedField("spec.strategy.deletionOrder", "not implemented")
    kind = raw.get("type") or "AllAtOnce"
    if kind == "AllAtOnce":
        return None
    if kind != "RollingSync":
        raise UnsupportedField("spec.strategy.type", f"{kind!r}: use AllAtOnce or RollingSync")
    body = raw.get("rollingSync") or {}
    if not isinstance(body, dict):
        raise SpecError("spec.strategy.rollingSync", "must be an object")
    steps = []
    for i, step in enumerate(_list(body, "steps", "spec.strategy.rollingSync")):
        where = f"spec.strategy.rollingSync.steps[{i}]"
        if not isinstance(step, dict):
            raise SpecError(where, "must be an object")
        selector = _selector({"matchExpressions": step.get("matchExpressions") or []}, where)
        max_update = step.get("maxUpdate")
        if isinstance(max_update, bool) or not (
            max_update is None
            or (isinstance(max_update, int) and max_update >= 0)
            or (isinstance(max_update, str) and re.fullmatch(r"\d+(\.\d+)?%", max_update))
        ):
            raise SpecError(f"{where}.maxUpdate", "must be a count or a percentage ('25%')")
        steps.append(RolloutStep(selector, max_update))
    if not steps:
        raise SpecError("spec.strategy.rollingSync.steps", "RollingSync needs at least one step")
    return tuple(steps)


def _git(body: Mapping[str, Any], here: str) -> GitGenerator:
    repo = body.get("repoURL")
    if not isinstance(repo, str) or not repo.strip():
        raise SpecError(f"{here}.repoURL", "is required")
    revision = body.get("revision") or "HEAD"
    if not isinstance(revision, str):
        raise SpecError(f"{here}.revision", "must be a string")
    paths: dict[str, list[GitPath]] = {"directories": [], "files": []}
    for field in paths:
        for i, entry in enumerate(_list(body, field, here)):
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str) or not path:
                raise SpecError(f"{here}.{field}[{i}].path", "is required")
            if path.startswith("/") or ".." in path.split("/"):
                raise SpecError(f"{here}.{field}[{i}].path", "must stay inside the repository")
            exclude = bool(entry.get("exclude", False))
            if exclude and field == "files":
                raise UnsupportedField(f"{here}.files[{i}].exclude", "not implemented")
            paths[field].append(GitPath(path, exclude))
    if bool(paths["directories"]) == bool(paths["files"]):
        raise SpecError(here, "needs exactly one of directories and files")
    requeue = body.get("requeueAfterSeconds", DEFAULT_REQUEUE)
    if not isinstance(requeue, (int, float)) or isinstance(requeue, bool) or requeue < 0:
        raise SpecError(f"{here}.requeueAfterSeconds", "must be a number of seconds")
    prefix = body.get("pathParamPrefix") or ""
    if not isinstance(prefix, str):
        raise SpecError(f"{here}.pathParamPrefix", "must be a string")
    return GitGenerator(
        repo_url=repo.strip(),
        revision=revision,
        directories=tuple(paths["directories"]),
        files=tuple(paths["files"]),
        path_param_prefix=prefix,
        values=_values(body, here),
        requeue_after=float(requeue),
    )


def _selector(raw: Any, where: str) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, dict):
        raise SpecError(where, "must be an object")
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, dict):
        raise SpecError(f"{where}.matchLabels", "must be a map")
    expressions = []
    for i, expr in enumerate(_list(raw, "matchExpressions", where)):
        op = expr.get("operator") if isinstance(expr, dict) else None
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SpecError(f"{where}.matchExpressions[{i}].operator", f"unknown {op!r}")
        values = tuple(str(v) for v in expr.get("values") or ())
        expressions.append((str(expr.get("key") or ""), str(op), values))
    return LabelSelector(
        tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(expressions)
    )


def _values(body: Mapping[str, Any], here: str) -> Obj:
    values = body.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise SpecError(f"{here}.values", "must be a map of strings")
    return values


def _list(body: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where}.{key}", "must be a list")
    return value


# -- parameters -------------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested parameters as fasttemplate reads them: ``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``;
    list items by index (``a.0``)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
    elif prefix:
        out[prefix] = _plain(value)
    return out


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


# -- templates --------------------------------------------------------------------------------

_FAST = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def _fast(text: str, params: Mapping[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        if key in params:
            return _plain(params[key])
        return match.group(0)

    return _FAST.sub(replace, text)


def render_value(value: Any, params: Mapping[str, Any], *, go: bool, missingkey: str) -> Any:
    """Every string (and map key) of ``value`` filled with ``params``."""
    if isinstance(value, str):
        if go:
            return GoTemplate(value).render(params, missingkey=missingkey)
        return _fast(value, params)
    if isinstance(value, Mapping):
        return {
            render_value(k, params, go=go, missingkey=missingkey): render_value(
                v, params, go=go, missingkey=missingkey
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_value(v, params, go=go, missingkey=missingkey) for v in value]
    return value


def merge_template(base: Obj, override: Obj) -> Obj:
    """A generator's template over the set's: maps merged, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_template(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_application(appset: AppSet, template: Obj, params: Mapping[str, Any]) -> Obj:
    """One Application from one parameter set, owned by the set. ``RenderError`` when the
    template cannot be filled or the result is not a valid Application."""
    try:
        rendered = render_value(
            template, params, go=appset.go_template, missingkey=appset.missingkey
        )
        if appset.template_patch:
            text = GoTemplate(appset.template_patch).render(params, missingkey=appset.missingkey)
            patch = yaml.safe_load(text)
            if patch is not None:
                if not isinstance(patch, dict):
                    raise RenderError("templatePatch must render to a map")
                rendered = merge_template(rendered, patch)
    except TemplateError as exc:
        raise RenderError(f"template: {exc}") from None
    except yaml.YAMLError as exc:
        raise RenderError(f"templatePatch is not YAML once rendered: {exc}") from None
    meta = rendered.get("metadata") or {}
    if not isinstance(meta, dict):
        raise RenderError("template.metadata must be an object")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise RenderError("the Application's name is empty once rendered")
    if len(name) > 253 or not _NAME.match(name):
        raise RenderError(f"{name!r} is not a valid Application name (a DNS subdomain)")
    namespace = meta.get("namespace")
    if namespace not in (None, "", appset.namespace):
        raise RenderError(
            f"{name}: Applications are created in the set's namespace {appset.namespace!r}, "
            f"not {namespace!r}"
        )
    spec = rendered.get("spec")
    if not isinstance(spec, dict):
        raise RenderError(f"{name}: template.spec must be an object")
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    if appset.preserve_resources:
        finalizers = [f for f in finalizers if not f.startswith(RESOURCES_FINALIZER)]
    elif not any(f.startswith(RESOURCES_FINALIZER) for f in finalizers):
        finalizers.append(RESOURCES_FINALIZER)
    metadata: Obj = {"name": name, "namespace": appset.namespace}
    for key in ("labels", "annotations"):
        if meta.get(key):
            metadata[key] = {str(k): _plain(v) for k, v in meta[key].items()}
    if finalizers:
        metadata["finalizers"] = finalizers
    metadata["ownerReferences"] = [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": appset.name,
            "uid": appset.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return {"apiVersion": API_VERSION, "kind": "Application", "metadata": metadata, "spec": spec}


def render_applications(appset: AppSet, sets: Sequence[tuple[Obj, Mapping[str, Any]]]) -> list[Obj]:
    """Every Application, in order; ``RenderError`` on the first that fails or a duplicate
    name (nothing is created from a partial result)."""
    apps: list[Obj] = []
    seen: set[str] = set()
    for i, (template, params) in enumerate(sets):
        try:
            app = render_application(appset, template, params)
        except RenderError as exc:
            raise RenderError(f"parameter set {i}: {exc}") from None
        name = app["metadata"]["name"]
        if name in seen:
            raise RenderError(f"two parameter sets make the Application {name!r}")
        seen.add(name)
        apps.append(app)
    return apps
