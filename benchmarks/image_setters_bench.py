"""Image automation benchmark: the Setters pass of an ImageUpdateAutomation on a large tree.

    .venv/bin/python -m benchmarks.image_setters_bench [--files 2000] [--marked 100] [--runs 5]

Generates ``--files`` Deployment manifests (``apps/app-NNNN/deployment.yaml``, a comment and
an image each), ``--marked`` of them with a setter comment for one policy, and measures,
median of ``--runs``, ``flux_image_setters.apply_setters`` over the whole tree with a policy
whose tag is new (every marked file changes) and with the current tag (nothing changes:
what an automation does on most of its runs). Writes ``benchmarks/results/image-setters.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gitsail.kinds.flux_image_setters import PolicyImage, apply_setters

RESULTS = Path(__file__).resolve().parent / "results" / "image-setters.json"
POLICY = "flux-system:app"


def _manifest(i: int, marked: bool) -> str:
    marker = f' # {{"$imagepolicy": "{POLICY}"}}' if marked else ""
    return f"""\
# app {i}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i:04d}
spec:
  template:
    spec:
      containers:
        - name: app
          image: ghcr.io/org/app:1.0.0{marker}
          ports:
            - containerPort: 8080 # http
"""


def _median(root: Path, tag: str, runs: int) -> tuple[float, int]:
    times: list[float] = []
    changed = 0
    policies = {POLICY: PolicyImage("ghcr.io/org/app", tag)}
    for _ in range(runs):
        started = time.perf_counter()
        result = apply_setters(root, "apps", policies)
        times.append(time.perf_counter() - started)
        changed = len(result.files)
    return statistics.median(times), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--marked", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitsail-setters-bench-") as tmp:
        root = Path(tmp)
        step = max(1, args.files // max(1, args.marked))
        for i in range(args.files):
            directory = root / "apps" / f"app-{i:04d}"
            directory.mkdir(parents=True)
            marked = i % step == 0 and i // step < args.marked
            (directory / "deployment.yaml").write_text(_manifest(i, marked))
        new_s, new_files = _median(root, "1.2.0", args.runs)
        same_s, same_files = _median(root, "1.0.0", args.runs)
    report: dict[str, Any] = {
        "files": args.files,
        "marked": args.marked,
        "runs": args.runs,
        "python": platform.python_version(),
        "new_tag_s": round(new_s, 3),
        "new_tag_files_changed": new_files,
        "same_tag_s": round(same_s, 3),
        "same_tag_files_changed": same_files,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("| files | marked | new tag s | changed | same tag s | changed |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.files} | {args.marked} | {report['new_tag_s']} | {new_files} | "
        f"{report['same_tag_s']} | {same_files} |"
    )


if __name__ == "__main__":
    main()
