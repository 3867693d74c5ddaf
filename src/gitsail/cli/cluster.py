"""`gitsail cluster`: register other clusters as Argo CD cluster Secrets — add, list, rm.

As ``argocd cluster add|list|rm``. ``add CONTEXT`` reads the context from a kubeconfig
(``--kubeconfig``) and writes an Argo CD cluster Secret into the control plane's
namespace (``-n``, default ``argocd``; the control plane is ``--control-kubeconfig`` /
``--control-context``, default the usual kubeconfig's current context). By default the
Secret carries the context's own credentials (bearer token, client certificate, basic
auth or exec plugin), read from files where the kubeconfig names files. With
``--service-account NAME`` it creates, on the target, a ServiceAccount in
``--system-namespace`` (default ``kube-system``), a token Secret for it and the ClusterRole
``gitsail-manager-role``, bound cluster-wide — or, with ``--namespaces``, only in those
namespaces (RoleBindings: the least privilege, and the cluster Secret then lists them) —
and stores that ServiceAccount's token instead.

``list`` shows every registered cluster with the connection status the controller records
on its Secret (``status.gitsail.io/*`` annotations: state, server version, last error) and
how many Applications of the namespace deliver to it. No command prints a credential.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import typer

from gitsail.cli.output import Format, OutputOption, emit, fail
from gitsail.kinds.argo_cluster import (
    CLUSTER_SECRETS,
    IN_CLUSTER,
    IN_CLUSTER_NAME,
    STATUS_PREFIX,
    ClusterConfigError,
    ClusterEntry,
    check_server_url,
    cluster_secret,
    read_cluster_secret,
)
from gitsail.kube import ConfigError, Kube, KubeConfig, KubeError, check_names, load_kubeconfig
from gitsail.model import Obj

app = typer.Typer(help="Clusters gitsail delivers to (Argo CD cluster Secrets): add, list, rm.")

NamespaceOption = typer.Option(
    "argocd", "--namespace", "-n", help="the control namespace (where cluster Secrets live)"
)
ControlKubeconfigOption = typer.Option(
    None, "--control-kubeconfig", help="kubeconfig of the control plane (default: the usual)"
)
ControlContextOption = typer.Option(None, "--control-context", help="control plane context")
MANAGER_ROLE = "gitsail-manager-role"
TOKEN_WAIT = 30.0


def _secret_name(name: str, server: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-") or "cluster"
    return f"cluster-{slug}-{hashlib.sha256(server.encode()).hexdigest()[:8]}"


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data else None


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def argo_config(config: KubeConfig, token: str | None = None) -> dict[str, Any]:
    """The ``config`` JSON of a cluster Secret for ``config`` (``token`` replaces its
    credentials: a ServiceAccount's)."""
    tls: dict[str, Any] = {}
    if config.insecure_skip_tls_verify:
        tls["insecure"] = True
    elif config.ca_data:
        tls["caData"] = _b64(config.ca_data)
    if config.tls_server_name:
        tls["serverName"] = config.tls_server_name
    out: dict[str, Any] = {}
    if token is not None:
        out["bearerToken"] = token
    elif config.exec is not None:
        out["execProviderConfig"] = {
            "command": config.exec.command,
            "args": list(config.exec.args),
            "env": dict(config.exec.env),
            "apiVersion": config.exec.api_version,
            "installHint": config.exec.install_hint,
        }
    elif config.token or config.token_file:
        out["bearerToken"] = config.token or (_read(config.token_file) or b"").decode().strip()
    elif config.username is not None:
        out["username"] = config.username
        out["password"] = config.password or ""
    elif config.client_cert_data or config.client_cert_file:
        tls["certData"] = _b64(config.client_cert_data or _read(config.client_cert_file))
        tls["keyData"] = _b64(config.client_key_data or _read(config.client_key_file))
    out["tlsClientConfig"] = tls
    return out


async def _service_account_token(
    target: Kube, account: str, system_namespace: str, namespaces: tuple[str, ...]
) -> str:
    """Create the ServiceAccount, its token Secret, the manager ClusterRole and its
    bindings on the target (idempotent, server-side apply); return the token."""
    check_names("", "ServiceAccount", account, system_namespace)
    manager = "gitsail-cluster-add"
    await target.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": system_namespace},
        },
        field_manager=manager,
    )
    token_secret = f"{account}-token"
    await target.apply(
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
        field_manager=manager,
    )
    await target.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": MANAGER_ROLE},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
        field_manager=manager,
    )
    subject = {"kind": "ServiceAccount", "name": account, "namespace": system_namespace}
    role_ref = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": MANAGER_ROLE,
    }
    if namespaces:
        for namespace in namespaces:
            await target.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"{MANAGER_ROLE}-{account}", "namespace": namespace},
                    "roleRef": role_ref,
                    "subjects": [subject],
                },
                field_manager=manager,
            )
    else:
        await target.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{MANAGER_ROLE}-{system_namespace}-{account}"},
                "roleRef": role_ref,
                "subjects": [subject],
            },
            field_manager=manager,
        )
    deadline = time.monotonic() + TOKEN_WAIT
    while True:  # the token controller fills it in
        secret = await target.get("v1", "Secret", token_secret, system_namespace)
        token = ((secret or {}).get("data") or {}).get("token")
        if token:
            return base64.b64decode(token).decode()
        if time.monotonic() > deadline:
            raise fail(
                f"the token Secret {system_namespace}/{token_secret} got no token within "
                f"{TOKEN_WAIT:g}s (is kube-controller-manager's token controller running?)"
            )
        await asyncio.sleep(0.5)


