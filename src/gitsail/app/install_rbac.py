"""The RBAC objects of `gitsail install` and charts/gitsail, least privilege by default.

Each enabled component gets its own ServiceAccount and roles (docs/install.md, "What each
RBAC choice allows"):

- **controller**: gitsail's own kinds everywhere; namespaces and CRDs read; events written;
  discovery. Full access (``<name>-deliver``, bound by a RoleBinding) only in its control
  namespace and in each *delivery namespace*. ``deliver_cluster_wide`` binds the built-in
  namespaced kinds (:data:`NAMESPACED_BUILTINS`) cluster-wide instead; ``cluster_admin``
  replaces all of it by every verb on every resource (the opt-in, Argo CD's default).
- **sealed-secrets** (``<name>-sealed-secrets``): Secrets CRUD cluster-wide, as Bitnami's
  controller has (it unseals into any namespace and keeps its keys in ``kube-system``).
- **external-secrets** (``<name>-external-secrets``): Secrets CRUD cluster-wide (targets of
  ExternalSecrets in any namespace), ServiceAccounts read and their TokenRequests.
- **vault injector** (``<name>-vault-injector``): its own MutatingWebhookConfiguration.
- **server**: read gitsail's kinds and the built-in kinds it shows (no Secret), patch and
  delete Applications (operation, finalizers), request reconciles of the Flux kinds, write
  Events; Secrets only in its control namespace (``argocd-secret``, the admin's first
  password, repository credentials its diffs use). ``server_diff`` lets its live diffs read
  and dry-run every kind of the delivery namespaces (Secrets there too).

The chart renders the same objects for the same choices (tests/integration/chart/ compares
them); the names of cluster-scoped objects derive from ``role_name``/``server_role_name``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gitsail.model import Obj

__all__ = [
    "NAMESPACED_BUILTINS",
    "OWN_GROUPS",
    "controller_rbac",
    "server_rbac",
    "validate_namespaces",
]

RBAC = "rbac.authorization.k8s.io"
RBAC_V1 = f"{RBAC}/v1"

# The API groups of the kinds gitsail serves (CRDs of gitsail/app/crds, gitsail/kinds/crds).
OWN_GROUPS = (
    "argoproj.io",
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
    "notification.toolkit.fluxcd.io",
    "image.toolkit.fluxcd.io",
    "bitnami.com",
    "external-secrets.io",
    "generators.external-secrets.io",
)

# Built-in kinds that are namespaced, by group: what ``deliver_cluster_wide`` grants in
# every namespace. A group listed with "*" has namespaced kinds only; the core group is
# listed kind by kind because it also holds nodes, namespaces and persistent volumes.
NAMESPACED_BUILTINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "",
        (
            "configmaps",
            "endpoints",
            "events",
            "limitranges",
            "persistentvolumeclaims",
            "pods",
            "podtemplates",
            "replicationcontrollers",
            "resourcequotas",
            "secrets",
            "serviceaccounts",
            "services",
        ),
    ),
    ("apps", ("*",)),
    ("batch", ("*",)),
    ("autoscaling", ("*",)),
    ("policy", ("poddisruptionbudgets",)),
    ("networking.k8s.io", ("ingresses", "networkpolicies")),
    ("discovery.k8s.io", ("*",)),
    ("coordination.k8s.io", ("*",)),
    (RBAC, ("roles", "rolebindings")),
)

# What the server shows and reads cluster-wide: the built-in namespaced kinds less Secrets
# (and less RBAC objects), pods' logs, namespaces and CRDs.
_SERVER_READ: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "",
        (
            "configmaps",
            "endpoints",
            "events",
            "limitranges",
            "namespaces",
            "persistentvolumeclaims",
            "pods",
            "pods/log",
            "replicationcontrollers",
            "resourcequotas",
            "serviceaccounts",
            "services",
        ),
    ),
    ("apps", ("*",)),
    ("batch", ("*",)),
    ("autoscaling", ("*",)),
    ("policy", ("poddisruptionbudgets",)),
    ("networking.k8s.io", ("ingresses", "networkpolicies")),
    ("discovery.k8s.io", ("*",)),
    ("apiextensions.k8s.io", ("customresourcedefinitions",)),
)

READ = ["get", "list", "watch"]
CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]
DISCOVERY = ["/api", "/api/*", "/apis", "/apis/*", "/version"]
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_namespaces(namespaces: Sequence[str]) -> list[str]:
    """The namespaces, each a DNS-1123 label (a RoleBinding's namespace), without repeats."""
    out: list[str] = []
    for ns in namespaces:
        if len(ns) > 63 or not _NAMESPACE.match(ns):
            raise ValueError(f"not a namespace name: {ns!r} (a DNS-1123 label)")
        if ns not in out:
            out.append(ns)
    return out


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "gitsail"}


def _cluster_role(name: str, component: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": _labels(component)},
        "rules": rules,
    }


def _subject(service_account: str, namespace: str) -> list[Obj]:
    return [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]


def _cluster_binding(name: str, component: str, role: str, namespace: str) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": _labels(component)},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": _subject(component, namespace),
    }


