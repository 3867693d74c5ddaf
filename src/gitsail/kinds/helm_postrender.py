"""helm's post-renderer for HelmReleases: Flux's ``postRenderers``, ``commonMetadata`` and
helm-controller's owner labels, in that order.

helm runs this file (``--post-renderer=<python> --post-renderer-args=-I …``) with the
rendered manifests on stdin (not the hooks: Helm 3 never post-renders them) and installs what
it prints. The one argument is a JSON file (written 0600 in the call's private directory):

- ``steps``: each ``postRenderers[].kustomize`` item, applied in order by the pinned
  ``kustomize`` (``kustomize`` is its path) on a private directory holding only the objects
  and a kustomization with the item's inline ``patches`` and ``images`` (nothing is fetched);
- ``labels`` / ``annotations``: ``commonMetadata``, set on every object (existing keys
  replaced);
- ``owner``: the labels ``helm.toolkit.fluxcd.io/name`` and ``…/namespace`` of the
  HelmRelease, set last, as Flux sets them: a change to any object of a release wakes the
  release (drift detection) and ``kubectl get -l`` finds them;
- ``max_bytes``, ``timeout``: bounds of the input and of each kustomize run.

Manifests are read with gitsail's bounded Kubernetes YAML loader. It runs as helm's child:
same session, address-space limit and deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["NAMESPACE_LABEL", "NAME_LABEL", "main", "post_render"]

NAME_LABEL = "helm.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"


class PostRenderError(Exception):
    pass


def _kustomize(objects: list[Any], step: dict[str, Any], config: dict[str, Any]) -> list[Any]:
    from gitsail.policy import Policy
    from gitsail.render import dump_yaml, load_manifests

    with tempfile.TemporaryDirectory(prefix="post-render-") as tmp:
        root = Path(tmp)
        (root / "resources.yaml").write_text(dump_yaml(objects) if objects else "")
        kustomization: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["resources.yaml"],
        }
        if step.get("patches"):
            kustomization["patches"] = step["patches"]
        if step.get("images"):
            kustomization["images"] = step["images"]
        (root / "kustomization.yaml").write_text(json.dumps(kustomization))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tmp,
            "GIT_TERMINAL_PROMPT": "0",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
        }
        try:
            done = subprocess.run(
                [str(config["kustomize"]), "build", str(root)],
                capture_output=True,
                env=env,
                timeout=float(config.get("timeout", 60)),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PostRenderError("kustomize timed out") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").replace(tmp, "<post-render>")
            raise PostRenderError(f"kustomize: {message.strip()[-2000:]}")
        limit = int(config["max_bytes"])
        if len(done.stdout) > limit:
            raise PostRenderError(f"kustomize output is over {limit} bytes")
        policy = Policy(render_output_bytes=limit)
        return load_manifests(done.stdout.decode("utf-8"), source="kustomize", policy=policy)


def post_render(text: str, config: dict[str, Any]) -> str:
    from gitsail.policy import Policy
    from gitsail.render import dump_yaml, load_manifests

    policy = Policy(render_output_bytes=int(config["max_bytes"]))
    objects: list[Any] = load_manifests(text, source="helm output", policy=policy)
    for step in config.get("steps") or []:
        objects = _kustomize(objects, step, config)
    for field, key in (("labels", "labels"), ("annotations", "annotations"), ("labels", "owner")):
        values = config.get(key) or {}
        if not values:
            continue
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            current = meta.get(field)
            meta[field] = {**(current if isinstance(current, dict) else {}), **values}
    return dump_yaml(objects) if objects else ""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: helm_postrender.py CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = json.loads(Path(argv[0]).read_text())
        limit = int(config["max_bytes"])
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise PostRenderError(f"helm's output is over {limit} bytes")
        sys.stdout.write(post_render(data.decode("utf-8"), config))
    except Exception as exc:  # helm shows the message; there is nothing else to do
        print(f"post-renderer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
