"""A kustomization for a directory that has none, generated the way Flux generates it.

Flux's kustomize-controller builds every ``Kustomization.spec.path`` with kustomize. When
the path holds no kustomization file (``kustomization.yaml``, ``kustomization.yml`` or
``Kustomization``), it writes one first, listing as ``resources``:

- every sub-directory (at any depth) that holds a kustomization file, as a directory (its
  own kustomization decides what it contains; the walk does not descend into it), and
- every other ``.yaml`` / ``.yml`` file below the path, which must decode as Kubernetes
  objects (``apiVersion`` and ``kind``): a file that does not is an error naming it, as in
  Flux, so a stray values file is excluded with the source's ignore rules, not silently.

Entries are relative to the path, in walk order (sorted names, top-down). Empty files and
files holding only comments are left out (they hold no object). Symbolic links are not
followed. The file is written into the caller's private copy, never into a shared checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gitsail.render._errors import RenderError
from gitsail.render._manifests import load_yaml_documents
from gitsail.render._options import KUSTOMIZATION_FILES

__all__ = ["generate_kustomization"]

_MANIFEST_SUFFIXES = (".yaml", ".yml")


def _has_kustomization(directory: Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def _objects_in(path: Path, shown: str) -> bool:
    """Whether ``path`` holds at least one object; RenderError if a document is not one."""
    try:
        docs = load_yaml_documents(path.read_text(encoding="utf-8"), source=shown)
    except UnicodeDecodeError:
        raise RenderError(f"failed to decode Kubernetes YAML from {shown}: not UTF-8") from None
    except OSError as err:
        raise RenderError(f"cannot read {shown}: {err.strerror}") from None
    found = False
    for _line, doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise RenderError(
                f"failed to decode Kubernetes YAML from {shown}: every document must be a "
                "Kubernetes object with apiVersion and kind (exclude other YAML files with "
                "the source's ignore rules: .sourceignore or spec.ignore)"
            )
        found = True
    return found


def generate_kustomization(directory: Path) -> bool:
    """Write ``kustomization.yaml`` into ``directory`` unless it has a kustomization file.

    Returns whether one was generated. Raises RenderError naming a file that is not
    Kubernetes YAML.
    """
    if _has_kustomization(directory):
        return False
    resources: list[str] = []
    for current, dirs, files in os.walk(directory):
        here = Path(current)
        dirs.sort()
        for name in list(dirs):
            sub = here / name
            if sub.is_symlink():
                dirs.remove(name)
            elif _has_kustomization(sub):
                resources.append(sub.relative_to(directory).as_posix())
                dirs.remove(name)  # its own kustomization decides what it contains
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not name.endswith(_MANIFEST_SUFFIXES):
                continue
            rel = path.relative_to(directory).as_posix()
            if _objects_in(path, rel):
                resources.append(rel)
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(body, sort_keys=False), encoding="utf-8"
    )
    return True
