"""Which apps a change affects, and how their rendered manifests change.

``preview(repo, base, head, apps)``:

1. both revisions are exported from git into private directories (``git archive``: the
   checkout, its index and its branches are not touched);
2. each app (``AppSource``: where it renders from in this repository, with its render
   options) gets the content digest of exactly the files its render reads at each revision
   (``gitsail.source.inputs.input_digest``, the render cache's key). Equal digests: the app is
   not affected and is not rendered. That is what keeps a monorepo preview fast: 1000 apps,
   one touched, one render pair;
3. an affected app is rendered at both revisions and the renders are diffed
   (``rendered.diff_renders``, Secrets redacted).

Apps come from the cluster (the CLI lists Argo CD Applications and Flux Kustomizations that
point at this repository) or, offline, from the repository's own manifests at both revisions
(``apps_in_tree``). An app whose path exists at one revision only is added or removed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitsail.kinds.argo_application import render_options
from gitsail.kinds.flux_kustomization import parse_kustomization
from gitsail.kinds.flux_kustomization_build import kustomize_options
from gitsail.model import Obj
from gitsail.render import RenderError, RenderOptions
from gitsail.source.errors import SourceError
from gitsail.source.inputs import input_digest
from gitsail.workflow.gitops import Repo
from gitsail.workflow.rendered import ObjectDiff, diff_renders, markdown_diff

__all__ = [
    "AppPreview",
    "AppSource",
    "Preview",
    "app_source",
    "apps_in_tree",
    "preview",
]

MAX_MANIFEST_FILES = 20_000
MAX_MANIFEST_BYTES = 1024 * 1024
ARGO_API = "argoproj.io/"
FLUX_KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
Render = Callable[[Path, Path, RenderOptions], list[Obj]]  # app dir, repo root, options


@dataclass(frozen=True)
class AppSource:
    """An app as far as a preview needs it: who it is and what it renders in this repo."""

    kind: str  # "Application" | "Kustomization"
    namespace: str
    name: str
    path: str  # relative to the repository root
    options: RenderOptions = field(default_factory=RenderOptions)
    tool_hint: str | None = None
    value_files: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class AppPreview:
    app: AppSource
    change: str  # "changed" | "added" | "removed"
    base_digest: str
    head_digest: str
    diffs: tuple[ObjectDiff, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Preview:
    base: str
    head: str
    apps_considered: int
    affected: tuple[AppPreview, ...]
    renders: int

    @property
    def changed(self) -> bool:
        return bool(self.affected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "appsConsidered": self.apps_considered,
            "renders": self.renders,
            "affected": [
                {
                    "kind": p.app.kind,
                    "namespace": p.app.namespace,
                    "name": p.app.name,
                    "path": p.app.path,
                    "change": p.change,
                    "baseDigest": p.base_digest,
                    "headDigest": p.head_digest,
                    "error": p.error,
                    "objects": [
                        {
                            "kind": d.kind,
                            "namespace": d.namespace,
                            "name": d.name,
                            "change": d.change,
                            "diff": d.diff,
                        }
                        for d in p.diffs
                    ],
                }
                for p in self.affected
            ],
        }

    def markdown(self) -> str:
        lines = [
            f"## gitsail preview `{self.base[:12]}..{self.head[:12]}`",
            "",
            f"{len(self.affected)} of {self.apps_considered} apps affected.",
            "",
        ]
        if self.affected:
            lines += ["| app | path | change | objects |", "|---|---|---|---|"]
            lines += [
                f"| `{p.app.id}` | `{p.app.path}` | {p.change} | "
                f"{'render failed' if p.error else len(p.diffs)} |"
                for p in self.affected
            ]
        for p in self.affected:
            lines += ["", f"### `{p.app.id}`", ""]
            lines.append(f"> render failed: {p.error}" if p.error else markdown_diff(p.diffs))
        return "\n".join(lines) + "\n"


# -- finding apps ----------------------------------------------------------------------------


def app_source(obj: Obj) -> AppSource | None:
    """The app an Argo CD Application or Flux Kustomization object describes, when it renders
    a path of a Git repository (None for a Helm chart from a chart repository, a multi-source
    app without a path, or any other object)."""
    api = str(obj.get("apiVersion") or "")
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict) or not name:
        return None
    if api.startswith(ARGO_API) and kind == "Application":
        source = spec.get("source")
        if not isinstance(source, dict) or source.get("chart") or source.get("path") is None:
            return None
        destination = spec.get("destination") or {}
        options = render_options(
            source, app_name=name, namespace=str(destination.get("namespace") or "")
        )
        helm = source.get("helm") or {}
        values = helm.get("valueFiles") if isinstance(helm, dict) else None
        return AppSource(
            "Application",
            namespace,
            name,
            _clean(str(source.get("path"))),
            options,
            value_files=tuple(str(v) for v in values or () if isinstance(v, str)),
        )
    if api.startswith(FLUX_KUSTOMIZE_API) and kind == "Kustomization":
        sourceref = spec.get("sourceRef") or {}
        if sourceref.get("kind", "GitRepository") != "GitRepository":
            return None
        parsed = parse_kustomization(obj)
        options = RenderOptions(
            app_name=name,
            namespace=parsed.render.target_namespace or "",
            kustomize=kustomize_options(parsed.render),
        )
        return AppSource(
            "Kustomization", namespace, name, _clean(parsed.render.path), options, "kustomize"
        )
    return None


def _clean(path: str) -> str:
    return path.strip().removeprefix("./").strip("/") or "."


def _documents(path: Path) -> Iterable[Any]:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return []
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if "kind:" not in text or ("argoproj.io" not in text and "fluxcd.io" not in text):
        return []
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError:
        return []  # not a manifest of ours; the render of its app reports real errors


def apps_in_tree(root: Path, skipped: list[str] | None = None) -> list[AppSource]:
    """The Applications and Kustomizations defined in a checkout's YAML files (an invalid
    one is named in ``skipped``)."""
    found: dict[str, AppSource] = {}
    count = 0
    for path in sorted(root.rglob("*.y*ml")):
        if ".git" in path.parts or not path.is_file():
            continue
        count += 1
        if count > MAX_MANIFEST_FILES:
            break
        for doc in _documents(path):
            if not isinstance(doc, dict):
                continue
            try:
                app = app_source(doc)
            except (ValueError, TypeError, AttributeError) as exc:  # SpecError, AppSpecError
                if skipped is not None:
                    skipped.append(f"{path.relative_to(root)}: {exc}")
                app = None
            if app is not None:
                found.setdefault(app.id, app)
    return list(found.values())


# -- the preview -----------------------------------------------------------------------------


def _digest(root: Path, app: AppSource) -> str:
    if not (root / app.path).exists():
        return ""
    return input_digest(root, app.path, tool_hint=app.tool_hint, value_files=app.value_files)


def preview(
    repo: Repo,
    base: str,
    head: str,
    *,
    apps: Callable[[Path, Path], Sequence[AppSource]],
    render: Render,
) -> Preview:
    """Compare ``base`` and ``head`` of ``repo`` for the apps ``apps(base_root, head_root)``
    returns (see the module docstring)."""
    scratch = Path(tempfile.mkdtemp(prefix="gitsail-preview-"))
    try:
        base_root, head_root = scratch / "base", scratch / "head"
        base_commit = repo.export(base, base_root)
        head_commit = repo.export(head, head_root)
        return compare_trees(
            (base_root, base_commit), (head_root, head_commit), apps=apps, render=render
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare_trees(
    base: tuple[Path, str],
    head: tuple[Path, str],
    *,
    apps: Callable[[Path, Path], Sequence[AppSource]],
    render: Render,
) -> Preview:
    """The preview of two trees already on disk, each given as ``(root, commit)``: a local
    checkout's exports (``preview``) or a remote's fetched checkouts (``preview --pr``)."""
    (base_root, base_commit), (head_root, head_commit) = base, head
    candidates = apps(base_root, head_root)
    affected: list[AppPreview] = []
    renders = 0
    for app in sorted(candidates, key=lambda a: a.id):
        try:
            before, after = _digest(base_root, app), _digest(head_root, app)
        except SourceError as exc:
            affected.append(AppPreview(app, "changed", "", "", error=str(exc)))
            continue
        if before == after:
            continue
        change = "added" if not before else "removed" if not after else "changed"
        try:
            old = render(base_root / app.path, base_root, app.options) if before else []
            new = render(head_root / app.path, head_root, app.options) if after else []
            renders += bool(before) + bool(after)
        except RenderError as exc:
            affected.append(AppPreview(app, change, before, after, error=str(exc)))
            continue
        diffs = tuple(diff_renders(old, new))
        affected.append(AppPreview(app, change, before, after, diffs))
    return Preview(base_commit, head_commit, len(candidates), tuple(affected), renders)


def offline_apps(base_root: Path, head_root: Path) -> list[AppSource]:
    """The apps the repository defines at either revision (head's definition wins)."""
    found = {app.id: app for app in apps_in_tree(base_root)}
    found.update({app.id: app for app in apps_in_tree(head_root)})
    return list(found.values())


__all__ += ["compare_trees", "offline_apps"]
