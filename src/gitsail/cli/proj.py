"""`gitsail proj`: Argo CD AppProjects — list, get, their sync windows and role tokens.

As ``argocd proj list|get|windows list``: what a project permits (repositories,
destinations, cluster and namespaced kinds, source namespaces) and which sync windows are
open now. Projects are edited as objects (``kubectl apply``); the one write here is
``proj role create-token|delete-token``, which records a role's tokens in the project.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import typer

from gitsail.cli.app import ContextOption, KubeconfigOption
from gitsail.cli.output import Format, OutputOption, console, emit, fail
from gitsail.kinds.argo_application import AppSpecError, parse_duration
from gitsail.kinds.argo_appproject import API_VERSION, KIND, GroupKind, Project
from gitsail.kinds.argo_appproject_roles import (
    RoleError,
    create_role_token,
    delete_role_token,
    server_key,
)
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj

app = typer.Typer(help="Argo CD AppProjects: list, get, windows list, role tokens.")
windows = typer.Typer(help="A project's sync windows.")
app.add_typer(windows, name="windows")

ProjectNamespaceOption = typer.Option(
    "argocd", "--namespace", "-n", help="namespace of the AppProjects (the control namespace)"
)


_CORE = '""'  # the core group, as argocd proj get shows it


@asynccontextmanager
async def _kube(kubeconfig: str | None, context: str | None) -> AsyncIterator[Kube]:
    path = kubeconfig.split(":")[0] if kubeconfig else None
    async with Kube(await load_kubeconfig(path, context)) as kube:
        yield kube


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
        async with _kube(kubeconfig, context) as kube:
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


role = typer.Typer(help="A project's roles: their tokens (JWTs for CI and scripts).")
app.add_typer(role, name="role")


def _expiry(value: str) -> int:
    """``--expires-in``: a Go duration (12h, 30m) or days (7d); "" or 0 never expires."""
    text = value.strip()
    if not text or text == "0":
        return 0
    try:
        if re.fullmatch(r"[0-9]{1,5}d", text):
            return int(text[:-1]) * 86400
        return int(parse_duration(text, 0))
    except AppSpecError as exc:
        raise fail(f"--expires-in: {exc}") from None


@role.command("create-token")
def create_token(
    project: str,
    role_name: str = typer.Argument(..., metavar="ROLE"),
    expires_in: str = typer.Option(
        "", "--expires-in", "-e", help='lifetime, e.g. "12h", "7d" (default: no expiry)'
    ),
    token_id: str | None = typer.Option(None, "--id", "-i", help="the token's unique id"),
    token_only: bool = typer.Option(False, "--token-only", "-t", help="print only the token"),
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """Create a token of a project role, recorded in the AppProject (status.jwtTokensByRole
    and spec.roles[].jwtTokens); `gitsail server` accepts it while it is listed there."""
    seconds = _expiry(expires_in)

    async def main() -> tuple[str, dict[str, Any]]:
        async with _kube(kubeconfig, context) as kube:
            key = await server_key(kube, namespace)
            return await create_role_token(
                kube, namespace, project, role_name, key, seconds=seconds, token_id=token_id
            )

    try:
        token, record = asyncio.run(main())
    except (RoleError, KubeError) as exc:
        raise fail(str(exc)) from None
    if token_only:
        typer.echo(token)
        return
    row = {
        "token": token,
        "id": record["id"],
        "issued-at": record["iat"],
        "expires-at": record.get("exp", 0),
    }
    if output is not Format.table:
        emit(row, output)
        return
    _table([{"field": k, "value": v} for k, v in row.items()], f"{project}:{role_name}")


@role.command("delete-token")
def delete_token(
    project: str,
    role_name: str = typer.Argument(..., metavar="ROLE"),
    issued_at: int = typer.Argument(..., metavar="ISSUED-AT"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """Revoke the token of a project role issued at ISSUED-AT (as `argocd proj role
    delete-token`): the server refuses it from then on."""

    async def main() -> None:
        async with _kube(kubeconfig, context) as kube:
            await delete_role_token(kube, namespace, project, role_name, issued_at)

    try:
        asyncio.run(main())
    except (RoleError, KubeError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"token of {project}:{role_name} issued at {issued_at} deleted")


@role.command("list-tokens")
def list_tokens(
    project: str,
    role_name: str = typer.Argument(..., metavar="ROLE"),
    output: Format = OutputOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str = ProjectNamespaceOption,
) -> None:
    """The tokens of a project role still listed (id, issued at, expires at)."""
    (obj,) = _read(kubeconfig, context, namespace, project)
    by_role = ((obj.get("status") or {}).get("jwtTokensByRole") or {}).get(role_name) or {}
    rows = [
        {"id": t.get("id"), "issued-at": t.get("iat"), "expires-at": t.get("exp", 0)}
        for t in by_role.get("items") or []
        if isinstance(t, dict)
    ]
    if output is not Format.table:
        emit(rows, output)
        return
    if not rows:
        typer.echo(f"role {role_name} of {namespace}/{project} has no tokens")
        return
    _table(rows)
