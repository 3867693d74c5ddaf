"""``gitsail get <kind>`` for custom kinds: read one or all objects, print them like flux.

Flux kinds, External Secrets kinds and the image automation kinds share this: the read (one
object by name, a namespace, or every namespace; cluster-scoped kinds ignore the namespace),
the ``-o json|yaml`` output, and a plain table that is never cut or wrapped when piped. Each
kind brings only its row (a dict of column → text) and its columns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gitsail.cli.app import ContextOption, KubeconfigOption, run
from gitsail.cli.output import Format, OutputOption, console, emit, err_console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj

__all__ = [
    "AllNamespacesOption",
    "GetRun",
    "get_command",
    "guarded",
    "open_kube",
    "print_rows",
    "read_objects",
    "show_objects",
]

AllNamespacesOption = typer.Option(
    False, "--all-namespaces", "-A", help="list the objects of every namespace"
)

# name, namespace, all_namespaces, output, kubeconfig, context
GetRun = Callable[[str | None, str, bool, Format, str | None, str | None], None]


@asynccontextmanager
async def open_kube(kubeconfig: str | None, context: str | None) -> AsyncIterator[Kube]:
    """A client for the kubeconfig's (first file's) context, closed on exit."""
    path = kubeconfig.split(":")[0] if kubeconfig else None
    async with Kube(await load_kubeconfig(path, context)) as kube:
        yield kube


def guarded(coro: Any) -> Any:
    """Run ``coro``; an API error becomes a one-line CLI failure."""
    try:
        return run(coro)
    except KubeError as exc:
        raise fail(str(exc)) from None


def print_rows(rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """A table like flux's: plain columns; never cut or wrapped when piped."""
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.upper(), no_wrap=True)
    for row in rows:
        table.add_row(*(Text(row[c]) for c in columns))  # tenant text: never markup
    out = console if console.is_terminal else Console(width=100_000, soft_wrap=True)
    out.print(table)


async def read_objects(
    kube: Kube,
    api_version: str,
    kind: str,
    name: str | None,
    namespace: str,
    *,
    all_namespaces: bool,
    cluster_scoped: bool = False,
) -> list[Obj]:
    """One object (a CLI failure when missing) or all of them, sorted by namespace and name."""
    if name is not None and (cluster_scoped or not all_namespaces):
        obj = await kube.get(api_version, kind, name, None if cluster_scoped else namespace)
        if obj is None:
            where = "" if cluster_scoped else f" in namespace {namespace}"
            raise fail(f"{kind} {name} not found{where}")
        return [obj]
    scope = None if (cluster_scoped or all_namespaces) else namespace
    objs = await kube.list(api_version, kind, scope)
    if name is not None:
        objs = [o for o in objs if (o.get("metadata") or {}).get("name") == name]
    return sorted(objs, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))


def show_objects(
    objs: list[Obj],
    *,
    one: bool,
    output: Format,
    rows: Callable[[Obj], dict[str, str]],
    columns: tuple[str, ...],
    with_namespace: bool,
    empty: str,
) -> None:
    """Print the objects: the bare object for ``-o`` of one, else a list or a table."""
    if output is not Format.table:
        emit(objs[0] if one and len(objs) == 1 else objs, output)
        return
    if not objs:
        err_console.print(empty, highlight=False)
        return
    print_rows([rows(o) for o in objs], ("namespace", *columns) if with_namespace else columns)


def get_command(kind: str, doc: str, run_get: GetRun, namespace_option: Any) -> Callable[..., None]:
    """A ``get`` subcommand for ``kind`` with the usual flags, running ``run_get``."""

    def command(
        name: str | None = typer.Argument(None, help=f"one {kind} (default: all)"),
        namespace: str = namespace_option,
        all_namespaces: bool = AllNamespacesOption,
        output: Format = OutputOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        run_get(name, namespace, all_namespaces, output, kubeconfig, context)

    command.__doc__ = doc
    return command
