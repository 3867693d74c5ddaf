"""charts/gitsail with the pinned helm: lint, template (equal to `gitsail install --print`),
values schema, and install → upgrade → uninstall in the dev cluster.

kwok's nodes run no containers: the installed Deployment becomes Available because kwok
marks its pods Ready, so these tests check the objects the chart makes, not a running
controller (tests/integration/image/ runs the image's filesystem for that)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.app.install import controller_manifests, crd_manifests
from gitsail.app.install_vault_injector import with_vault_injector
from gitsail.dev.cluster import Cluster
from gitsail.toolchain import find_binary
from tests.integration.helpers import Kube, eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "gitsail"
KUBE = "1.36.0"  # the dev cluster's (helm's own default is older than the chart allows)
HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def helm(
    home: Path, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [str(find_binary("helm")), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} → {proc.returncode}\n{proc.stderr}")
    return proc


def template(home: Path, *sets: str, namespace: str = "argocd") -> list[dict[str, Any]]:
    args = ["template", "gitsail", str(CHART), "-n", namespace, "--kube-version", KUBE]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(home, *args).stdout) if d]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def _without_helm(obj: dict[str, Any]) -> dict[str, Any]:
    """The object less what only Helm adds (its labels, the keep policy on CRDs)."""
    out = copy.deepcopy(obj)

    def strip(meta: dict[str, Any]) -> None:
        labels = meta.get("labels") or {}
        for label in HELM_LABELS:
            labels.pop(label, None)
        annotations = meta.get("annotations") or {}
        annotations.pop("helm.sh/resource-policy", None)
        if "annotations" in meta and not annotations:
            del meta["annotations"]

    strip(out["metadata"])
    template_meta = out.get("spec", {}).get("template", {}).get("metadata")
    if isinstance(template_meta, dict):
        strip(template_meta)
    return out


def test_lint_is_clean(helm_home: Path) -> None:
    out = helm(helm_home, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout


def test_default_values_render_what_gitsail_install_prints(helm_home: Path) -> None:
    rendered = {_key(o): _without_helm(o) for o in template(helm_home)}
    installed = {
        _key(o): o
        for o in [*crd_manifests(), *controller_manifests("argocd")]
        if o["kind"] != "Namespace"  # helm install --create-namespace makes it
    }
    assert sorted(rendered) == sorted(installed)
    for key, obj in installed.items():
        assert rendered[key] == obj, key
    # The CLI prints the same objects (less the Namespace).
    printed = subprocess.run(
        [sys.executable, "-m", "gitsail", "install", "--print"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    from_cli = {_key(o): o for o in yaml.safe_load_all(printed) if o["kind"] != "Namespace"}
    assert from_cli == installed


def test_crds_are_kept_on_uninstall_and_follow_the_families(helm_home: Path) -> None:
    crds = [o for o in template(helm_home) if o["kind"] == "CustomResourceDefinition"]
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    only_argo = template(
        helm_home, "crds.flux=false", "crds.sealedSecrets=false", "crds.externalSecrets=false"
    )
    groups = {o["spec"]["group"] for o in only_argo if o["kind"] == "CustomResourceDefinition"}
    assert groups == {"argoproj.io"}
    none = template(helm_home, "crds.install=false")
    assert not [o for o in none if o["kind"] == "CustomResourceDefinition"]


def test_values_shape_the_controller(helm_home: Path) -> None:
    objs = template(
        helm_home,
        "controller.replicas=3",
        "controller.sealedSecrets=true",
        "controller.externalSecrets=true",
        "controller.leaderElection=false",
        "controller.extraNamespaces={team-a}",
        "image.repository=127.0.0.1:5000/gitsail",
        "image.digest=sha256:" + "a" * 64,
        "metrics.serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
    )
    by_kind = {
        o["kind"]: o
        for o in objs
        if o["kind"] != "CustomResourceDefinition" and o["metadata"]["name"] != "gitsail-server"
    }
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "127.0.0.1:5000/gitsail@sha256:" + "a" * 64
    args = container["args"]
    assert "--sealed-secrets" in args
    assert "--external-secrets" in args
    assert "--no-leader-elect" in args
    assert args[args.index("team-a") - 1] == "--namespace"
    monitor = by_kind["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gitsail-controller"
    }
    assert by_kind["NetworkPolicy"]["spec"]["ingress"][0]["ports"][0]["port"] == "http"


def test_least_privilege_rbac_grants_wildcards_only_per_namespace(helm_home: Path) -> None:
    objs = template(  # clusterAdmin: default off
        helm_home, "rbac.deliverNamespaces={web,db}", "controller.extraNamespaces={team,web}"
    )
    cluster_roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    for name in ("gitsail-controller", "gitsail-server"):
        for rule in cluster_roles[name]["rules"]:
            assert rule.get("resources") != ["*"] or "*" not in rule.get("apiGroups", []), rule
            assert "*" not in rule.get("nonResourceURLs", []), rule
    bindings = {
        o["metadata"]["namespace"]
        for o in objs
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "gitsail-controller-deliver"
    }
    assert bindings == {"argocd", "web", "db", "team"}  # the watched namespaces too
    wildcard_roles = {
        name
        for name, role in cluster_roles.items()
        if any("*" in r.get("apiGroups", []) for r in role["rules"])
    }
    cluster_bound = {o["roleRef"]["name"] for o in objs if o["kind"] == "ClusterRoleBinding"}
    assert wildcard_roles == {"gitsail-controller-deliver"}
    assert not wildcard_roles & cluster_bound
    admin = template(helm_home, "rbac.clusterAdmin=true")
    role = next(o for o in admin if _key(o) == ("ClusterRole", "", "gitsail-controller"))
    assert role["rules"][0] == {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert not [o for o in admin if o["kind"] == "RoleBinding" and "deliver" in str(o)]


# chart values -> the same choice as `controller_manifests` keyword arguments
RBAC_CHOICES = [
    ([], {}),
    (["rbac.clusterAdmin=true"], {"cluster_admin": True}),
    (
        ["rbac.deliverNamespaces={web,db}", "rbac.serverDiff=true"],
        {"deliver_namespaces": ["web", "db"], "server_diff": True},
    ),
    (
        [
            "rbac.deliverClusterWide=true",
            "controller.sealedSecrets=true",
            "controller.externalSecrets=true",
            "controller.vaultInjector=true",
        ],
        {
            "deliver_cluster_wide": True,
            "sealed_secrets": True,
            "external_secrets": True,
            "vault_injector": True,
        },
    ),
]


@pytest.mark.parametrize(("sets", "kwargs"), RBAC_CHOICES)
def test_every_rbac_choice_renders_what_gitsail_install_makes(
    helm_home: Path, sets: list[str], kwargs: dict[str, Any]
) -> None:
    rendered = {_key(o): _without_helm(o) for o in template(helm_home, "crds.install=false", *sets)}
    made = controller_manifests("argocd", **kwargs)
    if kwargs.get("vault_injector"):
        made = with_vault_injector(made, "argocd")
    installed = {_key(o): o for o in made if o["kind"] != "Namespace"}
    assert sorted(rendered) == sorted(installed)
    for key, obj in installed.items():
        assert rendered[key] == obj, key


@pytest.mark.parametrize(
    "bad",
    ["controller.replicas=-1", "image.digest=latest", "rbac.deliverNamespaces={Bad_NS}", "nope=1"],
)
def test_schema_refuses_bad_values(helm_home: Path, bad: str) -> None:
    args = ["template", "gitsail", str(CHART), "--kube-version", KUBE]
    assert helm(helm_home, *args).returncode == 0
    proc = helm(helm_home, *args, "--set", bad, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower() or "values don't meet" in proc.stderr.lower()


def test_install_upgrade_uninstall_in_the_dev_cluster(
    cluster: Cluster, kube: Kube, namespace: str, helm_home: Path
) -> None:
    """CRDs already served in the shared cluster stay out (crds.install=false): the
    templates' CRDs are checked by the tests above."""
    release_ns = namespace
    role = f"gitsail-{release_ns}"
    common = [
        "-n",
        release_ns,
        "--set",
        "crds.install=false",
        "--set",
        f"rbac.clusterRoleName={role}",
        "--set",  # cluster-scoped too: `gitsail install` tests may have made gitsail-server
        f"server.clusterRoleName={role}-server",
    ]
    kc = cluster.kubeconfig
    helm(helm_home, "install", "gitsail", str(CHART), *common, "--wait=false", kubeconfig=kc)
    base = f"/apis/apps/v1/namespaces/{release_ns}/deployments/gitsail-controller"

    def available(replicas: int) -> bool:
        d = kube.get(base)
        if d is None:
            return False
        conditions = {c["type"]: c["status"] for c in d.get("status", {}).get("conditions", [])}
        return (
            conditions.get("Available") == "True"
            and d["status"].get("readyReplicas") == replicas
            and d["status"].get("observedGeneration") == d["metadata"]["generation"]
        )

    eventually(lambda: available(1), timeout=90, what="the controller Deployment Available")
    assert kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}") is not None
    assert kube.get(f"/api/v1/namespaces/{release_ns}/services/gitsail-controller") is not None

    helm(
        helm_home,
        "upgrade",
        "gitsail",
        str(CHART),
        *common,
        "--set",
        "controller.replicas=2",
        kubeconfig=kc,
    )
    eventually(lambda: available(2), timeout=90, what="two replicas after helm upgrade")

    helm(helm_home, "uninstall", "gitsail", "-n", release_ns, "--wait", kubeconfig=kc)
    eventually(lambda: kube.get(base) is None, timeout=60, what="the Deployment gone")
    for path in (
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{role}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}-server",
        f"/apis/apps/v1/namespaces/{release_ns}/deployments/gitsail-server",
        f"/api/v1/namespaces/{release_ns}/services/gitsail-controller",
        f"/api/v1/namespaces/{release_ns}/serviceaccounts/gitsail-controller",
    ):
        assert kube.get(path) is None, path
    secrets = kube.get(f"/api/v1/namespaces/{release_ns}/secrets?labelSelector=owner%3Dhelm")
    assert secrets is not None
    assert secrets["items"] == []


def test_server_component_renders_restricted_with_an_optional_ingress(helm_home: Path) -> None:
    objs = template(helm_home, "server.enabled=true", "server.ingress.enabled=true")
    server = {
        (o["kind"], o["metadata"]["name"]): o for o in objs if "server" in o["metadata"]["name"]
    }
    assert set(server) == {
        ("ServiceAccount", "gitsail-server"),
        ("ClusterRole", "gitsail-server"),
        ("ClusterRoleBinding", "gitsail-server"),
        ("ClusterRole", "gitsail-server-control"),
        ("RoleBinding", "gitsail-server-control"),
        ("Deployment", "gitsail-server"),
        ("Service", "gitsail-server"),
        ("Ingress", "gitsail-server"),
    }
    pod = server[("Deployment", "gitsail-server")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["args"][:4] == ["server", "--in-cluster", "--namespace", "argocd"]
    for rule in server[("ClusterRole", "gitsail-server")]["rules"]:
        assert "secrets" not in rule.get("resources", []), rule
        assert not {"create", "update"} & set(rule["verbs"]) or rule["resources"] == ["events"]
    off = template(helm_home, "server.enabled=false")
    assert not [o for o in off if "server" in o["metadata"]["name"]]
