"""Render benchmark: bare `kustomize build` / `helm template` against gitsail's Renderer.

    .venv/bin/python -m benchmarks.render_bench [--runs N]

Generates four inputs in a temporary directory (kustomize and helm; 3 and 1000 resources;
the kustomize overlays apply namespace, prefix, labels and an image like a real overlay)
and measures, in one run, the median wall time of:

- bare:   the binary alone as a subprocess (what any engine pays at least);
- cold:   ``Renderer.render`` on a cache miss (a new digest every time): private copy,
          option edits, the tool run, YAML parsing into dicts;
- cached: ``Renderer.render`` on a hit (same digest): no subprocess, fresh dicts from the
          cache's JSON.

Prints a table and writes ``benchmarks/results/render.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gitsail.model import Artifact
from gitsail.render import Rendered, Renderer, RenderOptions
from gitsail.toolchain import find_binary

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"


def _deployment(i: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels: {{app: app-{i}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app-{i}}}}}
  template:
    metadata: {{labels: {{app: app-{i}}}}}
    spec:
      containers:
        - name: app
          image: registry.example/app:1.0.0
          ports: [{{containerPort: 8080}}]
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
"""


def _service(i: int) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: app-{i}
spec:
  selector: {{app: app-{i}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _configmap() -> str:
    return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n"


def _kustomize_input(root: Path, name: str, resources: int) -> str:
    app = root / name
    app.mkdir(parents=True)
    if resources == 3:
        docs = [_deployment(0), _service(0), _configmap()]
    else:
        half = resources // 2
        docs = [_deployment(i) for i in range(half)] + [_service(i) for i in range(half)]
    (app / "resources.yaml").write_text("---\n".join(docs))
    (app / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: bench\nnamePrefix: b-\nlabels:\n  - pairs: {team: bench}\n"
        "images:\n  - name: registry.example/app\n    newTag: 2.0.0\n"
        "resources:\n  - resources.yaml\n"
    )
    return name


def _helm_input(root: Path, name: str, resources: int) -> str:
    chart = root / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
    count = 1 if resources == 3 else resources // 2
    (chart / "values.yaml").write_text(f"count: {count}\ntag: 1.0.0\n")
    deployment = (
        _deployment(0).replace("app-0", "app-{{ $i }}").replace("1.0.0", "{{ $.Values.tag }}")
    )
    service = _service(0).replace("app-0", "app-{{ $i }}")
    (chart / "templates" / "apps.yaml").write_text(
        "{{- range $i, $_ := until (int .Values.count) }}\n---\n"
        + deployment
        + "---\n"
        + service
        + "{{- end }}\n"
    )
    if resources == 3:
        (chart / "templates" / "configmap.yaml").write_text(_configmap())
    return name


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _bare(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


async def _timed(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return times


def _render_calls(
    renderer: Renderer, repo: Path, path: str
) -> tuple[Callable[[], Awaitable[Rendered]], Callable[[], Awaitable[Rendered]]]:
    """(cold, cached): a render with a new digest each call, and one with a fixed digest."""
    options = RenderOptions(app_name="bench", namespace="bench")
    counter = iter(range(10**9))

    def artifact(digest: str) -> Artifact:
        return Artifact("file:///bench", "r", "main", repo, path, digest)

    async def cold() -> Rendered:
        return await renderer.render(artifact(f"sha256:{path}-cold-{next(counter)}"), options)

    async def cached() -> Rendered:
        return await renderer.render(artifact(f"sha256:{path}-hot"), options)

    return cold, cached


async def _measure(root: Path, runs_small: int, runs_large: int) -> list[dict[str, Any]]:
    helm, kustomize = find_binary("helm"), find_binary("kustomize")
    renderer = Renderer(work_dir=root / "work", helm=helm, kustomize=kustomize, cache_size=64)
    inputs = [
        ("kustomize", 3, _kustomize_input(root / "repo", "kustomize-small", 3)),
        ("kustomize", 1000, _kustomize_input(root / "repo", "kustomize-1000", 1000)),
        ("helm", 3, _helm_input(root / "repo", "helm-small", 3)),
        ("helm", 1000, _helm_input(root / "repo", "helm-1000", 1000)),
    ]
    rows = []
    for tool, resources, path in inputs:
        runs = runs_small if resources == 3 else runs_large
        app_dir = root / "repo" / path
        if tool == "kustomize":
            argv = [str(kustomize), "build", str(app_dir)]
        else:
            argv = [str(helm), "template", "bench", str(app_dir), "--namespace", "bench"]
            argv += ["--include-crds", "--skip-tests"]
        cold, cached = _render_calls(renderer, root / "repo", path)
        first = await cached()
        assert len(first.manifests) == resources, (path, len(first.manifests))
        bare = _bare(argv, runs)
        cold_times = await _timed(cold, runs)
        hit_times = await _timed(cached, max(runs, 20))
        bare_ms, cold_ms = _median_ms(bare), _median_ms(cold_times)
        cached_ms = _median_ms(hit_times)
        row: dict[str, Any] = {
            "input": f"{tool} {resources} resources",
            "tool": tool,
            "resources": resources,
            "runs": runs,
            "bare_ms": bare_ms,
            "cold_ms": cold_ms,
            "cached_ms": cached_ms,
            "cold_over_bare": round(cold_ms / bare_ms, 2),
            "cached_over_bare": round(cached_ms / bare_ms, 4),
        }
        rows.append(row)
    versions = {t: await renderer.tool_version(t) for t in ("helm", "kustomize")}
    renderer.close()
    for row in rows:
        row["tool_version"] = versions[row["tool"]]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per small input")
    parser.add_argument("--runs-large", type=int, default=5, help="runs per 1000-resource input")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitsail-render-bench-") as tmp:
        rows = asyncio.run(_measure(Path(tmp), args.runs, args.runs_large))
    header = (
        f"{'input':<26}{'bare ms':>10}{'cold ms':>10}{'cold/bare':>11}"
        f"{'cached ms':>11}{'cached/bare':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['input']:<26}{r['bare_ms']:>10.1f}{r['cold_ms']:>10.1f}{r['cold_over_bare']:>11.2f}"
            f"{r['cached_ms']:>11.2f}{r['cached_over_bare']:>13.4f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "render",
                "command": ".venv/bin/python -m benchmarks.render_bench",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
