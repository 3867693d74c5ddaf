"""helm's post-renderer for HelmReleases: helm-controller's owner labels on every object.

helm runs this file (``--post-renderer=<python> --post-renderer-args=-I …``) with the
rendered manifests (not the hooks: Helm 3 never post-renders them) on stdin, and installs
what it prints. Every object gets the labels ``helm.toolkit.fluxcd.io/name`` and
``helm.toolkit.fluxcd.io/namespace`` of its HelmRelease, as Flux sets them, so a change to
any object of a release wakes the release (drift detection) and ``kubectl get -l`` finds them.

Arguments: ``NAME NAMESPACE MAX_BYTES``. The input is read up to ``MAX_BYTES`` and parsed with
gitsail's bounded Kubernetes YAML loader; output is YAML. It runs as helm's child: same
session, address-space limit and deadline.
"""

from __future__ import annotations

import sys

__all__ = ["add_labels", "main"]

NAME_LABEL = "helm.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"


def add_labels(text: str, name: str, namespace: str, max_bytes: int) -> str:
    from gitsail.policy import Policy
    from gitsail.render import dump_yaml, load_manifests

    objects = load_manifests(
        text, source="helm output", policy=Policy(render_output_bytes=max_bytes)
    )
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels[NAME_LABEL] = name
        labels[NAMESPACE_LABEL] = namespace
    return dump_yaml(objects) if objects else ""


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: helm_postrender.py NAME NAMESPACE MAX_BYTES", file=sys.stderr)
        return 2
    name, namespace, limit = argv[0], argv[1], int(argv[2])
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        print(f"post-renderer: helm's output is over {limit} bytes", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(add_labels(data.decode("utf-8"), name, namespace, limit))
    except Exception as exc:
        print(f"post-renderer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
