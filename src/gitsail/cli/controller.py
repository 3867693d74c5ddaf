"""`gitsail controller`: run the application controller (outside or inside the cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import typer

from gitsail.cli.output import fail
from gitsail.controller.kube_metrics import KUBE_BURST, KUBE_QPS, kube_flow
from gitsail.controller.manager import Controller, ControllerOptions
from gitsail.controller.server import make_server
from gitsail.controller.stacks import task_stacks
from gitsail.diff import jqpath
from gitsail.kinds._fields import go_duration
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.policy import Policy, PolicyError
from gitsail.secrets.vault_agent import DEFAULT_IMAGE as VAULT_AGENT_IMAGE

if TYPE_CHECKING:
    from gitsail.controller.sealedsecrets import SealedSecretsOptions


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def controller(
    namespace: list[str] = typer.Option(
        ["argocd"],
        "--namespace",
        "-n",
        help="namespaces whose Applications (and Flux objects) to reconcile "
        "(the first is the control namespace: settings, secrets, lease)",
    ),
    flux: bool = typer.Option(
        True,
        "--flux/--no-flux",
        help="also reconcile the Flux kinds (GitRepository, OCIRepository, HelmRepository, "
        "HelmChart, Kustomization, HelmRelease, Receiver)",
    ),
    sealed_secrets: bool = typer.Option(
        False,
        "--sealed-secrets/--no-sealed-secrets",
        help="also unseal Bitnami SealedSecrets and serve /v1/cert.pem (docs/secrets.md)",
    ),
    external_secrets: bool = typer.Option(
        False,
        "--external-secrets/--no-external-secrets",
        help="also reconcile External Secrets (ExternalSecret, SecretStore, "
        "ClusterSecretStore, ClusterExternalSecret; docs/external-secrets.md)",
    ),
    store_qps: float = typer.Option(
        10.0, "--external-secrets-store-qps", help="calls per second to one secret store"
    ),
    key_namespace: str = typer.Option(
        "kube-system", "--sealed-secrets-key-namespace", help="namespace of the sealing keys"
    ),
    key_prefix: str = typer.Option(
        "sealed-secrets-key", "--key-prefix", help="name prefix of the sealing key Secrets"
    ),
    key_renew_period: str = typer.Option(
        "720h", "--key-renew-period", help="Go duration between new sealing keys; 0 disables"
    ),
    key_cutoff_time: str | None = typer.Option(
        None,
        "--key-cutoff-time",
        help="make a new sealing key if the newest is older than this (RFC 1123, numeric zone)",
    ),
    rate_limit: float = typer.Option(
        2.0, "--rate-limit", help="/v1/verify and /v1/rotate requests per second"
    ),
    rate_limit_burst: int = typer.Option(
        2, "--rate-limit-burst", help="/v1/verify and /v1/rotate requests above the rate"
    ),
    artifacts_dir: str | None = typer.Option(
        None, "--artifacts-dir", help="where Flux source artifacts are stored"
    ),
    artifacts_url: str | None = typer.Option(
        None,
        "--artifacts-url",
        help="base URL of this controller's artifacts, as written in GitRepository status "
        "(default: http://gitsail-controller.<namespace>.svc.cluster.local.)",
    ),
    listen: str = typer.Option(
        "127.0.0.1:8080", "--listen", help="HOST:PORT for /healthz, /metrics and /api/webhook"
    ),
    vault_injector: bool = typer.Option(
        False,
        "--vault-injector/--no-vault-injector",
        help="also serve the Vault Agent injector webhook over TLS (docs/vault-injector.md)",
    ),
    vault_injector_listen: str = typer.Option(
        "127.0.0.1:8443", "--vault-injector-listen", help="HOST:PORT of the injector's HTTPS"
    ),
    vault_injector_service: str | None = typer.Option(
        None,
        "--vault-injector-service",
        help="NAMESPACE/NAME:PORT of the Service the apiserver calls (in-cluster); "
        "default: https://HOST:PORT of --vault-injector-listen",
    ),
    vault_injector_namespace_selector: str | None = typer.Option(
        None,
        "--vault-injector-namespace-selector",
        help="k=v,... labels of the namespaces whose pods are sent to the injector "
        "(default: all but kube-system, kube-public, kube-node-lease and the control namespace)",
    ),
    vault_injector_name: str = typer.Option(
        "gitsail-vault-agent-injector",
        "--vault-injector-name",
        help="name of the MutatingWebhookConfiguration",
    ),
    vault_injector_tls_secret: str | None = typer.Option(
        None,
        "--vault-injector-tls-secret",
        help="Secret of the control namespace that shares the webhook's CA and certificate "
        "between replicas (default: NAME-tls with --vault-injector-service, else none)",
    ),
    vault_address: str = typer.Option(
        "https://vault.vault.svc:8200",
        "--vault-address",
        envvar="AGENT_INJECT_VAULT_ADDR",
        help="Vault address written into injected agents (annotation service overrides)",
    ),
    vault_agent_image: str = typer.Option(
        VAULT_AGENT_IMAGE,
        "--vault-agent-image",
        envvar="AGENT_INJECT_VAULT_IMAGE",
        help="agent image of injected pods (annotation agent-image overrides)",
    ),
    concurrency: int = typer.Option(10, "--concurrency", help="apps reconciled in parallel"),
    kube_qps: float = typer.Option(
        KUBE_QPS,
        "--kube-qps",
        envvar="GITSAIL_KUBE_QPS",
        help="apiserver requests per second, client side (0: no limit); health checks and "
        "self-heal are served before first syncs when the budget is short",
    ),
    kube_burst: int = typer.Option(
        KUBE_BURST,
        "--kube-burst",
        envvar="GITSAIL_KUBE_BURST",
        help="requests above --kube-qps in a burst",
    ),
    leader_elect: bool = typer.Option(True, "--leader-elect/--no-leader-elect"),
    shards: int = typer.Option(
        1,
        "--shards",
        envvar="GITSAIL_CONTROLLER_SHARDS",
        help="replicas sharing the apps (each reconciles the apps whose FNV-1a hash of "
        "namespace/name mod N is its --shard)",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        envvar="GITSAIL_CONTROLLER_SHARD",
        help="this replica's shard, 0..N-1 (default: the ordinal of a StatefulSet pod's "
        "hostname), or auto: claim free shard Leases (gitsail-controller-shard-<i>)",
    ),
    resync: float | None = typer.Option(
        None,
        "--resync",
        help="seconds between polls (default: argocd-cm timeout.reconciliation, 120)",
    ),
    jitter: float | None = typer.Option(None, "--jitter", help="max extra seconds per poll"),
    status_heartbeat: float = typer.Option(
        0.0,
        "--status-heartbeat",
        min=0.0,
        help="seconds after which an unchanged Application status is written again "
        "(reconciledAt moves); 0: only when it changes or a refresh is asked for",
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
    log_format: str = typer.Option("text", "--log-format", help="text or json"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Reconcile Applications and Flux objects continuously: poll, webhooks, sync, self-heal."""
    _setup_logging(log_format, log_level)
    host, _, port = listen.rpartition(":")
    try:
        policy = Policy.from_env()
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    jqpath.configure(policy)  # jq workers with the operator's time and memory limits
    shard_index = _shard_index(shards, shard)
    try:
        kube_flow(kube_qps, kube_burst)  # checked before anything starts
    except ValueError as exc:
        raise fail(str(exc)) from exc
    options = ControllerOptions(
        shards=shards,
        shard=shard_index,
        namespaces=tuple(namespace),
        concurrency=concurrency,
        leader_elect=leader_elect,
        resync=resync,
        jitter=jitter,
        status_heartbeat=status_heartbeat,
        flux=flux,
        artifacts_dir=artifacts_dir,
        artifacts_url=artifacts_url,
    )

    renew = go_duration(key_renew_period)
    if renew is None:
        raise fail(f"--key-renew-period {key_renew_period!r} is not a Go duration (e.g. 720h)")
    cutoff = None
    if key_cutoff_time:
        try:
            cutoff = parsedate_to_datetime(key_cutoff_time)
        except (TypeError, ValueError):
            raise fail(f"--key-cutoff-time {key_cutoff_time!r} is not an RFC 1123 time") from None
    sealed_options: SealedSecretsOptions | None = None
    if sealed_secrets:  # imported only then: its crypto is megabytes a controller may not need
        from gitsail.controller.sealedsecrets import SealedSecretsOptions

        sealed_options = SealedSecretsOptions(
            key_namespace=key_namespace,
            key_prefix=key_prefix,
            renew_period=timedelta(seconds=renew),
            cutoff=cutoff,
            rate_limit=rate_limit,
            rate_limit_burst=rate_limit_burst,
        )

    injector_options = None
    if vault_injector:
        from gitsail.cli.vault_injector import injector_options as _injector_options

        injector_options = _injector_options(
            listen=vault_injector_listen,
            service=vault_injector_service,
            namespace_selector=vault_injector_namespace_selector,
            name=vault_injector_name,
            tls_secret=vault_injector_tls_secret,
            vault_address=vault_address,
            agent_image=vault_agent_image,
            control_namespace=namespace[0],
        )

    async def main() -> None:
        config = await load_kubeconfig(kubeconfig.split(":")[0] if kubeconfig else None, context)
        async with Kube(config, flow=kube_flow(kube_qps, kube_burst)) as kube:
            sealed = None
            if sealed_options is not None:
                from gitsail.controller.sealedsecrets import SealedSecrets

                sealed = SealedSecrets(kube, sealed_options)
            kinds: list[Any] = [sealed.kind] if sealed else []
            external = None
            if external_secrets:  # imported only then, like the Sealed Secrets controller
                from gitsail.controller.externalsecrets import (
                    ExternalSecrets,
                    ExternalSecretsOptions,
                )

                external = ExternalSecrets(
                    kube,
                    ExternalSecretsOptions(
                        store_rate=store_qps, store_burst=max(1, int(store_qps * 2))
                    ),
                    policy=policy,
                )
                kinds += external.kinds()
            ctl = Controller(kube, options, kinds=kinds)
            # Connections, heads, bodies and concurrent webhooks are bounded by the policy.
            server = make_server(
                ctl,
                host or "127.0.0.1",
                int(port),
                policy,
                extra_routes=sealed.routes() if sealed else (),
            )
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            # `kill -USR1 <pid>`: where every task waits, in the log (a stall's diagnosis).
            loop.add_signal_handler(
                signal.SIGUSR1,
                lambda: logging.getLogger("gitsail.controller").warning("%s", task_stacks()),
            )
            run = asyncio.create_task(ctl.run())
            serve = asyncio.create_task(server.serve())
            stopper = asyncio.create_task(stop.wait())
            tasks = [run, serve, stopper]
            if injector_options is not None:
                from gitsail.controller.vault_injector import VaultInjector

                tasks.append(asyncio.create_task(VaultInjector(kube, injector_options).run()))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            run.cancel()
            stopper.cancel()
            for extra in tasks[3:]:
                extra.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await extra
            with contextlib.suppress(asyncio.CancelledError):
                await run
            await serve
            if external is not None:
                await external.stop()
            if not run.cancelled() and run.exception() is not None:
                raise run.exception()  # type: ignore[misc]

    _smaller_tls_buffers()
    try:
        asyncio.run(main())
    except (KubeError, OSError) as exc:
        raise fail(str(exc)) from exc


