"""`gitsail dev`: a real Kubernetes control plane on loopback, in one command.

A dev cluster is five kinds of processes started from the pinned binaries: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake kubelets for N fake
nodes). They all listen on 127.0.0.1 on free ports, use a PKI made for the cluster, and
keep every byte of state under ``<state root>/<name>/``:

    pki/          CA, serving cert, admin client cert, service-account keys
    etcd/         etcd's data directory
    logs/         one log per process
    kubeconfig    admin kubeconfig (certificates embedded)
    state.json    ports and the pid + executable of every process

Processes run in their own sessions, so the cluster outlives the command that started it.
A cluster is *alive* when every recorded pid still runs the recorded executable (checked
through /proc, so a recycled pid is not mistaken for ours). A cluster whose processes are
gone, say after a reboot, is *stale*: `up` cleans it and starts afresh, `status` says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gitsail import toolchain
from gitsail.dev.pki import ClusterPKI, make_pki

__all__ = [
    "Cluster",
    "ClusterError",
    "ProcessRecord",
    "cluster_dir",
    "down",
    "list_clusters",
    "load",
    "spawn",
    "state_root",
    "up",
]

# Room for thousands of Services (benchmarks create one per app); the first address is the
# in-cluster `kubernetes` Service, which the apiserver's serving certificate names.
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
DEFAULT_NAME = "gitsail"

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """A dev cluster could not be started, reached or stopped; the message says which part."""


def state_root() -> Path:
    override = os.environ.get("GITSAIL_STATE_DIR")
    if override:
        return Path(override) / "dev"
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "gitsail" / "dev"


def cluster_dir(name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ClusterError(f"cluster name {name!r}: use letters, digits, '-' and '_' only")
    return state_root() / name


@dataclass(frozen=True)
class ProcessRecord:
    """One process of a cluster: what it is, its pid and the executable it runs."""

    role: str
    pid: int
    executable: str
    log: str

    def alive(self) -> bool:
        _reap_child(self.pid)
        try:
            exe = str(Path(f"/proc/{self.pid}/exe").readlink())
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        # A zombie still has a /proc entry; it is not running.
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        return exe == str(Path(self.executable).resolve())


# Processes started by this Python process, so their exit codes can be reported and
# their zombies reaped when `up` and `down` run in one process (as in tests).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap_child(pid: int) -> int | None:
    proc = _children.get(pid)
    return None if proc is None else proc.poll()


@dataclass
class Cluster:
    """A dev cluster's recorded state (``state.json``)."""

    name: str
    directory: Path
    ports: dict[str, int]
    nodes: int
    processes: list[ProcessRecord] = field(default_factory=list)
    kubernetes_version: str = ""

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.directory / "pki")

    def alive(self) -> bool:
        return bool(self.processes) and all(p.alive() for p in self.processes)

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        tmp = self.directory / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.directory / "state.json")

    def http(self, timeout: float = 10.0) -> httpx.Client:
        """A sync HTTP client authenticated as the cluster admin."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return httpx.Client(base_url=self.server, verify=ctx, timeout=timeout)


def load(name: str) -> Cluster | None:
    """The recorded state of cluster ``name``, or None when there is none."""
    path = cluster_dir(name) / "state.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return Cluster(
        name=data["name"],
        directory=Path(data["directory"]),
        ports={k: int(v) for k, v in data["ports"].items()},
        nodes=int(data["nodes"]),
        processes=[ProcessRecord(**p) for p in data["processes"]],
        kubernetes_version=data.get("kubernetes_version", ""),
    )


def list_clusters() -> list[Cluster]:
    root = state_root()
    if not root.is_dir():
        return []
    found = (load(p.name) for p in sorted(root.iterdir()) if (p / "state.json").is_file())
    return [c for c in found if c is not None]


def free_ports(count: int) -> list[int]:
    # Bind all at once so the kernel hands out distinct ports, then release them for the
    # processes to bind. Another program could take one in between; startup then fails with
    # the process's own "address already in use" in its log and `up` says which one.
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _kubeconfig(cluster: Cluster) -> dict[str, Any]:
    import base64

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    ctx = f"gitsail-{cluster.name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": ctx,
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": b64(cluster.pki.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": f"{ctx}-admin",
                "user": {
                    "client-certificate-data": b64(cluster.pki.admin_cert),
                    "client-key-data": b64(cluster.pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": f"{ctx}-admin"}}],
        "current-context": ctx,
    }


def spawn(cluster: Cluster, role: str, argv: list[str]) -> ProcessRecord:
    """Start a detached process that belongs to the cluster (stopped by ``down``)."""
    log_path = cluster.directory / "logs" / f"{role}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cluster.directory,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    record = ProcessRecord(role=role, pid=proc.pid, executable=argv[0], log=str(log_path))
    cluster.processes.append(record)
    cluster.save()
    return record


def _start(cluster: Cluster, role: str, binary: str, args: list[str]) -> ProcessRecord:
    return spawn(cluster, role, [str(toolchain.find_binary(binary)), *args])


def _log_tail(record: ProcessRecord, lines: int = 15) -> str:
    try:
        text = Path(record.log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    watch: list[ProcessRecord],
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until true; fail early, with the log, if a watched process dies."""
    deadline = time.monotonic() + timeout
    while True:
        for record in watch:
            if not record.alive():
                code = _reap_child(record.pid)
                status = f" with exit code {code}" if code is not None else ""
                raise ClusterError(
                    f"{record.role} exited{status} while waiting for {what}; last lines of "
                    f"{record.log}:\n{_log_tail(record)}"
                )
        with contextlib.suppress(httpx.HTTPError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _node_manifest(index: int) -> dict[str, Any]:
    name = f"kwok-node-{index}"
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def _ready_nodes(client: httpx.Client) -> int:
    resp = client.get("/api/v1/nodes")
    resp.raise_for_status()
    count = 0
    for node in resp.json().get("items", []):
        conditions = node.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            count += 1
    return count


def up(
    name: str = DEFAULT_NAME,
    *,
    nodes: int = 1,
    progress: Progress = lambda _m: None,
    timeout: float = 120.0,
) -> Cluster:
    """Start cluster ``name`` (or return it if it is already alive) and wait until it is ready.

    Ready means: the apiserver answers /readyz, ``nodes`` fake nodes are Ready and the
    ``default`` ServiceAccount exists (so pods can be admitted).
    """
    if nodes < 1:
        raise ClusterError("a dev cluster needs at least one node")
    existing = load(name)
    if existing is not None and existing.alive():
        progress(f"cluster {name} is already running")
        if existing.nodes < nodes:
            _add_nodes(existing, nodes, progress, timeout)
        return existing
    if existing is not None or cluster_dir(name).exists():
        progress(f"cleaning stale state of cluster {name}")
        down(name)

    directory = cluster_dir(name)
    (directory / "logs").mkdir(parents=True)
    etcd_port, etcd_peer, api_port = free_ports(3)
    cluster = Cluster(
        name=name,
        directory=directory,
        ports={"etcd": etcd_port, "etcd-peer": etcd_peer, "apiserver": api_port},
        nodes=0,
        kubernetes_version=next(t for t in toolchain.TOOLS if t.name == "kubernetes").version,
    )
    cluster.save()
    try:
        _boot(cluster, nodes, progress, timeout)
    except BaseException:
        down(name)
        raise
    return cluster


def _boot(cluster: Cluster, nodes: int, progress: Progress, timeout: float) -> None:
    progress("making PKI")
    pki = make_pki(cluster.directory / "pki", cluster_name=cluster.name, service_ip=SERVICE_IP)
    cluster.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(cluster), sort_keys=False))
    cluster.kubeconfig.chmod(0o600)

    progress("starting etcd")
    etcd_url = f"http://127.0.0.1:{cluster.ports['etcd']}"
    etcd = _start(
        cluster,
        "etcd",
        "etcd",
        [
            f"--name={cluster.name}",
            f"--data-dir={cluster.directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{cluster.ports['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{cluster.ports['etcd-peer']}",
            f"--initial-cluster={cluster.name}=http://127.0.0.1:{cluster.ports['etcd-peer']}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
    )

    def etcd_healthy() -> bool:
        return httpx.get(f"{etcd_url}/health", timeout=2).status_code == 200

    wait_for("etcd /health", etcd_healthy, timeout=timeout, watch=[etcd])

    progress("starting kube-apiserver")
    api = _start(
        cluster,
        "kube-apiserver",
        "kube-apiserver",
        [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={cluster.ports['apiserver']}",
            f"--cert-dir={cluster.directory / 'pki'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=0",
        ],
    )
    with cluster.http() as client:

        def api_ready() -> bool:
            return client.get("/readyz").status_code == 200

        wait_for("kube-apiserver /readyz", api_ready, timeout=timeout, watch=[etcd, api])

    progress("starting kube-controller-manager, kube-scheduler and kwok")
    kubeconfig = f"--kubeconfig={cluster.kubeconfig}"
    _start(
        cluster,
        "kube-controller-manager",
        "kube-controller-manager",
        [
            kubeconfig,
            "--leader-elect=false",
            "--secure-port=0",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={POD_CIDR}",
            "--profiling=false",
            "--v=0",
        ],
    )
    _start(
        cluster,
        "kube-scheduler",
        "kube-scheduler",
        [kubeconfig, "--leader-elect=false", "--secure-port=0", "--profiling=false", "--v=0"],
    )
    _start(
        cluster,
        "kwok",
        "kwok",
        [
            kubeconfig,
            f"--config={toolchain.tool_file('kwok', 'kwok-stages.yaml')}",
            "--manage-all-nodes=true",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
        ],
    )
    _add_nodes(cluster, nodes, progress, timeout)

    with cluster.http() as client:

        def default_sa() -> bool:
            path = "/api/v1/namespaces/default/serviceaccounts/default"
            return client.get(path).status_code == 200

        wait_for("the default ServiceAccount", default_sa, timeout=timeout, watch=cluster.processes)
    progress("ready")


def _add_nodes(cluster: Cluster, nodes: int, progress: Progress, timeout: float) -> None:
    progress(f"registering {nodes} fake node(s)")
    with cluster.http() as client:
        for index in range(cluster.nodes, nodes):
            resp = client.post("/api/v1/nodes", json=_node_manifest(index))
            if resp.status_code not in (201, 409):
                raise ClusterError(f"creating node kwok-node-{index}: {resp.text}")
        wait_for(
            f"{nodes} Ready node(s)",
            lambda: _ready_nodes(client) >= nodes,
            timeout=timeout,
            watch=cluster.processes,
        )
    cluster.nodes = nodes
    cluster.save()


def _terminate(records: list[ProcessRecord], grace: float = 10.0) -> None:
    live = [r for r in records if r.alive()]
    for record in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(r.alive() for r in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for record in live:
        if record.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
    while any(r.alive() for r in live):
        time.sleep(0.05)


def down(name: str = DEFAULT_NAME) -> bool:
    """Stop every process of cluster ``name`` and remove its state. True if there was one."""
    directory = cluster_dir(name)
    cluster = load(name)
    if cluster is not None:
        # Stop in reverse start order so clients go before the apiserver and etcd.
        _terminate(list(reversed(cluster.processes)))
    existed = directory.exists()
    shutil.rmtree(directory, ignore_errors=True)
    return existed


def process_table(cluster: Cluster) -> Iterator[dict[str, Any]]:
    for record in cluster.processes:
        yield {"role": record.role, "pid": record.pid, "alive": record.alive()}
