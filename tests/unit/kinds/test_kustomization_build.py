"""Pure parts of the Flux Kustomization build: revisions, kustomize edits, metadata, and
the kustomization Flux generates for a plain directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitsail.kinds import parse_kustomization
from gitsail.kinds.flux_kustomization_build import (
    commit_of,
    kustomize_options,
    set_common_metadata,
)
from gitsail.kinds.records import CommonMetadata
from gitsail.render import RenderError, generate_kustomization

SHA = "a" * 40


@pytest.mark.parametrize(
    ("revision", "sha"),
    [
        (f"main@sha1:{SHA}", SHA),
        (f"sha1:{SHA}", SHA),
        (f"refs/heads/feature/x@sha1:{SHA}", SHA),
        (f"main/{SHA}", SHA),  # v1beta2
        (SHA, SHA),
        ("main@sha1:abc", None),
        ("latest", None),
    ],
)
def test_commit_of_reads_flux_revisions(revision: str, sha: str | None) -> None:
    assert commit_of(revision) == sha


def kustomization(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system", "generation": 1},
        "spec": {
            "interval": "1m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **spec,
        },
    }


def test_kustomize_options_carry_flux_edits() -> None:
    ks = parse_kustomization(
        kustomization(
            targetNamespace="prod",
            namePrefix="p-",
            nameSuffix="-s",
            images=[
                {"name": "nginx", "newTag": "1.27"},
                {"name": "app", "newName": "registry.local/app", "digest": "sha256:" + "b" * 64},
                {"name": "untouched"},
            ],
            patches=[{"patch": "- op: remove\n  path: /x", "target": {"kind": "Deployment"}}],
            components=["../components/a"],
        )
    )
    options = kustomize_options(ks.render)
    assert options.namespace == "prod"
    assert (options.name_prefix, options.name_suffix) == ("p-", "-s")
    assert options.images == (
        "nginx=nginx:1.27",
        f"app=registry.local/app@sha256:{'b' * 64}",
    )
    assert options.patches == (
        {"patch": "- op: remove\n  path: /x", "target": {"kind": "Deployment"}},
    )
    assert options.components == ("../components/a",)


def test_common_metadata_overrides_keys_and_leaves_the_input_alone() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"team": "old", "x": "1"}}}
    out = set_common_metadata([obj], CommonMetadata(labels=(("team", "core"),)))
    assert out[0]["metadata"]["labels"] == {"team": "core", "x": "1"}
    assert obj["metadata"]["labels"]["team"] == "old"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"


def test_generated_kustomization_lists_manifests_and_kustomization_dirs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.yaml": CM,
            "nested/b.yml": CM,
            "nested/empty.yaml": "# nothing\n",
            "notes.txt": "x",
            "base/kustomization.yaml": "resources: [c.yaml]\n",
            "base/c.yaml": CM,
        },
    )
    assert generate_kustomization(tmp_path) is True
    body = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert body["resources"] == ["base", "a.yaml", "nested/b.yml"]  # walk order


def test_an_existing_kustomization_is_kept(tmp_path: Path) -> None:
    write(tmp_path, {"Kustomization": "resources: []\n", "a.yaml": CM})
    assert generate_kustomization(tmp_path) is False
    assert not (tmp_path / "kustomization.yaml").exists()


def test_yaml_that_is_not_a_kubernetes_object_is_an_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": CM, "values/prod.yaml": "replicas: 3\n"})
    with pytest.raises(RenderError, match=r"values/prod.yaml"):
        generate_kustomization(tmp_path)
