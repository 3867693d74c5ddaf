"""`gitsail demo up|down`: what `make demo` runs."""

from __future__ import annotations

import typer

from gitsail import toolchain
from gitsail.cli.output import console, fail
from gitsail.dev import cluster as devcluster
from gitsail.dev.demo import DEMO_NAME, demo_down, demo_up

app = typer.Typer(help="The demo: a local cluster and a git server with example apps.")


@app.command()
def up(nodes: int = typer.Option(2, "--nodes", help="fake nodes in the demo cluster")) -> None:
    """Start (or reuse) the demo and print what is running and what to try."""
    try:
        with console.status("starting the demo") as status:
            demo = demo_up(nodes=nodes, progress=lambda m: status.update(m))
    except (devcluster.ClusterError, FileNotFoundError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    c = demo.cluster
    kubectl = toolchain.find_binary("kubectl")
    console.print(
        f"""[bold green]gitsail demo is running[/]

  cluster     {c.name}: Kubernetes {c.kubernetes_version} at {c.server}, {c.nodes} fake nodes
  kubeconfig  {c.kubeconfig}
  git         {demo.git_url}  (the article's layout: apps/base, apps/overlays/<env>)

Try:
  export KUBECONFIG={c.kubeconfig}
  {kubectl} get nodes
  git clone {demo.git_url} /tmp/gitops && ls /tmp/gitops/apps/overlays
  gitsail dev status

Stop it:  make demo-down   (or: gitsail demo down)""",
        highlight=False,
    )


@app.command()
def down() -> None:
    """Stop the demo cluster and its git server."""
    if demo_down():
        console.print(f"demo ({DEMO_NAME}) stopped")
    else:
        console.print("the demo was not running")