# Bytes asyncio reads from a TLS connection at once. Its default (256 KiB) is a buffer per
# connection, allocated whole; the controller keeps one connection per watch and up to 32
# idle ones for requests, all to the apiserver: 7 MiB of ~10 at 300 apps (tracemalloc). A
# larger answer (a LIST) is read in more pieces.
TLS_READ_BYTES = 64 * 1024


def _smaller_tls_buffers() -> None:
    """Set asyncio's TLS read size for this process (the controller owns its process)."""
    import asyncio.sslproto

    protocol = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > TLS_READ_BYTES:
        protocol.max_size = TLS_READ_BYTES


def _shard_index(shards: int, shard: str | None) -> int | None:
    """``--shard`` (None for ``auto``), or the StatefulSet ordinal of the hostname; refused
    when out of range."""
    import socket

    from gitsail.controller.sharding import Sharding, ShardingError, shard_from_hostname

    index: int | None
    if shard is None:
        index = 0 if shards == 1 else shard_from_hostname(socket.gethostname())
        if index is None:
            raise fail(
                f"--shards {shards} needs --shard I or --shard auto "
                "(or a StatefulSet hostname ending in -<ordinal>)"
            )
    elif shard == "auto":
        index = None
    elif shard.isdigit() and len(shard) <= 4:
        index = int(shard)
    else:
        raise fail(f"--shard {shard!r} is not a shard number or auto")
    try:
        Sharding(shards, index)
    except ShardingError as exc:
        raise fail(str(exc)) from exc
    return index