def _role_binding(name: str, component: str, role: str, at: str, namespace: str) -> Obj:
    """A RoleBinding in ``at`` of the ClusterRole ``role`` to ``component``'s account."""
    return {
        "apiVersion": RBAC_V1,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": at, "labels": _labels(component)},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": _subject(component, namespace),
    }


def _rules(groups: Sequence[tuple[str, tuple[str, ...]]], verbs: list[str]) -> list[Obj]:
    return [{"apiGroups": [g], "resources": list(r), "verbs": list(verbs)} for g, r in groups]


def controller_rbac(
    namespace: str,
    *,
    cluster_admin: bool = False,
    deliver_namespaces: Sequence[str] = (),
    deliver_cluster_wide: bool = False,
    sealed_secrets: bool = False,
    external_secrets: bool = False,
    vault_injector: str = "",
    role_name: str = "gitsail-controller",
) -> list[Obj]:
    """The controller's ServiceAccount, roles and bindings (``vault_injector``: the name of
    the injector's MutatingWebhookConfiguration when it is on)."""
    component = "gitsail-controller"
    account: Obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": component, "namespace": namespace, "labels": _labels(component)},
    }
    if cluster_admin:
        everything: list[Obj] = [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]
        return [
            account,
            _cluster_role(role_name, component, everything),
            _cluster_binding(role_name, component, role_name, namespace),
        ]
    main: list[Obj] = [
        {"apiGroups": list(OWN_GROUPS), "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": list(READ)},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": list(READ),
        },
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"nonResourceURLs": list(DISCOVERY), "verbs": ["get"]},
    ]
    deliver = f"{role_name}-deliver"
    objs = [
        account,
        _cluster_role(role_name, component, main),
        _cluster_binding(role_name, component, role_name, namespace),
        _cluster_role(
            deliver, component, [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
        ),
    ]
    for at in validate_namespaces([namespace, *deliver_namespaces]):
        objs.append(_role_binding(f"{component}-deliver", component, deliver, at, namespace))
    if deliver_cluster_wide:
        wide = f"{role_name}-deliver-cluster-wide"
        objs += [
            _cluster_role(wide, component, _rules(NAMESPACED_BUILTINS, ["*"])),
            _cluster_binding(wide, component, wide, namespace),
        ]
    components: list[tuple[str, list[Obj]]] = []
    if sealed_secrets:
        secrets = [{"apiGroups": [""], "resources": ["secrets"], "verbs": list(CRUD)}]
        components.append(("sealed-secrets", secrets))
    if external_secrets:
        eso = [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": list(CRUD)},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": list(READ)},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        ]
        components.append(("external-secrets", eso))
    if vault_injector:
        webhooks = ["mutatingwebhookconfigurations"]
        group = ["admissionregistration.k8s.io"]
        injector = [
            # create cannot be narrowed to a name (RBAC has none before the object exists)
            {"apiGroups": group, "resources": webhooks, "verbs": ["create"]},
            {
                "apiGroups": group,
                "resources": webhooks,
                "resourceNames": [vault_injector],
                "verbs": ["get", "update", "patch", "delete"],
            },
        ]
        components.append(("vault-injector", injector))
    for suffix, rules in components:
        name = f"{role_name}-{suffix}"
        objs += [
            _cluster_role(name, component, rules),
            _cluster_binding(name, component, name, namespace),
        ]
    return objs


def server_rbac(
    namespace: str,
    *,
    deliver_namespaces: Sequence[str] = (),
    server_diff: bool = False,
    role_name: str = "gitsail-server",
) -> list[Obj]:
    """The server's ServiceAccount, roles and bindings."""
    component = "gitsail-server"
    cluster_rules: list[Obj] = [
        {"apiGroups": list(OWN_GROUPS), "resources": ["*"], "verbs": list(READ)},
        # the operation field, finalizers and refresh annotations; deleting an app
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications", "applicationsets"],
            "verbs": ["patch", "delete"],
        },
        # project role tokens (spec.roles[].jwtTokens, status.jwtTokensByRole)
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["appprojects", "appprojects/status"],
            "verbs": ["patch"],
        },
        # reconcile/suspend/resume requests of the Flux kinds
        {"apiGroups": list(OWN_GROUPS[1:6]), "resources": ["*"], "verbs": ["patch"]},
        *_rules(_SERVER_READ, READ),
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        {"nonResourceURLs": list(DISCOVERY), "verbs": ["get"]},
    ]
    own_secrets: list[Obj] = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": [*READ, "create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["argocd-secret", "argocd-initial-admin-secret"],
            "verbs": ["update", "patch"],
        },
    ]
    secrets_role = f"{role_name}-control"
    objs: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": component, "namespace": namespace, "labels": _labels(component)},
        },
        _cluster_role(role_name, component, cluster_rules),
        _cluster_binding(role_name, component, role_name, namespace),
        _cluster_role(secrets_role, component, own_secrets),
        _role_binding(f"{component}-control", component, secrets_role, namespace, namespace),
    ]
    if server_diff:
        diff = f"{role_name}-diff"
        objs.append(
            _cluster_role(
                diff,
                component,
                [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "patch"]}],
            )
        )
        for at in validate_namespaces([namespace, *deliver_namespaces]):
            objs.append(_role_binding(f"{component}-diff", component, diff, at, namespace))
    return objs
