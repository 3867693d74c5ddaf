"""`gitsail install`: put gitsail into a cluster (CRDs, then the controller)."""

from __future__ import annotations

import asyncio

import typer
import yaml

from gitsail.app.install import (
    CRD_FAMILIES,
    DEFAULT_IMAGE,
    UnsafeCRDChange,
    controller_manifests,
    crd_manifests,
    install_controller,
    install_crds,
)
from gitsail.app.install_rbac import validate_namespaces
from gitsail.cli.output import console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig


def install(
    crds_only: bool = typer.Option(False, "--crds-only", help="apply only the CRDs"),
    flux: bool = typer.Option(
        False, "--flux", help="Flux CRDs (GitRepository, Kustomization, Receiver); default: both"
    ),
    argocd: bool = typer.Option(
        False, "--argocd", help="Argo CD CRDs (Application, ApplicationSet, AppProject)"
    ),
    sealed_secrets: bool = typer.Option(
        False,
        "--sealed-secrets",
        help="the SealedSecret CRD, and the controller run with --sealed-secrets",
    ),
    vault_injector: bool = typer.Option(
        False,
        "--vault-injector",
        help="the controller also serves the Vault Agent injector webhook (docs/vault-injector.md)",
    ),
    external_secrets: bool = typer.Option(
        False,
        "--external-secrets",
        help="the External Secrets CRDs, and the controller run with --external-secrets",
    ),
    cluster_admin: bool = typer.Option(
        False,
        "--cluster-admin",
        help="grant the controller every verb on every resource cluster-wide (Argo CD's "
        "default); without it, it delivers only into its namespace and --deliver-namespace",
    ),
    deliver_namespaces: list[str] = typer.Option(
        [],
        "--deliver-namespace",
        help="a namespace Applications may deliver into (repeat the flag)",
    ),
    deliver_cluster_wide: bool = typer.Option(
        False,
        "--deliver-cluster-wide",
        help="let the controller write the built-in namespaced kinds (Secrets too) in every "
        "namespace; cluster-scoped kinds stay refused",
    ),
    server_diff: bool = typer.Option(
        False,
        "--server-diff",
        help="let the server read and dry-run every kind (Secrets too) in the delivery "
        "namespaces, for its live diffs",
    ),
    namespace: str = typer.Option("argocd", "--namespace", "-n", help="control namespace"),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="controller image"),
    replicas: int = typer.Option(1, "--replicas", help="controller replicas (leader election)"),
    shards: int = typer.Option(
        1,
        "--shards",
        help="split the apps over N shards: the controller runs as a StatefulSet "
        "(--replicas defaults to N; docs/scale.md)",
    ),
    shard_assignment: str = typer.Option(
        "auto",
        "--shard-assignment",
        help="auto: replicas claim shard Leases (a dead one's shards move); ordinal: the "
        "pod ordinal is the shard",
    ),
    print_only: bool = typer.Option(False, "--print", help="print the manifests instead"),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
) -> None:
    """Install gitsail: the CRDs it serves (Argo CD's Application, AppProject,
    ApplicationSet; Flux's GitRepository, Kustomization, Receiver; Bitnami's SealedSecret;
    --argocd, --flux or --sealed-secrets for one family) and, unless --crds-only, the
    controller (namespace, RBAC, Deployment) and the server. Least privilege unless
    --cluster-admin (docs/install.md: what each RBAC choice allows). A CRD that would stop
    serving a version its objects are stored in is refused before anything is applied."""
    chosen_families = (
        ("argocd", argocd),
        ("flux", flux),
        ("sealed-secrets", sealed_secrets),
        ("external-secrets", external_secrets),
    )
    families = [f for f, chosen in chosen_families if chosen]
    families = families or list(CRD_FAMILIES)
    try:
        deliver_namespaces = validate_namespaces(deliver_namespaces)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    manifests = crd_manifests(families)
    if not crds_only:
        manifests += controller_manifests(
            namespace,
            image=image,
            replicas=replicas,
            sealed_secrets=sealed_secrets,
            external_secrets=external_secrets,
            vault_injector=vault_injector,
            cluster_admin=cluster_admin,
            deliver_namespaces=deliver_namespaces,
            deliver_cluster_wide=deliver_cluster_wide,
            server_diff=server_diff,
        )
    if vault_injector and not crds_only:
        from gitsail.app.install_vault_injector import with_vault_injector

        with_vault_injector(manifests, namespace)
    from gitsail.app.install_shards import check_shards, with_shards

    try:
        check_shards(shards, replicas, shard_assignment)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    with_shards(manifests, shards, replicas=replicas, assignment=shard_assignment)
    if print_only:
        print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
        return

    async def main() -> list[str]:
        config = await load_kubeconfig(kubeconfig.split(":")[0] if kubeconfig else None, context)
        async with Kube(config) as kube:
            done = [
                f"customresourcedefinition {n} established"
                for n in await install_crds(kube, families=families)
            ]
            if not crds_only:
                done += await install_controller(
                    kube,
                    namespace,
                    image=image,
                    replicas=replicas,
                    sealed_secrets=sealed_secrets,
                    vault_injector=vault_injector,
                    external_secrets=external_secrets,
                    cluster_admin=cluster_admin,
                    deliver_namespaces=deliver_namespaces,
                    deliver_cluster_wide=deliver_cluster_wide,
                    server_diff=server_diff,
                    shards=shards,
                    shard_assignment=shard_assignment,
                )
            return done

    try:
        lines = asyncio.run(main())
    except (KubeError, OSError, TimeoutError, UnsafeCRDChange) as exc:
        raise fail(str(exc)) from exc
    for line in lines:
        console.print(line, highlight=False)
