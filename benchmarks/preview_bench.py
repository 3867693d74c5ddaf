"""Preview benchmark: `gitsail preview` on a monorepo of N apps with one app touched.

    .venv/bin/python -m benchmarks.preview_bench [--apps 1000] [--runs 3]

Generates a git repository of N apps (``apps/app-NNNN``: a Deployment and a Service each,
a plain directory) with one Argo CD Application per app in ``clusters/``, commits it, then
commits a change to one app's Deployment. Measures, median of ``--runs``:

- preview:     ``workflow.preview.preview`` with offline app discovery (both revisions
               exported, every app's input digest at both, renders of affected apps only);
- everything:  the naive alternative, every app rendered at both revisions;

- preview --pr: ``workflow.remote_preview.preview_remote`` of the same two commits fetched
               from the repository as a remote (a ``file://`` URL: the source layer's
               fetch into a private cache, without network latency), then the same digests;

and records how many renders the preview ran (the point: 2, i.e. one app at two
revisions, whatever N). Prints a table and writes ``benchmarks/results/preview.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.render import RenderOptions, render_local
from gitsail.workflow.gitops import Repo
from gitsail.workflow.preview import offline_apps, preview
from gitsail.workflow.remote_preview import preview_remote

RESULTS = Path(__file__).resolve().parent / "results" / "preview.json"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def _app(i: int, tag: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i:04d}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app-{i:04d}}}
  template:
    metadata:
      labels: {{app: app-{i:04d}}}
    spec:
      containers:
        - name: app
          image: registry.example.com/app-{i:04d}:{tag}
---
apiVersion: v1
kind: Service
metadata:
  name: app-{i:04d}
spec:
  selector: {{app: app-{i:04d}}}
  ports: [{{port: 80}}]
"""


def _application(i: int) -> str:
    return f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: app-{i:04d}
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://git.example.com/mono.git
    path: apps/app-{i:04d}
  destination:
    server: https://kubernetes.default.svc
    namespace: app-{i:04d}
  syncPolicy:
    automated: {{prune: true, selfHeal: true}}
"""


def _monorepo(root: Path, apps: int) -> None:
    for i in range(apps):
        app = root / "apps" / f"app-{i:04d}"
        app.mkdir(parents=True)
        (app / "app.yaml").write_text(_app(i, "1.0.0"))
        (root / "clusters").mkdir(exist_ok=True)
        (root / "clusters" / f"app-{i:04d}.yaml").write_text(_application(i))
    _git("init", "-q", "-b", "main", ".", cwd=root)
    _git("add", "--all", cwd=root)
    _git("commit", "-qm", "monorepo", cwd=root)
    touched = apps // 2
    (root / "apps" / f"app-{touched:04d}" / "app.yaml").write_text(_app(touched, "1.1.0"))
    _git("commit", "-qam", "bump one app", cwd=root)


def _render(app_dir: Path, root: Path, options: RenderOptions) -> list[Obj]:
    return list(render_local(app_dir, options, root=root).manifests)


def _everything(root: Path) -> int:
    """The naive preview: render every app at both revisions."""
    repo = Repo.at(root)
    renders = 0
    with tempfile.TemporaryDirectory() as scratch:
        for rev in ("HEAD~1", "HEAD"):
            tree = Path(scratch) / rev.replace("~", "-")
            repo.export(rev, tree)
            for app in offline_apps(tree, tree):
                _render(tree / app.path, tree, app.options)
                renders += 1
    return renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitsail-preview-bench-") as tmp:
        root = Path(tmp) / "mono"
        root.mkdir()
        _monorepo(root, args.apps)
        repo = Repo.at(root)
        times: list[float] = []
        renders = affected = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            result = preview(repo, "HEAD~1", "HEAD", apps=offline_apps, render=_render)
            times.append(time.perf_counter() - started)
            renders, affected = result.renders, len(result.affected)
        remote: list[float] = []
        remote_renders = 0
        policy = dataclasses.replace(DEFAULT_POLICY, allow_file_urls=True)
        base, head = repo.resolve("HEAD~1"), repo.resolve("HEAD")
        for _ in range(args.runs):
            started = time.perf_counter()
            fetched = preview_remote(
                root.as_uri(), base, head, apps=offline_apps, render=_render, policy=policy
            )
            remote.append(time.perf_counter() - started)
            remote_renders = fetched.renders
        naive: list[float] = []
        naive_renders = 0
        for _ in range(max(1, args.runs // 3)):
            started = time.perf_counter()
            naive_renders = _everything(root)
            naive.append(time.perf_counter() - started)
    report: dict[str, Any] = {
        "apps": args.apps,
        "runs": args.runs,
        "python": platform.python_version(),
        "preview_s": round(statistics.median(times), 3),
        "preview_renders": renders,
        "preview_affected": affected,
        "preview_pr_s": round(statistics.median(remote), 3),
        "preview_pr_renders": remote_renders,
        "everything_s": round(statistics.median(naive), 3),
        "everything_renders": naive_renders,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("| apps | preview s | renders | affected | --pr s | renders | render-all s | renders |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.apps} | {report['preview_s']} | {renders} | {affected} | "
        f"{report['preview_pr_s']} | {remote_renders} | "
        f"{report['everything_s']} | {naive_renders} |"
    )


if __name__ == "__main__":
    main()
