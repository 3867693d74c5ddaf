"""Vault injector benchmark: what the webhook costs a pod creation.

    .venv/bin/python -m benchmarks.vault_injector_bench [--requests N]

Serves the injector's webhook (``VaultInjector``: TLS with its own CA) on loopback and sends
it AdmissionReviews as the apiserver does (HTTPS, keep-alive, one at a time), measuring:

- plain:     a pod without ``vault.hashicorp.com/agent-inject`` (admitted unchanged);
- annotated: the article's pod (the JSONPatch with both agents and their configuration);
- and the pure ``review_response`` call for each, without HTTP or TLS.

Prints a table and writes ``benchmarks/results/vault-injector.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import ssl
import statistics
import time
from pathlib import Path
from typing import Any, cast

import httpx

from gitsail.controller.vault_injector import InjectorOptions, VaultInjector, review_response
from gitsail.dev.cluster import free_ports
from gitsail.kube import Kube
from gitsail.secrets.vault_agent import InjectorDefaults

RESULTS = Path(__file__).parent / "results" / "vault-injector.json"
TEMPLATE = (
    '{{- with secret "secret/data/myapp/config" -}}\n'
    'export API_KEY="{{ .Data.data.api_key }}"\n'
    'export DB_PASSWORD="{{ .Data.data.db_password }}"\n'
    "{{- end }}\n"
)


def review(annotated: bool) -> dict[str, Any]:
    annotations = {"app.kubernetes.io/version": "1.0.0"}
    if annotated:
        annotations |= {
            "vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/role": "myapp",
            "vault.hashicorp.com/agent-inject-secret-config": "secret/data/myapp/config",
            "vault.hashicorp.com/agent-inject-template-config": TEMPLATE,
        }
    mount = {
        "name": "kube-api-access-abcde",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "myapp",
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "myapp-7d9f-", "annotations": annotations},
                "spec": {
                    "serviceAccountName": "myapp",
                    "containers": [
                        {"name": "myapp", "image": "myapp:v1.0.0", "volumeMounts": [mount]}
                    ],
                    "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
                },
            },
        },
    }


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def over_https(injector: VaultInjector, port: int, count: int) -> dict[str, Any]:
    server = injector.server()
    task = asyncio.create_task(server.serve())
    out: dict[str, Any] = {}
    try:
        async with asyncio.timeout(30):
            while not server.started:  # noqa: ASYNC110 (uvicorn has no started event)
                await asyncio.sleep(0.02)
        ctx = ssl.create_default_context(cadata=injector.pki.ca_bundle.decode())
        async with httpx.AsyncClient(verify=ctx) as client:
            for name, annotated in (("plain", False), ("annotated", True)):
                body = json.dumps(review(annotated)).encode()
                headers = {"Content-Type": "application/json"}
                samples = []
                for _ in range(count):
                    start = time.perf_counter()
                    resp = await client.post(
                        f"https://127.0.0.1:{port}/mutate", content=body, headers=headers
                    )
                    resp.raise_for_status()
                    samples.append(time.perf_counter() - start)
                out[name] = {**summary(samples), "response_bytes": len(resp.content)}
    finally:
        server.should_exit = True
        await task
    return out


def pure(count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    defaults = InjectorDefaults()
    for name, annotated in (("plain", False), ("annotated", True)):
        body = review(annotated)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            review_response(body, defaults)
            samples.append(time.perf_counter() - start)
        out[name] = summary(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 requests")
    args = parser.parse_args()
    count = 200 if args.quick else args.requests
    (port,) = free_ports(1)
    injector = VaultInjector(cast(Kube, None), InjectorOptions(port=port))
    result: dict[str, Any] = {
        "requests": count,
        "python": platform.python_version(),
        "https": asyncio.run(over_https(injector, port, count)),
        "pure": pure(count),
    }
    print(f"{'case':<12}{'https median':>14}{'https p99':>12}{'pure median':>14}")
    for name in ("plain", "annotated"):
        https, bare = result["https"][name], result["pure"][name]
        print(
            f"{name:<12}{https['median_ms']:>11.3f} ms{https['p99_ms']:>9.3f} ms"
            f"{bare['median_ms']:>11.3f} ms"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
