"""`gitsail proj`: Argo CD AppProjects — list, get, and their sync windows.

As ``argocd proj list|get|windows list``: what a project permits (repositories,
destinations, cluster and namespaced kinds, source namespaces) and which sync windows are
open now. Read-only; projects are edited as objects (``kubectl apply``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import Any

import typer

from gitsail.cli.app import ContextOption, KubeconfigOption
from gitsail.cli.kindget import open_kube
from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.kinds.argo_application import AppSpecError
from gitsail.kinds.argo_appproject import API_VERSION, KIND, GroupKind, Project
from gitsail.kube import KubeError
from gitsail.model import Obj

app = typer.Typer(help="Argo CD AppProjects: list, get, windows list.")
windows = typer.Typer(help="A project's sync windows.")
app.add_typer(windows, name="windows")

ProjectNamespaceOption = typer.Option(
    "argocd", "--namespace", "-n", help="namespace of the AppProjects (the control namespace)"
)


_CORE = '""'  # the core group, as argocd proj get shows it


def _kinds(items: Iterable[GroupKind]) -> str:
    return ", ".join(f"{g.group or _CORE}/{g.kind}" for g in items) or "<none>"


def _table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """A Rich table on a terminal; piped, plain aligned columns at full width (nothing is
    cut, so scripts and logs see whole values)."""
    if console.is_terminal or not rows:
        emit(rows, Format.table, title=title)
        return
    cols = list(rows[0])
    cells = [[str(c).upper() for c in cols]] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    if title:
        typer.echo(title)
    for line in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _parse(obj: Obj) -> Project:
    try:
        return Project.from_object(obj)
    except AppSpecError as exc:
        raise fail(f"AppProject {(obj.get('metadata') or {}).get('name')}: {exc}") from None


def _summary(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "description": project.description,
        "destinations": ", ".join(
            f"{d.server or d.name},{d.namespace}" for d in project.destinations
        )
        or "<none>",
        "sources": ", ".join(project.source_repos) or "<none>",
        "cluster-resource-whitelist": _kinds(project.cluster_whitelist),
        "namespace-resource-blacklist": _kinds(project.namespace_blacklist),
        "signature-keys": "<none>",
        "orphaned-resources": "disabled"
        if project.orphaned_warn is None
        else f"enabled (warn={str(project.orphaned_warn).lower()})",
    }


def _read(
    kubeconfig: str | None, context: str | None, namespace: str, name: str | None
) -> list[Obj]:
    async def main() -> list[Obj]:
        async with open_kube(kubeconfig, context) as kube:
            if name is None:
                return await kube.list(API_VERSION, KIND, namespace)
            obj = await kube.get(API_VERSION, KIND, name, namespace)
            return [obj] if obj is not None else []

    try:
        found = asyncio.run(main())
    except KubeError as exc:
        raise fail(str(exc)) from None
    if name is not None and not found:
        hint = " (the controller makes 'default' on first use)" if name == "default" else ""
        raise fail(f"AppProject {namespace}/{name} not found{hint}")
    return found


@app.command("list")
def list_projects(
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """List AppProjects: what each permits."""
    objs = _read(kubeconfig, context, namespace, None)
    if output is not Format.table:
        emit(objs, output)
        return
    _table([_summary(_parse(o)) for o in objs])


@app.command()
def get(
    name: str,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """One AppProject: repositories, destinations, kinds, source namespaces, windows."""
    (obj,) = _read(kubeconfig, context, namespace, name)
    if output is not Format.table:
        emit(obj, output)
        return
    project = _parse(obj)
    rows = {
        **_summary(project),
        "cluster-resource-blacklist": _kinds(project.cluster_blacklist),
        "namespace-resource-whitelist": "<all>"
        if project.namespace_whitelist is None
        else _kinds(project.namespace_whitelist),
        "source-namespaces": ", ".join(project.source_namespaces) or "<none>",
        "sync-windows": len(project.sync_windows),
    }
    _table([{"field": k, "value": v} for k, v in rows.items()], f"AppProject {namespace}/{name}")


@windows.command("list")
def list_windows(
    name: str,
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """A project's sync windows, and whether each is open now."""
    (obj,) = _read(kubeconfig, context, namespace, name)
    now = dt.datetime.now(dt.UTC)
    rows = [{"id": number, **w.to_row(now)} for number, w in enumerate(_parse(obj).sync_windows)]
    if output is not Format.table:
        emit(rows, output)
        return
    if not rows:
        typer.echo(f"AppProject {namespace}/{name} has no sync windows")
        return
    _table(rows)


# Registered last: the role token commands live in a module of their own.
from gitsail.cli.proj_role import role  # noqa: E402

app.add_typer(role, name="role")
