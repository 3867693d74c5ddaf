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
how many Applications of the namespace deliver to it. ``rm`` removes the registration and,
unless ``--keep-service-account``, what ``add --service-account`` made on the target (only
objects with gitsail's labels: ``gitsail.cli.cluster_accounts``). No command prints a
credential.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import typer

from gitsail.cli.cluster_accounts import (
    ACCOUNT_ANNOTATION,
    CONTEXT_ANNOTATION,
    TokenTimeout,
    create_service_account,
    remove_service_account,
)
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
from gitsail.kube import ConfigError, Kube, KubeConfig, KubeError, load_kubeconfig
from gitsail.model import Obj

app = typer.Typer(help="Clusters gitsail delivers to (Argo CD cluster Secrets): add, list, rm.")

NamespaceOption = typer.Option(
    "argocd", "--namespace", "-n", help="the control namespace (where cluster Secrets live)"
)
ControlKubeconfigOption = typer.Option(
    None, "--control-kubeconfig", help="kubeconfig of the control plane (default: the usual)"
)
ControlContextOption = typer.Option(None, "--control-context", help="control plane context")


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
                try:
                    token = await create_service_account(
                        target, service_account, system_namespace, limited
                    )
                except TokenTimeout as exc:
                    raise fail(str(exc)) from None
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
            if service_account:  # what `cluster rm` removes from the target again
                secret["metadata"]["annotations"] = {
                    ACCOUNT_ANNOTATION: f"{system_namespace}/{service_account}",
                    CONTEXT_ANNOTATION: context,
                }
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
    keep_service_account: bool = typer.Option(
        False,
        "--keep-service-account",
        help="leave what `cluster add --service-account` made on the target; remove only "
        "the registration",
    ),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        envvar="KUBECONFIG",
        help="kubeconfig with an administrator's context of the target (to remove the "
        "ServiceAccount `add` made)",
    ),
    context: str | None = typer.Option(
        None, "--context", help="that context (default: the one the cluster was added from)"
    ),
    namespace: str = NamespaceOption,
    control_kubeconfig: str | None = ControlKubeconfigOption,
    control_context: str | None = ControlContextOption,
) -> None:
    """Remove a cluster's registration (its Secret) and what `cluster add --service-account`
    made on the target (only objects with gitsail's labels), unless --keep-service-account.
    Delivered objects on the cluster stay."""

    async def main() -> list[str]:
        async with Kube(await load_kubeconfig(control_kubeconfig, control_context)) as control:
            lines = []
            for secret in await control.list(
                "v1", "Secret", namespace, label_selector=CLUSTER_SECRETS
            ):
                entry = _entry(secret)
                if entry is None or cluster not in (entry.server, entry.name):
                    continue
                notes = secret["metadata"].get("annotations") or {}
                account = str(notes.get(ACCOUNT_ANNOTATION) or "")
                if account and not keep_service_account:
                    lines += await _remove_account(entry, account, notes)
                await control.delete(
                    "v1", "Secret", secret["metadata"]["name"], namespace, "Background"
                )
                lines.append(f"Cluster '{entry.server}' removed")
            return lines

    if cluster in (IN_CLUSTER, IN_CLUSTER_NAME):
        raise fail("the in-cluster destination is the control plane itself: it cannot be removed")

    async def _remove_account(
        entry: ClusterEntry, account: str, notes: dict[str, Any]
    ) -> list[str]:
        system_namespace, _, name = account.partition("/")
        where = context or str(notes.get(CONTEXT_ANNOTATION) or "")
        path = kubeconfig.split(":")[0] if kubeconfig else None
        try:
            target_config = await load_kubeconfig(path, where or None)
        except ConfigError as exc:
            raise fail(
                f"cannot reach cluster {entry.name!r} to remove ServiceAccount {account}: {exc}; "
                "give its context with --context, or --keep-service-account to leave it"
            ) from None
        if target_config.server.rstrip("/") != entry.server:
            raise fail(
                f"context {where or '(current)'!r} is {target_config.server}, not cluster "
                f"{entry.name!r} ({entry.server}): nothing removed; give the right --context, "
                "or --keep-service-account"
            )
        async with Kube(target_config) as target:
            removed = await remove_service_account(target, name, system_namespace)
        return [f"deleted {what} on {entry.name}" for what in removed.deleted] + [
            f"kept {what} on {entry.name} ({why})" for what, why in removed.kept
        ]

    try:
        lines = asyncio.run(main())
    except (KubeError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if not lines:
        raise fail(f"no cluster named or at {cluster!r} is registered in {namespace}")
    for line in lines:
        typer.echo(line)
