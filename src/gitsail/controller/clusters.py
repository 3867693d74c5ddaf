"""The controller's destination clusters: one client, discovery and watch cache per cluster.

``ClusterPool`` is the engine's ``Targets`` (``gitsail.app.targets``) in the controller.
It reads the Argo CD cluster Secrets of the control namespace from a label-selected watch
and resolves a delivery's destination (``server`` or cluster ``name``; the implicit
``in-cluster`` is the control plane's own client, watch caches and change tokens).

Each other cluster gets a ``_Connection``, opened on first use and shared by every app on
it: a ``Kube`` (10 s timeouts, one retry), its discovery, and its own managed-object watch
caches (the manager's ``_LiveCaches``; a change of a marked object wakes its owners as on
the control plane). A namespace-restricted cluster (its Secret lists ``namespaces``) gets no
cluster-wide watches: its objects are read with GETs.

Health is the connection's own loop: ``GET /version`` at once, then every
``probe_interval`` while it answers, and with a short backoff while it does not. The state
(``Successful`` / ``Failed``, the server version, the last error) is kept in memory and
written, only when it changes, as annotations ``status.gitsail.io/*`` of the cluster
Secret (what ``gitsail cluster list`` reads). While a cluster is ``Failed`` its apps are
refused at once (``TargetUnavailable``, transient: a ComparisonError condition), so they
never hold a worker for a timeout; any state change wakes every app that used the cluster,
so an app reports the outage within one probe and recovers by itself when the cluster
answers again. A changed Secret (server, credentials, namespaces) closes its connection;
the next use opens a new one.

Flux's ``kubeConfig`` (a tenant's kubeconfig Secret) goes through ``connect`` with a key
that covers the whole kubeconfig, so each distinct kubeconfig has its own connection and
health, without status annotations (the Secret is the tenant's).

Nothing here logs or stores a credential: messages carry the server, the cluster's name and
the transport's error (httpx names the host and the OS error, never a header).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gitsail.app.model import Delivery
from gitsail.app.targets import Target, TargetUnavailable
from gitsail.controller.registry import ObjectKey
from gitsail.kinds.argo_cluster import (
    CLUSTER_SECRETS,
    IN_CLUSTER,
    IN_CLUSTER_NAME,
    STATUS_PREFIX,
    ClusterConfigError,
    ClusterEntry,
    read_cluster_secret,
)
from gitsail.kube import (
    Backoff,
    ConfigError,
    Kube,
    KubeConfig,
    KubeError,
    RetryPolicy,
    WatchCache,
    WatchEvent,
)
from gitsail.model import Obj
from gitsail.policy import Policy

__all__ = ["ClusterPool", "ConnectionState"]

log = logging.getLogger(__name__)

STATE = STATUS_PREFIX + "connection-state"
VERSION = STATUS_PREFIX + "server-version"
MESSAGE = STATUS_PREFIX + "connection-message"
SINCE = STATUS_PREFIX + "connection-since"
REQUEST_TIMEOUT = 10.0
UNREACHABLE = "ClusterUnreachable"
UNKNOWN = "DestinationUnknown"

LiveFactory = Callable[[Kube], Any]  # a kube -> the manager's _LiveCaches for it
Wake = Callable[[ObjectKey, str], None]


@dataclass
class ConnectionState:
    """What ``cluster list`` shows: ``Unknown`` until the first probe answers or fails."""

    state: str = "Unknown"
    version: str = ""
    message: str = ""
    since: str = ""


@dataclass
class _Connection:
    key: str
    entry: ClusterEntry
    target: Target
    live: Any = None  # the manager's _LiveCaches of this cluster (None: GETs)
    status: ConnectionState = field(default_factory=ConnectionState)
    apps: set[ObjectKey] = field(default_factory=set)
    probed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    secret: str = ""  # the cluster Secret to annotate ("" for a Flux kubeconfig)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ClusterPool:
    """Resolves destinations to clusters and keeps one connection per cluster (see the
    module docstring). ``in_cluster`` is the control plane's own ``Target``; ``live_for``
    makes the managed-object watch caches of a new cluster; ``wake`` queues an app."""

    def __init__(
        self,
        control: Kube,
        namespace: str,
        in_cluster: Target,
        *,
        live_for: LiveFactory | None = None,
        wake: Wake | None = None,
        policy: Policy | None = None,
        probe_interval: float = 10.0,
        timeout: float = REQUEST_TIMEOUT,
        client: Callable[[KubeConfig], Kube] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.control = control
        self.namespace = namespace
        self.in_cluster = in_cluster
        self.live_for = live_for
        self.wake = wake
        self.policy = policy
        self.probe_interval = probe_interval
        self.timeout = timeout
        self.client = client or self._client  # a seam: unit tests pass a fake transport
        self.sleep = sleep
        self.secrets: WatchCache | None = None
        self._secrets_lock = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self._conns: dict[str, _Connection] = {}
        self._open_lock = asyncio.Lock()
        self._unknown: set[ObjectKey] = set()  # apps refused for want of a Secret
        self._parsed: dict[str, tuple[str, ClusterEntry | None]] = {}  # by Secret name

    # -- the registered clusters ----------------------------------------------------------

    async def _cluster_secrets(self) -> list[Obj]:
        if self.secrets is None:
            async with self._secrets_lock:
                if self.secrets is None:
                    cache = WatchCache(
                        self.control, "v1", "Secret", self.namespace, label_selector=CLUSTER_SECRETS
                    )
                    await cache.start()
                    queue = cache.subscribe()
                    self._pump = asyncio.create_task(
                        self._on_secrets(queue), name="cluster-secrets"
                    )
                    self.secrets = cache
        return self.secrets.items()

    def entries(self) -> list[ClusterEntry]:
        """The clusters the Secrets register now (unreadable Secrets left out, logged)."""
        found = []
        for secret in self.secrets.items() if self.secrets is not None else []:
            meta = secret.get("metadata") or {}
            name, version = str(meta.get("name") or ""), str(meta.get("resourceVersion") or "")
            parsed = self._parsed.get(name)
            if parsed is None or parsed[0] != version:  # read each version of a Secret once
                try:
                    parsed = (version, read_cluster_secret(secret))
                except ClusterConfigError as exc:
                    log.warning("%s", exc)
                    parsed = (version, None)
                self._parsed[name] = parsed
            if parsed[1] is not None:
                found.append(parsed[1])
        return found

    def complete(self, server: str, name: str) -> tuple[str, str]:
        """(server, name) with the missing half filled from the registered clusters (for
        AppProject destinations, matched by either, as Argo CD does)."""
        for entry in self.entries():
            if (server and entry.server == server) or (name and not server and entry.name == name):
                return entry.server, entry.name
        if server == IN_CLUSTER or (name == IN_CLUSTER_NAME and not server):
            return IN_CLUSTER, IN_CLUSTER_NAME
        return server, name

    async def _on_secrets(self, queue: asyncio.Queue[WatchEvent]) -> None:
        while True:
            event = await queue.get()
            if event.type == "BOOKMARK":
                continue
            name = str((event.object.get("metadata") or {}).get("name") or "")
            if event.type == "DELETED":
                self._parsed.pop(name, None)
            for conn in list(self._conns.values()):
                if conn.secret != name:
                    continue
                try:
                    entry = read_cluster_secret(event.object) if event.type != "DELETED" else None
                except ClusterConfigError:
                    entry = None
                if entry is None or entry.fingerprint != conn.entry.fingerprint:
                    log.info("cluster Secret %s changed: closing its connection", name)
                    await self._close(conn)
                    self._wake(conn.apps, "cluster-secret")
            if self._unknown:
                waiting, self._unknown = self._unknown, set()
                self._wake(waiting, "cluster-secret")

    # -- Targets --------------------------------------------------------------------------

    async def resolve(self, app: Delivery) -> Target:
        server, name = app.destination_server, app.destination_name
        who = ObjectKey(app.kind, app.namespace, app.name)
        await self._cluster_secrets()
        entry = next(
            (
                e
                for e in self.entries()
                if (server and e.server == server) or (not server and name and e.name == name)
            ),
            None,
        )
        if entry is None:
            if server == IN_CLUSTER or (not server and name in ("", IN_CLUSTER_NAME)):
                return self.in_cluster
            self._unknown.add(who)
            if server:
                message = f"there are no clusters with this URL: {server}"
            else:
                message = f"there are no clusters with this name: {name}"
            raise TargetUnavailable(
                f"{message} (register it with a cluster Secret: gitsail cluster add)",
                transient=False,
                reason=UNKNOWN,
            )
        if entry.server == IN_CLUSTER:
            return self.in_cluster  # the control plane's own cluster, whatever the Secret says
        conn = await self.connect("argo:" + entry.server, entry, secret=entry.secret)
        return await self._use(conn, who)

    async def connect(self, key: str, entry: ClusterEntry, *, secret: str = "") -> _Connection:
        """The connection ``key`` (opened now if new): one per cluster Secret server, or one
        per distinct Flux kubeconfig."""
        conn = self._conns.get(key)
        if conn is not None and conn.entry.fingerprint == entry.fingerprint:
            return conn
        async with self._open_lock:
            conn = self._conns.get(key)
            if conn is not None and conn.entry.fingerprint == entry.fingerprint:
                return conn
            if conn is not None:
                await self._close(conn)
            await self._check_host(entry)
            try:
                kube = self.client(entry.config)
            except ConfigError as exc:
                raise TargetUnavailable(
                    f"cluster {entry.name!r} ({entry.server}): {exc}",
                    transient=False,
                    reason="InvalidClusterConfig",
                ) from None
            live = None
            if self.live_for is not None and not entry.namespaces:
                live = self.live_for(kube)
            target = Target(
                name=entry.name,
                server=entry.server,
                kube=kube,
                live=live.get if live is not None else None,
                changes=live.changes if live is not None else None,
                namespaces=entry.namespaces,
                cluster_resources=entry.cluster_resources,
            )
            conn = _Connection(key, entry, target, live=live, secret=secret)
            conn.task = asyncio.create_task(self._probe_loop(conn), name=f"cluster {entry.name}")
            self._conns[key] = conn
            log.info("opened cluster %s (%s)", entry.name, entry.server)
            return conn

    def _client(self, config: KubeConfig) -> Kube:
        return Kube(
            config,
            timeout=self.timeout,
            retry=RetryPolicy(attempts=2, backoff=Backoff(initial=0.5, maximum=2.0)),
        )

    async def target_for(self, key: str, entry: ClusterEntry, who: ObjectKey) -> Target:
        """``connect`` + the same availability rule as ``resolve`` (Flux kubeConfig)."""
        return await self._use(await self.connect(key, entry), who)

    async def _use(self, conn: _Connection, who: ObjectKey) -> Target:
        conn.apps.add(who)
        if not conn.probed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.probed.wait(), self.timeout * 2 + 5)
        if conn.status.state != "Successful":
            raise TargetUnavailable(
                f"cluster {conn.entry.name!r} ({conn.entry.server}) is unreachable: "
                f"{conn.status.message or 'no answer yet'}; retrying",
                transient=True,
                reason=UNREACHABLE,
            )
        return conn.target

    async def _check_host(self, entry: ClusterEntry) -> None:
        """The SSRF deny-list (cloud metadata, link-local) on the server's host."""
        if self.policy is None:
            return
        from gitsail.source import SourceError
        from gitsail.source._urls import check_host

        host = urlsplit(entry.server).hostname or ""
        try:
            await check_host(host, self.policy, what=f"cluster {entry.name!r}")
        except SourceError as exc:
            raise TargetUnavailable(str(exc), transient=True, reason=UNREACHABLE) from None

    # -- health ---------------------------------------------------------------------------

    async def _probe_loop(self, conn: _Connection) -> None:
        failures = 0
        while True:
            try:
                version = await conn.target.kube.server_version()
            except KubeError as exc:
                failures += 1
                await self._set(conn, ConnectionState("Failed", conn.status.version, str(exc)))
                delay = min(self.probe_interval, 1.0 * 2 ** min(failures, 4))
            except Exception as exc:
                failures += 1
                message = type(exc).__name__
                await self._set(conn, ConnectionState("Failed", conn.status.version, message))
                delay = self.probe_interval
            else:
                failures = 0
                text = str(version.get("gitVersion") or "")
                await self._set(conn, ConnectionState("Successful", text, ""))
                delay = self.probe_interval
            conn.probed.set()
            await self.sleep(delay)

    async def _set(self, conn: _Connection, new: ConnectionState) -> None:
        old = conn.status
        if (old.state, old.version, old.message) == (new.state, new.version, new.message):
            return
        new.since = old.since if old.state == new.state else _now()
        conn.status = new
        if old.state != new.state:
            log.info(
                "cluster %s (%s) is %s%s",
                conn.entry.name,
                conn.entry.server,
                new.state,
                f": {new.message}" if new.message else "",
            )
            if old.state != "Unknown":  # the first answer: its apps are waiting for it
                self._wake(conn.apps, f"cluster:{new.state}")
        if conn.secret:
            await self._annotate(conn.secret, new)

    async def _annotate(self, secret: str, status: ConnectionState) -> None:
        patch = {
            "metadata": {
                "annotations": {
                    STATE: status.state,
                    VERSION: status.version or None,
                    MESSAGE: status.message[:1024] or None,
                    SINCE: status.since,
                }
            }
        }
        try:
            await self.control.merge_patch("v1", "Secret", secret, patch, self.namespace)
        except KubeError as exc:
            log.warning("cannot record the connection state on Secret %s: %s", secret, exc)

    def _wake(self, keys: set[ObjectKey], reason: str) -> None:
        if self.wake is None:
            return
        for key in sorted(keys, key=lambda k: (k.kind, k.namespace, k.name)):
            self.wake(key, reason)

    def states(self) -> dict[str, ConnectionState]:
        """The connection state by server of every open connection."""
        return {c.entry.server: c.status for c in self._conns.values()}

    # -- lifecycle ------------------------------------------------------------------------

    async def _close(self, conn: _Connection) -> None:
        self._conns.pop(conn.key, None)
        if conn.task is not None:
            conn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.task
        if conn.live is not None:
            await conn.live.stop()
        await conn.target.kube.close()

    async def stop(self) -> None:
        for conn in list(self._conns.values()):
            await self._close(conn)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self.secrets is not None:
            await self.secrets.stop()
            self.secrets = None
