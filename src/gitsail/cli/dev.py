"""`gitsail dev …`: pinned tools, local clusters and a local git server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from gitsail import toolchain
from gitsail.cli.output import Format, OutputOption, console, emit, err_console, fail
from gitsail.dev import cluster as devcluster
from gitsail.dev.chartrepo import ChartServer
from gitsail.dev.gitserver import GitServer

app = typer.Typer(help="Local development: pinned tools, a real local cluster, a git server.")
tools_app = typer.Typer(help="The pinned upstream binaries (built from the Go module proxy).")
app.add_typer(tools_app, name="tools")

NameOption = typer.Option(devcluster.DEFAULT_NAME, "--name", "-n", help="cluster name")


@tools_app.callback(invoke_without_command=True)
def tools_list(ctx: typer.Context, output: Format = OutputOption) -> None:
    """List each pinned tool: version, path and whether it is built."""
    if ctx.invoked_subcommand is not None:
        return
    emit(
        list(toolchain.describe()),
        output,
        columns=("tool", "binary", "version", "built", "path"),
    )


@tools_app.command("build")
def tools_build(
    only: list[str] = typer.Argument(None, help="tool names (default: every tool)"),
    test_tools: bool = typer.Option(
        False, "--test-tools", help="also the test-only tools (kubeseal, sealed-secrets controller)"
    ),
) -> None:
    """Build the pinned tools that are missing from the cache (the rest are reused)."""
    missing = toolchain.missing_tools(only or None, test_only=test_tools)
    if not missing:
        console.print(f"all pinned tools are built, in {toolchain.cache_root() / 'bin'}")
        return
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        overall = progress.add_task(f"building {len(missing)} tool(s)", total=len(missing))
        for tool in missing:
            task = progress.add_task(f"  {tool.name} {tool.version} (go build)", total=1)
            try:
                seconds = toolchain.build(tool)
            except toolchain.BuildError as exc:
                raise fail(str(exc)) from exc
            progress.update(
                task, completed=1, description=f"  {tool.name} {tool.version} ({seconds:.0f}s)"
            )
            progress.advance(overall)
    console.print(f"built {len(missing)} tool(s) in {time.monotonic() - started:.0f}s")


@app.command()
def up(
    name: str = NameOption,
    nodes: int = typer.Option(1, "--nodes", help="number of fake (kwok) nodes"),
    timeout: float = typer.Option(180.0, help="seconds to wait for readiness"),
) -> None:
    """Start a local control plane (etcd, apiserver, controller-manager, scheduler, kwok)."""
    started = time.monotonic()
    try:
        with console.status(f"starting cluster {name}") as status:
            cluster = devcluster.up(
                name, nodes=nodes, timeout=timeout, progress=lambda m: status.update(m)
            )
    except (devcluster.ClusterError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"[green]cluster {name} is ready[/] in {time.monotonic() - started:.1f}s: "
        f"Kubernetes {cluster.kubernetes_version} at {cluster.server}, {cluster.nodes} node(s)\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  kubectl: {toolchain.find_binary('kubectl')}\n"
        f"  stop it: gitsail dev down --name {name}"
    )


@app.command()
def down(name: str = NameOption) -> None:
    """Stop every process of a cluster and remove its state."""
    if devcluster.down(name):
        console.print(f"cluster {name} stopped and removed")
    else:
        console.print(f"no cluster named {name}")


@app.command()
def status(output: Format = OutputOption) -> None:
    """List local clusters and whether their processes are alive."""
    rows = []
    for c in devcluster.list_clusters():
        procs = list(devcluster.process_table(c))
        dead = [p["role"] for p in procs if not p["alive"]]
        rows.append(
            {
                "name": c.name,
                "state": "running" if not dead and procs else "stale",
                "server": c.server,
                "nodes": c.nodes,
                "kubernetes": c.kubernetes_version,
                "dead": ",".join(dead),
                "kubeconfig": str(c.kubeconfig),
                "processes": procs,
            }
        )
    emit(rows, output, columns=("name", "state", "server", "nodes", "kubernetes", "dead"))


@app.command()
def kubeconfig(name: str = NameOption) -> None:
    """Print the path of a cluster's admin kubeconfig (last line of output)."""
    cluster = devcluster.load(name)
    if cluster is None:
        raise fail(f"no cluster named {name}; start it with `gitsail dev up --name {name}`")
    if not cluster.alive():
        err_console.print(f"[yellow]warning:[/] cluster {name} is stale (processes gone)")
    print(cluster.kubeconfig)


@app.command("git-server")
def git_server(
    root: Path = typer.Option(..., help="directory holding bare repositories (<name>.git)"),
    port: int = typer.Option(0, help="port on 127.0.0.1 (0 picks a free one)"),
    username: str = typer.Option("", help="require HTTP basic auth with this user"),
    password: str = typer.Option("", envvar="GITSAIL_GIT_PASSWORD", help="its password"),
    verbose: bool = typer.Option(False, help="log every request"),
) -> None:
    """Serve the bare repositories under ROOT over smart HTTP on loopback (foreground)."""
    creds = (username, password) if username else None
    server = GitServer(root, credentials=creds, port=port, verbose=verbose)
    console.print(f"serving {root} at {server.base_url}/<name>.git", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


@app.command("chart-server")
def chart_server(
    root: Path = typer.Option(..., help="directory of the chart repositories (kept)"),
    port: int = typer.Option(0, help="port on 127.0.0.1 (0 picks a free one)"),
    repository: str = typer.Option("charts", help="the repository seeded with the examples"),
) -> None:
    """Serve a Helm chart repository of the example charts (redis 16.x/17.x, podinfo) on
    loopback, at http://127.0.0.1:PORT/REPOSITORY (foreground)."""
    server = ChartServer(root, port=port).start()
    repo = server.repository(repository, exist_ok=True)
    console.print(f"serving the example charts at {repo.url}", highlight=False)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        server.stop()
