"""The ``gitsail server`` command."""

from __future__ import annotations

import asyncio

import typer

from gitsail.cli.output import fail
from gitsail.kube import ConfigError, KubeError, load_kubeconfig
from gitsail.kube.config import in_cluster_config
from gitsail.policy import Policy, PolicyError

__all__ = ["server"]


def server(
    listen: str = typer.Option(
        "127.0.0.1:8080", "--listen", help="HOST:PORT of the API and the web UI"
    ),
    namespace: list[str] = typer.Option(
        ["argocd"],
        "--namespace",
        "-n",
        help="namespaces whose Applications and Flux objects to serve (the first is the "
        "control namespace: argocd-cm, argocd-rbac-cm, argocd-secret)",
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
    in_cluster: bool = typer.Option(
        False, "--in-cluster", help="use the pod's service account, ignoring any kubeconfig"
    ),
) -> None:
    """Serve the JSON API (/api/v1, docs at /api/docs) and the web UI."""
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise fail(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    try:
        policy = Policy.from_env()
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    from gitsail.server.app import run_server

    async def main() -> None:
        if in_cluster:
            config = in_cluster_config()
        else:
            path = kubeconfig.split(":")[0] if kubeconfig else None
            config = await load_kubeconfig(path, context)
        await run_server(config, host, int(port_text), namespace[0], tuple(namespace), policy)

    try:
        asyncio.run(main())
    except (ConfigError, KubeError, OSError) as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        pass
