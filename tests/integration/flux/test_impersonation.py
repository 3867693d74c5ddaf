"""``spec.serviceAccountName``: the Kustomization reconciler acts on the target cluster as the
ServiceAccount (``Impersonate-User: system:serviceaccount:<ns>:<name>``), so that account's
RBAC decides what is applied. The controller's own identity (the dev cluster's admin) may
impersonate; reading the source and writing the status stay on that identity.

The setup (GitRepository plus its published status, reconciler called one pass at a time)
is the one of ``test_kustomization.py``, whose fixtures are reused.
"""

from __future__ import annotations

import pytest

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.flux.test_kustomization import (
    Flux,
    cm,
    flux,
    ks_kube,
    ks_reconciler,
    ready,
)

__all__ = ["flux", "ks_kube", "ks_reconciler"]  # fixtures used here

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io/v1"


async def configmaps_only(kube: Kube, namespace: str, account: str) -> None:
    """A ServiceAccount whose Role allows ConfigMaps in ``namespace`` and nothing else."""
    await kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        },
        field_manager="test",
    )
    await kube.apply(
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": {"name": "configmaps", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}],
        },
        field_manager="test",
    )
    await kube.apply(
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": {"name": "configmaps", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmaps",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        field_manager="test",
    )


def secret(name: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  k: v\n"


async def test_service_account_applies_what_its_role_allows_and_prunes_it(
    flux: Flux, git_repo: Workdir
) -> None:
    await configmaps_only(flux.kube, flux.ns, "deployer")
    sha = git_repo.commit_and_push(
        {
            "app/kustomization.yaml": "resources: [a.yaml, b.yaml]\n",
            "app/a.yaml": cm("a"),
            "app/b.yaml": cm("b"),
        },
        "two configmaps",
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "app", path="./app", targetNamespace=flux.ns, serviceAccountName="deployer", wait=True
    )
    _, obj = await flux.reconcile("app")
    condition = ready(obj)
    assert condition["status"] == "True", condition
    assert condition["reason"] == "ReconciliationSucceeded"
    a = await flux.configmap("a")
    assert a is not None
    assert await flux.configmap("b") is not None
    managers = {m["manager"] for m in a["metadata"].get("managedFields") or []}
    assert "kustomize-controller" in managers

    # The prune runs as the ServiceAccount too (allowed: a ConfigMap).
    sha = git_repo.commit_and_push({"app/kustomization.yaml": "resources: [a.yaml]\n"}, "drop b")
    await flux.publish("repo", sha)
    _, obj = await flux.reconcile("app")
    assert ready(obj)["status"] == "True", ready(obj)
    assert await flux.configmap("b") is None
    entries = [e["id"] for e in obj["status"]["inventory"]["entries"]]
    assert entries == [f"{flux.ns}_a__ConfigMap"]


async def test_what_the_service_account_may_not_do_fails_naming_it_and_applies_nothing(
    flux: Flux, git_repo: Workdir
) -> None:
    await configmaps_only(flux.kube, flux.ns, "deployer")
    sha = git_repo.commit_and_push(
        {
            "app/kustomization.yaml": "resources: [a.yaml, s.yaml]\n",
            "app/a.yaml": cm("a"),
            "app/s.yaml": secret("s"),
        },
        "a configmap and a secret",
    )
    await flux.git_repository("repo", sha)
    await flux.kustomization(
        "app", path="./app", targetNamespace=flux.ns, serviceAccountName="deployer"
    )
    after, obj = await flux.reconcile("app")
    condition = ready(obj)
    assert condition["status"] == "False", condition
    assert condition["reason"] == "ReconciliationFailed"
    assert f"ServiceAccount '{flux.ns}/deployer'" in condition["message"]
    assert "secrets" in condition["message"]
    assert "forbidden" in condition["message"]
    assert after == 600  # retried after retryInterval (the interval, 10m)
    # The dry run failed first: neither the allowed ConfigMap nor the Secret was written.
    assert await flux.configmap("a") is None
    assert await flux.kube.get("v1", "Secret", "s", flux.ns) is None
    assert "lastAppliedRevision" not in obj["status"]

    # Without the ServiceAccount, the controller's own identity applies both.
    await flux.kustomization("app", path="./app", targetNamespace=flux.ns)
    _, obj = await flux.reconcile("app")
    assert ready(obj)["status"] == "True", ready(obj)
    assert await flux.kube.get("v1", "Secret", "s", flux.ns) is not None