@app.command("add")
def add(
    context: str = typer.Argument(..., help="the target's context in --kubeconfig"),
    name: str | None = typer.Option(None, "--name", help="cluster name (default: CONTEXT)"),
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig holding CONTEXT"
    ),
    service_account: str | None = typer.Option(
        None,
        "--service-account",
        help="create this ServiceAccount on the target and store its token (least privilege "
        "with --namespaces)",
    ),
    system_namespace: str = typer.Option(
        "kube-system", "--system-namespace", help="namespace of --service-account"
    ),
    namespaces: str = typer.Option(
        "", "--namespaces", help="comma-separated namespaces the cluster is limited to"
    ),
    cluster_resources: bool = typer.Option(
        False, "--cluster-resources", help="with --namespaces, still allow cluster-scoped kinds"
    ),
    upsert: bool = typer.Option(False, "--upsert", help="replace an existing registration"),
    namespace: str = NamespaceOption,
    control_kubeconfig: str | None = ControlKubeconfigOption,
    control_context: str | None = ControlContextOption,
) -> None:
    """Register the cluster of a kubeconfig context (an Argo CD cluster Secret)."""
    limited = tuple(n.strip() for n in namespaces.split(",") if n.strip())

    async def main() -> str:
        path = kubeconfig.split(":")[0] if kubeconfig else None
        target_config = await load_kubeconfig(path, context)
        server = check_server_url(target_config.server, what=f"context {context!r}")
        cluster_name = name or context
        token = None
        if service_account:
            async with Kube(target_config) as target:
                token = await _service_account_token(
                    target, service_account, system_namespace, limited
                )
        config = argo_config(target_config, token)
        async with Kube(await load_kubeconfig(control_kubeconfig, control_context)) as control:
            registered = await control.list(
                "v1", "Secret", namespace, label_selector=CLUSTER_SECRETS
            )
            existing = [s for s in registered if getattr(_entry(s), "server", None) == server]
            secret = cluster_secret(
                cluster_name,
                server,
                config,
                secret_name=_secret_name(cluster_name, server),
                namespace=namespace,
                namespaces=limited,
                cluster_resources=cluster_resources,
            )
            if existing and not upsert:
                raise fail(
                    f"cluster {server} is already registered (Secret "
                    f"{namespace}/{existing[0]['metadata']['name']}); use --upsert to replace it"
                )
            for old in existing:
                if old["metadata"]["name"] != secret["metadata"]["name"]:
                    await control.delete("v1", "Secret", old["metadata"]["name"], namespace)
            await control.apply(secret, field_manager="gitsail-cluster-add", force=True)
        return f"Cluster '{server}' added as '{cluster_name}'"

    try:
        message = asyncio.run(main())
    except (KubeError, ConfigError, ClusterConfigError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(message)


def _entry(secret: Obj) -> ClusterEntry | None:
    try:
        return read_cluster_secret(secret)
    except ClusterConfigError:
        return None


def _rows(secrets: list[Obj], apps: list[Obj]) -> list[dict[str, Any]]:
    def uses(app: Obj, server: str, cluster: str) -> bool:
        dest = (app.get("spec") or {}).get("destination") or {}
        return (dest.get("server") or "").rstrip("/") == server or (
            not dest.get("server") and dest.get("name") == cluster
        )

    rows = []
    for secret in sorted(secrets, key=lambda s: str(s["metadata"]["name"])):
        annotations = secret["metadata"].get("annotations") or {}
        entry = _entry(secret)
        if entry is None:
            rows.append(
                {
                    "server": "",
                    "name": secret["metadata"]["name"],
                    "version": "",
                    "status": "Invalid",
                    "message": "the Secret is not a usable cluster Secret",
                    "apps": 0,
                }
            )
            continue
        rows.append(
            {
                "server": entry.server,
                "name": entry.name,
                "version": annotations.get(STATUS_PREFIX + "server-version", ""),
                "status": annotations.get(STATUS_PREFIX + "connection-state", "Unknown"),
                "message": annotations.get(STATUS_PREFIX + "connection-message", ""),
                "apps": sum(1 for a in apps if uses(a, entry.server, entry.name)),
                "namespaces": ",".join(entry.namespaces),
                "secret": secret["metadata"]["name"],
            }
        )
    if not any(r["server"] == IN_CLUSTER for r in rows):
        rows.insert(
            0,
            {
                "server": IN_CLUSTER,
                "name": IN_CLUSTER_NAME,
                "version": "",
                "status": "Successful",  # the control plane itself: it answered this list
                "message": "",
                "apps": sum(1 for a in apps if uses(a, IN_CLUSTER, IN_CLUSTER_NAME)),
                "namespaces": "",
                "secret": "",
            },
        )
    return rows


@app.command("list")
def list_clusters(
    output: Format = OutputOption,
    namespace: str = NamespaceOption,
    control_kubeconfig: str | None = ControlKubeconfigOption,
    control_context: str | None = ControlContextOption,
) -> None:
    """List registered clusters: server, name, version, connection status, apps."""

    async def main() -> list[dict[str, Any]]:
        async with Kube(await load_kubeconfig(control_kubeconfig, control_context)) as control:
            secrets = await control.list("v1", "Secret", namespace, label_selector=CLUSTER_SECRETS)
            try:
                apps = await control.list("argoproj.io/v1alpha1", "Application", namespace)
            except KubeError:
                apps = []  # no Application CRD: no apps
            version = await control.server_version()
        rows = _rows(secrets, apps)
        for row in rows:
            if row["server"] == IN_CLUSTER and not row["version"]:
                row["version"] = str(version.get("gitVersion") or "")
        return rows

    try:
        rows = asyncio.run(main())
    except (KubeError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if output is Format.table:
        emit(
            [
                {k: r[k] for k in ("server", "name", "version", "status", "message", "apps")}
                for r in rows
            ],
            output,
        )
    else:
        emit(rows, output)


@app.command("rm")
def remove(
    cluster: str = typer.Argument(..., help="server URL or name of the cluster"),
    namespace: str = NamespaceOption,
    control_kubeconfig: str | None = ControlKubeconfigOption,
    control_context: str | None = ControlContextOption,
) -> None:
    """Remove a cluster's registration (its Secret). Objects on the cluster stay."""

    async def main() -> list[str]:
        async with Kube(await load_kubeconfig(control_kubeconfig, control_context)) as control:
            removed = []
            for secret in await control.list(
                "v1", "Secret", namespace, label_selector=CLUSTER_SECRETS
            ):
                entry = _entry(secret)
                if entry is not None and cluster in (entry.server, entry.name):
                    await control.delete("v1", "Secret", secret["metadata"]["name"], namespace)
                    removed.append(entry.server)
            return removed

    if cluster in (IN_CLUSTER, IN_CLUSTER_NAME):
        raise fail("the in-cluster destination is the control plane itself: it cannot be removed")
    try:
        removed = asyncio.run(main())
    except (KubeError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if not removed:
        raise fail(f"no cluster named or at {cluster!r} is registered in {namespace}")
    for server in removed:
        typer.echo(f"Cluster '{server}' removed")
