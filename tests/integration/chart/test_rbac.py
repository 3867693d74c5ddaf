"""Least-privilege RBAC of charts/gitsail, asked of the dev cluster's authorizer: the chart
is installed by the pinned helm (every component on, cluster-scoped names per test), then a
SubjectAccessReview per question says what each ServiceAccount may and may not do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsail.dev.cluster import Cluster
from tests.integration.chart.test_chart import CHART, helm
from tests.integration.helpers import Kube

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture
def deliver_ns(kube: Kube, namespace: str) -> Iterator[str]:
    ns = f"{namespace}-d"[:63]
    kube.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    yield ns
    kube.client.delete(f"/api/v1/namespaces/{ns}")


def can(
    kube: Kube,
    account: str,
    namespace: str,
    verb: str,
    resource: str,
    *,
    at: str = "",
    group: str = "",
    name: str = "",
    subresource: str = "",
) -> bool:
    attrs = {"verb": verb, "resource": resource, "group": group, "namespace": at}
    if name:
        attrs["name"] = name
    if subresource:
        attrs["subresource"] = subresource
    review = kube.create(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{account}",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attrs,
            },
        },
    )
    return bool(review["status"].get("allowed"))


def can_url(kube: Kube, account: str, namespace: str, path: str) -> bool:
    review = kube.create(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{account}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                "nonResourceAttributes": {"verb": "get", "path": path},
            },
        },
    )
    return bool(review["status"].get("allowed"))


def test_each_service_account_may_do_what_it_needs_and_no_more(
    cluster: Cluster, kube: Kube, namespace: str, deliver_ns: str, helm_home: Path
) -> None:
    role = f"gitsail-{namespace}"
    values = [
        "crds.install=false",
        f"rbac.clusterRoleName={role}",
        f"server.clusterRoleName={role}-server",
        f"rbac.deliverNamespaces={{{deliver_ns}}}",
        "controller.sealedSecrets=true",
        "controller.externalSecrets=true",
        "controller.vaultInjector=true",
    ]
    args = ["install", "gitsail", str(CHART), "-n", namespace, "--wait=false"]
    for v in values:
        args += ["--set", v]
    helm(helm_home, *args, kubeconfig=cluster.kubeconfig)
    try:
        ctl = "gitsail-controller"
        srv = "gitsail-server"
        ns = namespace

        # The controller: its own kinds anywhere; full access where it delivers.
        assert can(kube, ctl, ns, "patch", "applications", at="default", group="argoproj.io")
        assert can(
            kube,
            ctl,
            ns,
            "create",
            "kustomizations",
            at="team",
            group="kustomize.toolkit.fluxcd.io",
        )
        assert can(kube, ctl, ns, "create", "deployments", at=deliver_ns, group="apps")
        assert can(kube, ctl, ns, "delete", "configmaps", at=deliver_ns)
        assert can(kube, ctl, ns, "create", "leases", at=ns, group="coordination.k8s.io")
        assert can(kube, ctl, ns, "list", "secrets", at=ns)  # repository credentials
        assert can(kube, ctl, ns, "list", "namespaces")
        assert can(
            kube, ctl, ns, "watch", "customresourcedefinitions", group="apiextensions.k8s.io"
        )
        assert can(kube, ctl, ns, "create", "events", at="default")
        assert can_url(kube, ctl, ns, "/apis")
        # ... sealed-secrets and external-secrets: Secrets anywhere, and their keys
        assert can(kube, ctl, ns, "create", "secrets", at="kube-system")
        assert can(kube, ctl, ns, "create", "serviceaccounts", at=deliver_ns)
        assert can(kube, ctl, ns, "create", "serviceaccounts", at="default", subresource="token")
        # ... the vault injector: its own webhook configuration only
        webhooks = {"group": "admissionregistration.k8s.io"}
        assert can(
            kube,
            ctl,
            ns,
            "patch",
            "mutatingwebhookconfigurations",
            name="gitsail-vault-agent-injector",
            **webhooks,
        )
        assert not can(
            kube, ctl, ns, "patch", "mutatingwebhookconfigurations", name="other", **webhooks
        )
        # Not cluster-admin: nothing outside its delivery namespaces, nothing cluster-scoped.
        assert not can(
            kube, ctl, ns, "create", "clusterrolebindings", group="rbac.authorization.k8s.io"
        )
        assert not can(kube, ctl, ns, "create", "deployments", at="kube-system", group="apps")
        assert not can(
            kube, ctl, ns, "create", "rolebindings", at="default", group="rbac.authorization.k8s.io"
        )
        assert not can(kube, ctl, ns, "delete", "namespaces")
        assert not can(
            kube, ctl, ns, "create", "customresourcedefinitions", group="apiextensions.k8s.io"
        )
        assert not can(kube, ctl, ns, "get", "nodes")
        assert not can_url(kube, ctl, ns, "/metrics")

        # The server: reads apps and what it shows; patches Applications; writes Events.
        assert can(kube, srv, ns, "list", "applications", at="team", group="argoproj.io")
        assert can(kube, srv, ns, "patch", "applications", at="team", group="argoproj.io")
        assert can(kube, srv, ns, "delete", "applications", at="team", group="argoproj.io")
        assert can(
            kube, srv, ns, "patch", "kustomizations", at="team", group="kustomize.toolkit.fluxcd.io"
        )
        assert can(kube, srv, ns, "get", "deployments", at=deliver_ns, group="apps")
        assert can(kube, srv, ns, "get", "pods", at="kube-system", subresource="log")
        assert can(kube, srv, ns, "create", "events", at="team")
        # ... Secrets only in its own namespace; named ones written.
        assert can(kube, srv, ns, "get", "secrets", at=ns, name="argocd-secret")
        assert can(kube, srv, ns, "patch", "secrets", at=ns, name="argocd-secret")
        assert not can(kube, srv, ns, "patch", "secrets", at=ns, name="repo-creds")
        assert not can(kube, srv, ns, "get", "secrets", at="kube-system")
        assert not can(kube, srv, ns, "list", "secrets", at=deliver_ns)
        # ... and no writes of delivered objects, nothing cluster-scoped.
        assert not can(kube, srv, ns, "patch", "deployments", at=deliver_ns, group="apps")
        assert not can(kube, srv, ns, "delete", "configmaps", at=deliver_ns)
        assert not can(kube, srv, ns, "create", "applications", at="team", group="argoproj.io")
        assert not can(
            kube, srv, ns, "create", "clusterrolebindings", group="rbac.authorization.k8s.io"
        )
        assert not can(kube, srv, ns, "update", "applications", at="team", group="argoproj.io")
    finally:
        helm(
            helm_home,
            "uninstall",
            "gitsail",
            "-n",
            namespace,
            "--wait",
            kubeconfig=cluster.kubeconfig,
        )
    # Uninstalled: the bindings are gone, and with them every permission.
    assert not can(
        kube,
        "gitsail-controller",
        namespace,
        "patch",
        "applications",
        at="default",
        group="argoproj.io",
    )
    assert (
        kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}-vault-injector") is None
    )


def test_cluster_admin_is_an_opt_in(
    cluster: Cluster, kube: Kube, namespace: str, helm_home: Path
) -> None:
    role = f"gitsail-{namespace}"
    args = ["install", "gitsail", str(CHART), "-n", namespace, "--wait=false"]
    for v in (
        "crds.install=false",
        f"rbac.clusterRoleName={role}",
        f"server.clusterRoleName={role}-server",
        "rbac.clusterAdmin=true",
        "server.enabled=false",
    ):
        args += ["--set", v]
    helm(helm_home, *args, kubeconfig=cluster.kubeconfig)
    try:
        ctl = "gitsail-controller"
        assert can(
            kube, ctl, namespace, "create", "clusterrolebindings", group="rbac.authorization.k8s.io"
        )
        assert can(kube, ctl, namespace, "create", "deployments", at="kube-system", group="apps")
        assert can_url(kube, ctl, namespace, "/metrics")
    finally:
        helm(
            helm_home,
            "uninstall",
            "gitsail",
            "-n",
            namespace,
            "--wait",
            kubeconfig=cluster.kubeconfig,
        )
