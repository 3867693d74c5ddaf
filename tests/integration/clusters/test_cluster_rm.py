"""`gitsail cluster rm` removes what `cluster add --service-account` made on the target —
only objects carrying gitsail's labels — unless `--keep-service-account`; a context that
points at another cluster is refused before anything is deleted."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gitsail.cli.main import app as cli
from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube, KubeError, load_kubeconfig
from tests.integration.clusters.test_clusters import (
    CLUSTER_SECRETS,
    merged_kubeconfig,
    register,
)

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io/v1"
ROLE = "gitsail-manager-role"


async def cli_result(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    return result.exit_code, result.output


async def test_rm_removes_only_what_add_made_and_keep_service_account_keeps_it(
    api: Kube,
    control_ns: str,
    cluster: Cluster,
    target_clusters: tuple[Cluster, Cluster],
    tmp_path: Path,
) -> None:
    a, _ = target_clusters
    kubeconfig = merged_kubeconfig(tmp_path / "kubeconfig", cluster, a)
    suffix = control_ns[-12:]
    by_hand, made, kept = f"hand-{suffix}", f"made-{suffix}", f"kept-{suffix}"
    ctl = ("-n", control_ns, "--control-kubeconfig", str(cluster.kubeconfig))
    async with Kube(await load_kubeconfig(a.kubeconfig)) as target:

        async def sa(name: str) -> bool:
            return await target.get("v1", "ServiceAccount", name, "kube-system") is not None

        async def token(name: str) -> bool:
            return await target.get("v1", "Secret", f"{name}-token", "kube-system") is not None

        async def binding(name: str) -> bool:
            crb = f"{ROLE}-kube-system-{name}"
            return await target.get(RBAC, "ClusterRoleBinding", crb) is not None

        async def registered() -> int:
            return len(await api.list("v1", "Secret", control_ns, label_selector=CLUSTER_SECRETS))

        await target.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": by_hand, "namespace": "kube-system"},
            }
        )
        try:
            # 1. An account someone made by hand is used, not labelled, and kept by rm;
            # the token Secret and the binding gitsail made go.
            await register(
                kubeconfig, cluster, control_ns, a, "target-a", "--service-account", by_hand
            )
            live = await target.get("v1", "ServiceAccount", by_hand, "kube-system")
            assert "gitsail.io/cluster-add" not in ((live or {})["metadata"].get("labels") or {})
            made_token = await target.get("v1", "Secret", f"{by_hand}-token", "kube-system")
            assert (made_token or {})["metadata"]["labels"][
                "app.kubernetes.io/managed-by"
            ] == "gitsail"
            assert await registered() == 1

            code, out = await cli_result(
                "cluster", "rm", "target-a", "--kubeconfig", str(kubeconfig), *ctl
            )
            assert code == 0, out
            assert f"deleted ClusterRoleBinding {ROLE}-kube-system-{by_hand} on target-a" in out
            assert f"deleted Secret kube-system/{by_hand}-token on target-a" in out
            assert (
                f"kept ServiceAccount kube-system/{by_hand} on target-a (not made by gitsail)"
                in out
            )
            assert await sa(by_hand)
            assert not await token(by_hand)
            assert not await binding(by_hand)
            assert await registered() == 0

            # 2. --keep-service-account: only the registration goes.
            await register(
                kubeconfig, cluster, control_ns, a, "target-a", "--service-account", kept
            )
            code, out = await cli_result(
                "cluster", "rm", "target-a", "--keep-service-account", *ctl
            )
            assert code == 0, out
            assert await registered() == 0
            assert await sa(kept)
            assert await token(kept)
            assert await binding(kept)

            # 3. A context of another cluster is refused; nothing deleted anywhere.
            await register(
                kubeconfig, cluster, control_ns, a, "target-a", "--service-account", made
            )
            code, out = await cli_result(
                "cluster", "rm", a.server, "--kubeconfig", str(kubeconfig),
                "--context", f"gitsail-{cluster.name}", *ctl,
            )  # fmt: skip
            assert code != 0
            assert "nothing removed" in out
            assert await registered() == 1
            assert await sa(made)

            # 4. Everything add made goes; the ClusterRole stays while the kept account's
            # binding still uses it.
            code, out = await cli_result(
                "cluster", "rm", a.server, "--kubeconfig", str(kubeconfig), *ctl
            )
            assert code == 0, out
            assert not await sa(made)
            assert not await token(made)
            assert not await binding(made)
            assert f"kept ClusterRole {ROLE} on target-a (still bound by" in out
            assert await target.get(RBAC, "ClusterRole", ROLE) is not None
            assert await registered() == 0, out
        finally:
            for name in (by_hand, made, kept):
                for api_version, kind, obj, ns in (
                    ("v1", "ServiceAccount", name, "kube-system"),
                    ("v1", "Secret", f"{name}-token", "kube-system"),
                    (RBAC, "ClusterRoleBinding", f"{ROLE}-kube-system-{name}", None),
                ):
                    with contextlib.suppress(KubeError):
                        await target.delete(api_version, kind, obj, ns)
