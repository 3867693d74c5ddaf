"""`gitsail install`: put what gitsail serves into a cluster."""

from __future__ import annotations

import asyncio

import typer
import yaml

from gitsail.app.install import crd_manifests, install_crds
from gitsail.cli.output import console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig


def install(
    crds_only: bool = typer.Option(False, "--crds-only", help="apply only the CRDs"),
    print_only: bool = typer.Option(False, "--print", help="print the manifests instead"),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
) -> None:
    """Install the CRDs gitsail serves (argoproj.io Application, AppProject, ApplicationSet)."""
    if not crds_only:
        raise fail("only --crds-only is available yet; the controller install comes next")
    if print_only:
        print(yaml.safe_dump_all(crd_manifests(), sort_keys=False), end="")
        return

    async def main() -> list[str]:
        config = await load_kubeconfig(kubeconfig.split(":")[0] if kubeconfig else None, context)
        async with Kube(config) as kube:
            return await install_crds(kube)

    try:
        names = asyncio.run(main())
    except (KubeError, OSError, TimeoutError) as exc:
        raise fail(str(exc)) from exc
    for name in names:
        console.print(f"customresourcedefinition {name} established")
