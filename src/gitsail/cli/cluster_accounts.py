"""What ``gitsail cluster add --service-account`` makes on a target, and how ``cluster rm``
takes it away again — only what gitsail made.

``add`` creates (server-side apply, field manager ``gitsail-cluster-add``) a ServiceAccount,
its token Secret, the ClusterRole ``gitsail-manager-role`` and a ClusterRoleBinding (or one
RoleBinding per ``--namespaces`` entry). Each object it **creates** carries the labels
``app.kubernetes.io/managed-by: gitsail`` and ``gitsail.io/cluster-add: <digest of the
account's namespace/name>``; an object that already existed without them is used as it is
and never labelled (so never deleted later). The cluster Secret on the control plane
records the account (annotation ``gitsail.io/service-account: <namespace>/<name>``) and the
kubeconfig context it was added from (``gitsail.io/added-from-context``).

``rm`` (unless ``--keep-service-account``) reaches the target with an administrator's
kubeconfig context — the one recorded, or ``--context`` — after checking that the context
points at the registered server, then deletes the bindings and token Secret found by the
account's label, the ServiceAccount when labelled, and the ClusterRole when labelled and no
binding anywhere still refers to it (another registration may share it). Anything without
gitsail's labels stays. The registration is removed only after that succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass, field

from gitsail.kube import Kube, check_names
from gitsail.model import Obj

__all__ = [
    "ACCOUNT_ANNOTATION",
    "CONTEXT_ANNOTATION",
    "MANAGER_ROLE",
    "Removed",
    "account_mark",
    "create_service_account",
    "remove_service_account",
]

MANAGER_ROLE = "gitsail-manager-role"
FIELD_MANAGER = "gitsail-cluster-add"
MANAGED_BY = "app.kubernetes.io/managed-by"
ADD_LABEL = "gitsail.io/cluster-add"
ACCOUNT_ANNOTATION = "gitsail.io/service-account"
CONTEXT_ANNOTATION = "gitsail.io/added-from-context"
RBAC = "rbac.authorization.k8s.io/v1"
TOKEN_WAIT = 30.0


class TokenTimeout(Exception):
    """The token controller did not fill the token Secret in time."""


def account_mark(namespace: str, account: str) -> str:
    """The ``gitsail.io/cluster-add`` label value of one account (a label value is at most
    63 characters; a ServiceAccount name may be longer)."""
    return hashlib.sha256(f"{namespace}/{account}".encode()).hexdigest()[:16]


def _labels(mark: str) -> dict[str, str]:
    return {MANAGED_BY: "gitsail", ADD_LABEL: mark}


def _ours(obj: Obj | None, mark: str | None = None) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY) == "gitsail" and (mark is None or labels.get(ADD_LABEL) == mark)


async def _apply(target: Kube, obj: Obj, mark: str) -> None:
    """Apply ``obj``, labelled as gitsail's when it is new or already gitsail's; an object
    someone else made is used as it is (not labelled: ``rm`` will not delete it)."""
    meta = obj["metadata"]
    live = await target.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if live is None or _ours(live):
        meta["labels"] = _labels(mark) if obj["kind"] != "ClusterRole" else _labels("shared")
    await target.apply(obj, field_manager=FIELD_MANAGER)


async def create_service_account(
    target: Kube, account: str, system_namespace: str, namespaces: tuple[str, ...]
) -> str:
    """Create the ServiceAccount, its token Secret, the manager ClusterRole and its
    bindings on the target (idempotent); return the token."""
    check_names("", "ServiceAccount", account, system_namespace)
    for namespace in namespaces:
        check_names(RBAC.split("/")[0], "RoleBinding", f"{MANAGER_ROLE}-{account}", namespace)
    mark = account_mark(system_namespace, account)
    sa_meta = {"name": account, "namespace": system_namespace}
    await _apply(target, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": sa_meta}, mark)
    token_secret = f"{account}-token"
    await _apply(
        target,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": token_secret,
                "namespace": system_namespace,
                "annotations": {"kubernetes.io/service-account.name": account},
            },
        },
        mark,
    )
    await _apply(
        target,
        {
            "apiVersion": RBAC,
            "kind": "ClusterRole",
            "metadata": {"name": MANAGER_ROLE},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
        mark,
    )
    subject = {"kind": "ServiceAccount", "name": account, "namespace": system_namespace}
    role_ref = {"apiGroup": RBAC.split("/")[0], "kind": "ClusterRole", "name": MANAGER_ROLE}
    if namespaces:
        for namespace in namespaces:
            await _apply(
                target,
                {
                    "apiVersion": RBAC,
                    "kind": "RoleBinding",
                    "metadata": {"name": f"{MANAGER_ROLE}-{account}", "namespace": namespace},
                    "roleRef": role_ref,
                    "subjects": [subject],
                },
                mark,
            )
    else:
        await _apply(
            target,
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{MANAGER_ROLE}-{system_namespace}-{account}"},
                "roleRef": role_ref,
                "subjects": [subject],
            },
            mark,
        )
    deadline = time.monotonic() + TOKEN_WAIT
    while True:  # the token controller fills it in
        secret = await target.get("v1", "Secret", token_secret, system_namespace)
        token = ((secret or {}).get("data") or {}).get("token")
        if token:
            return base64.b64decode(token).decode()
        if time.monotonic() > deadline:
            raise TokenTimeout(
                f"the token Secret {system_namespace}/{token_secret} got no token within "
                f"{TOKEN_WAIT:g}s (is kube-controller-manager's token controller running?)"
            )
        await asyncio.sleep(0.5)


@dataclass
class Removed:
    """What ``remove_service_account`` deleted and what it left (not gitsail's, or still
    used), as ``Kind namespace/name`` strings."""

    deleted: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def _shown(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


async def remove_service_account(target: Kube, account: str, system_namespace: str) -> Removed:
    """Delete what ``create_service_account`` made for this account on ``target`` (see the
    module docstring): only objects with gitsail's labels."""
    check_names("", "ServiceAccount", account, system_namespace)
    mark = account_mark(system_namespace, account)
    selector = f"{MANAGED_BY}=gitsail,{ADD_LABEL}={mark}"
    out = Removed()
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in await target.list(RBAC, kind, None, label_selector=selector):
            meta = binding["metadata"]
            await target.delete(RBAC, kind, meta["name"], meta.get("namespace"), "Background")
            out.deleted.append(_shown(binding))
    for kind, name in (("Secret", f"{account}-token"), ("ServiceAccount", account)):
        live = await target.get("v1", kind, name, system_namespace)
        if live is None:
            continue
        if _ours(live, mark):
            await target.delete("v1", kind, name, system_namespace, "Background")
            out.deleted.append(_shown(live))
        else:
            out.kept.append((_shown(live), "not made by gitsail"))
    role = await target.get(RBAC, "ClusterRole", MANAGER_ROLE)
    if role is not None:
        users = [
            b
            for kind in ("ClusterRoleBinding", "RoleBinding")
            for b in await target.list(RBAC, kind, None)
            if (b.get("roleRef") or {}).get("kind") == "ClusterRole"
            and (b.get("roleRef") or {}).get("name") == MANAGER_ROLE
        ]
        if not _ours(role):
            out.kept.append((_shown(role), "not made by gitsail"))
        elif users:
            out.kept.append((_shown(role), f"still bound by {_shown(users[0])}"))
        else:
            await target.delete(RBAC, "ClusterRole", MANAGER_ROLE, None, "Background")
            out.deleted.append(_shown(role))
    return out
