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
    password = demo.admin_password or "in Secret argocd/argocd-initial-admin-secret"
    console.print(
        f"""[bold green]gitsail demo is running[/]

  cluster     {c.name}: Kubernetes {c.kubernetes_version} at {c.server}, {c.nodes} fake nodes
  git         {demo.git_url}  (the article's layout: apps/base, apps/overlays/<env>)
  controller  {demo.controller_url}  (/healthz, /metrics, POST /api/webhook)
  web UI      {demo.server_url}  (user admin, password {password}; API at /api/docs)
  apps        myapp-development, myapp-staging, myapp-production in namespace argocd:
              automated sync with prune and self-heal, polled every 15 s
  flux        GitRepository gitops and Kustomizations myapp-<env> in flux-system: the same
              overlays into flux-development, flux-staging, flux-production, dependsOn
              development -> staging -> production (see docs/flux.md)
  helm        HelmRepository bitnami (the example charts, served on loopback) and the
              article's HelmRelease redis ("17.x") in namespace redis: a real Helm release
              (see docs/helm.md)

Try it:
  export KUBECONFIG={c.kubeconfig}
  alias kubectl={kubectl}
  gitsail app list                              # the three apps, Synced and Healthy
  kubectl -n production get deploy myapp        # 5 replicas, from apps/overlays/production
  gitsail get kustomizations -A                 # the Flux Kustomizations, Ready
  gitsail get sources git -A                    # the GitRepository and its artifact revision
  kubectl -n flux-production get deploy myapp   # the same overlay, applied as Flux would
  gitsail get helmreleases -n redis             # redis 17.3.2, Ready
  gitsail get sources chart -A                  # the HelmChart flux-system/redis-redis

  # change a replica count in Git and watch it sync (within ~20 s; or send a webhook)
  git clone {demo.git_url} /tmp/gitops && cd /tmp/gitops
  sed -i 's/count: 5/count: 3/' apps/overlays/production/kustomization.yaml
  git -c user.name=you -c user.email=you@example.com commit -qam "production: 3 replicas"
  git push -q && cd -
  kubectl -n production get deploy myapp -w

  # scale by hand and watch it heal (and see who drifted it)
  kubectl -n staging scale deploy myapp --replicas=9
  kubectl -n staging get deploy myapp -w
  kubectl -n argocd get events --field-selector involvedObject.name=myapp-staging

  gitsail app get myapp-production               # resources, sync, health
  gitsail app history myapp-production
  curl -s {demo.controller_url}/metrics | grep gitsail_app

Logs:  {c.directory / "logs"}/controller.log
Stop:  make demo-down   (or: gitsail demo down)""",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def down() -> None:
    """Stop the demo cluster and its git server."""
    if demo_down():
        console.print(f"demo ({DEMO_NAME}) stopped")
    else:
        console.print("the demo was not running")
