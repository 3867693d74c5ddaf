"""`gitsail appset`: Argo CD ApplicationSets — list, get, and generate offline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
import yaml

from gitsail.cli.app import AppNamespaceOption, ContextOption, KubeconfigOption
from gitsail.cli.kindget import open_kube
from gitsail.cli.output import Format, OutputOption, emit, fail
from gitsail.kinds.argo_applicationset import (
    API_VERSION,
    KIND,
    RenderError,
    parse_applicationset,
    render_applications,
)
from gitsail.kinds.argo_applicationset_generators import Cluster, GeneratorError, generate
from gitsail.kinds.errors import SpecError
from gitsail.kube import KubeError
from gitsail.model import Obj
from gitsail.policy import Policy, PolicyError

app = typer.Typer(help="Argo CD ApplicationSets: list, get, generate (offline).")


def _condition(obj: Obj, kind: str) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _summary(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    generators = [
        next(iter(g), "?") if isinstance(g, dict) else "?" for g in spec.get("generators") or []
    ]
    up = _condition(obj, "ResourcesUpToDate")
    error = _condition(obj, "ErrorOccurred")
    return {
        "name": meta.get("name"),
        "generators": ",".join(generators),
        "applications": len((obj.get("status") or {}).get("resources") or []),
        "sync-policy": (spec.get("syncPolicy") or {}).get("applicationsSync") or "sync",
        "up-to-date": up.get("status", "Unknown"),
        "message": error.get("message", "") if error.get("status") == "True" else "",
    }


@app.command("list")
def list_sets(
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """List ApplicationSets with their generators and state."""

    async def main() -> list[Obj]:
        async with open_kube(kubeconfig, context) as kube:
            return await kube.list(API_VERSION, KIND, namespace)

    try:
        sets = asyncio.run(main())
    except KubeError as exc:
        raise fail(str(exc)) from None
    if output is Format.table:
        emit([_summary(s) for s in sets], output)
    else:
        emit(sets, output)


@app.command()
def get(
    name: str,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = AppNamespaceOption,
) -> None:
    """One ApplicationSet: its conditions and the Applications it made."""

    async def main() -> Obj | None:
        async with open_kube(kubeconfig, context) as kube:
            return await kube.get(API_VERSION, KIND, name, namespace)

    try:
        obj = asyncio.run(main())
    except KubeError as exc:
        raise fail(str(exc)) from None
    if obj is None:
        raise fail(f"ApplicationSet {namespace}/{name} not found")
    if output is not Format.table:
        emit(obj, output)
        return
    emit(_summary(obj), output, title=f"ApplicationSet {namespace}/{name}")
    status = obj.get("status") or {}
    conditions = [
        {k: c.get(k) for k in ("type", "status", "reason", "message")}
        for c in status.get("conditions") or []
    ]
    if conditions:
        emit(conditions, output, title="Conditions")
    resources = [
        {
            "name": r.get("name"),
            "sync": r.get("status"),
            "health": (r.get("health") or {}).get("status", ""),
        }
        for r in status.get("resources") or []
    ]
    if resources:
        emit(resources, output, title="Applications")


class _Offline:
    """Generators' sources without a cluster: only the implicit in-cluster, and the local
    checkout given with --repo-dir for every git generator (its revision is not resolved)."""

    def __init__(self, repo_dir: Path | None) -> None:
        self.repo_dir = repo_dir

    async def clusters(self) -> list[Cluster]:
        return []

    async def checkout(self, repo_url: str, revision: str) -> Path:
        if self.repo_dir is None:
            raise GeneratorError(
                f"a git generator reads {repo_url}: give a local checkout with --repo-dir"
            )
        return self.repo_dir


@app.command("generate")
def generate_apps(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="ApplicationSet YAML"),
    repo_dir: Path | None = typer.Option(
        None, "--repo-dir", file_okay=False, exists=True, help="checkout read by git generators"
    ),
    output: Format = OutputOption,
) -> None:
    """Print the Applications an ApplicationSet would make, offline (clusters: in-cluster
    only; git: the checkout given with --repo-dir)."""
    try:
        policy = Policy.from_env()
    except PolicyError as exc:
        raise fail(str(exc)) from None
    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise fail(f"{file}: not YAML: {exc}") from None
    sets = [d for d in docs if d.get("kind") == KIND]
    if not sets:
        raise fail(f"{file} holds no ApplicationSet")
    apps: list[Obj] = []
    for obj in sets:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "argocd")
        try:
            appset = parse_applicationset(obj)
            generated = asyncio.run(generate(appset, _Offline(repo_dir), policy))
            apps += render_applications(appset, generated.sets)
        except (SpecError, GeneratorError, RenderError) as exc:
            raise fail(f"ApplicationSet {meta.get('name')}: {exc}") from None
    if output is Format.table:
        emit(
            [
                {
                    "name": a["metadata"]["name"],
                    "project": a["spec"].get("project", ""),
                    "repo": (a["spec"].get("source") or {}).get("repoURL", ""),
                    "path": (a["spec"].get("source") or {}).get("path", ""),
                    "server": (a["spec"].get("destination") or {}).get("server")
                    or (a["spec"].get("destination") or {}).get("name", ""),
                    "namespace": (a["spec"].get("destination") or {}).get("namespace", ""),
                }
                for a in apps
            ],
            output,
        )
    else:
        emit(apps, output)
