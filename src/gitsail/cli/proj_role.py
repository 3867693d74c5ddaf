"""`gitsail proj role`: the tokens of an AppProject's roles, as ``argocd proj role
create-token|delete-token|list-tokens``.

A token is a JWT signed with ``server.secretkey`` of ``argocd-secret`` (so the CLI needs read
access to that Secret) and recorded in the project (``status.jwtTokensByRole`` and
``spec.roles[].jwtTokens``); ``gitsail server`` accepts it while it is listed there. See
``gitsail.kinds.argo_appproject_roles``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import typer

from gitsail.cli.app import ContextOption, KubeconfigOption
from gitsail.cli.kindget import open_kube
from gitsail.cli.output import Format, OutputOption, emit, fail
from gitsail.kinds.argo_application import AppSpecError, parse_duration
from gitsail.kinds.argo_appproject import API_VERSION, KIND
from gitsail.kinds.argo_appproject_roles import (
    RoleError,
    create_role_token,
    delete_role_token,
    server_key,
)
from gitsail.kube import KubeError

__all__ = ["role"]

ProjectNamespaceOption = typer.Option(
    "argocd", "--namespace", "-n", help="namespace of the AppProjects (the control namespace)"
)


def _rows(rows: list[dict[str, Any]], title: str | None = None) -> None:
    if title:
        typer.echo(title)
    cols = list(rows[0])
    cells = [[str(c).upper() for c in cols]] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    for line in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


role = typer.Typer(help="A project's roles: their tokens (JWTs for CI and scripts).")


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
        async with open_kube(kubeconfig, context) as kube:
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
    _rows([{"field": k, "value": v} for k, v in row.items()], f"{project}:{role_name}")


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
        async with open_kube(kubeconfig, context) as kube:
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

    async def main() -> dict[str, Any] | None:
        async with open_kube(kubeconfig, context) as kube:
            return await kube.get(API_VERSION, KIND, project, namespace)

    try:
        obj = asyncio.run(main())
    except KubeError as exc:
        raise fail(str(exc)) from None
    if obj is None:
        raise fail(f"AppProject {namespace}/{project} not found")
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
    _rows(rows)
