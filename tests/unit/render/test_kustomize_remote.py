"""Remote kustomize references are refused before kustomize runs; local ones pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.render import RenderError
from gitsail.render._kustomize import refuse_remote_references


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


LOCAL = {
    "base/kustomization.yaml": "resources: [cm.yaml]\n",
    "base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    "base/patch.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    "base/app.env": "A=1\n",
}


def test_local_overlays_bases_patches_and_inline_entries_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **LOCAL,
            "overlay/kustomization.yaml": (
                "resources: [../base]\n"
                "patches:\n- path: ../base/patch.yaml\n- patch: |-\n    - op: add\n"
                "patchesStrategicMerge:\n- |-\n  apiVersion: v1\n  kind: ConfigMap\n"
                "configMapGenerator:\n- name: g\n  files: [k=../base/app.env]\n"
                "  envs: [../base/app.env]\n"
                "labels: [{pairs: {home: 'https://example.com/x'}}]\n"
            ),
        },
    )
    refuse_remote_references(root / "overlay", root)


@pytest.mark.parametrize(
    "ref",
    [
        "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1",
        "git::https://github.com/org/repo//deploy?ref=main",
        "github.com/org/repo/deploy?ref=v1",
        "git@github.com:org/repo.git//deploy",
        "ssh://git@github.com/org/repo.git",
        "file:///var/cache/gitsail/source/repos/abc.git",
        "https://raw.githubusercontent.com/org/repo/main/all.yaml",
    ],
)
def test_remote_resources_are_refused(tmp_path: Path, ref: str) -> None:
    root = _tree(tmp_path, {**LOCAL, "app/kustomization.yaml": f"resources:\n- {ref}\n"})
    with pytest.raises(RenderError, match="remote reference") as caught:
        refuse_remote_references(root / "app", root)
    assert "app/kustomization.yaml" in str(caught.value)


@pytest.mark.parametrize(
    "kustomization",
    [
        "components: [https://example.com/c.git//x]\n",
        "bases: [git::https://example.com/r.git]\n",
        "patches:\n- path: https://example.com/p.yaml\n",
        "patchesStrategicMerge: [https://example.com/p.yaml]\n",
        "crds: [https://example.com/crd.yaml]\n",
        "openapi: {path: https://example.com/schema.json}\n",
        "configMapGenerator:\n- name: x\n  files: [key=https://example.com/f]\n",
        "transformers: [https://example.com/t.yaml]\n",
    ],
)
def test_every_field_kustomize_may_fetch_is_checked(tmp_path: Path, kustomization: str) -> None:
    root = _tree(tmp_path, {"app/kustomization.yaml": kustomization})
    with pytest.raises(RenderError, match="remote reference"):
        refuse_remote_references(root / "app", root)


def test_a_remote_base_behind_a_local_overlay_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "overlay/kustomization.yaml": "resources: [../base]\n",
            "base/kustomization.yaml": "resources: [github.com/org/repo//x?ref=v1]\n",
        },
    )
    with pytest.raises(RenderError, match=r"base/kustomization.yaml: resources entry"):
        refuse_remote_references(root / "overlay", root)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resources: [a\n", "cannot check it"),
        ("--- {}\n--- {}\n", "cannot check it"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_a_kustomization_that_cannot_be_read_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    root = _tree(tmp_path, {"app/kustomization.yaml": text})
    with pytest.raises(RenderError, match=message):
        refuse_remote_references(root / "app", root)
    (root / "app/kustomization.yaml").write_bytes(b"resources: [\xff]\n")
    with pytest.raises(RenderError, match="not UTF-8"):
        refuse_remote_references(root / "app", root)


def test_unknown_tags_do_not_hide_a_remote_base(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {"app/kustomization.yaml": "namePrefix: !foo x\nresources: [!bar 'file:///srv/r.git']\n"},
    )
    with pytest.raises(RenderError, match="remote reference"):
        refuse_remote_references(root / "app", root)


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join(levels) + "\nresources: [cm.yaml]\n"
    root = _tree(tmp_path, {"app/kustomization.yaml": text, "app/cm.yaml": "{}\n"})
    with pytest.raises(RenderError, match="alias bomb"):  # from the node graph, at once
        refuse_remote_references(root / "app", root)


@pytest.mark.parametrize("ref", ["gh:org/repo//x", "me@git.example.com:org/repo", "x?ref=v1"])
def test_shorthand_and_scp_like_remotes_are_refused(tmp_path: Path, ref: str) -> None:
    root = _tree(tmp_path, {"app/kustomization.yaml": f"resources: ['{ref}']\n"})
    with pytest.raises(RenderError, match="remote reference"):
        refuse_remote_references(root / "app", root)


def test_a_missing_local_path_is_left_for_kustomize_to_report(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"app/kustomization.yaml": "resources: [../base/nope, nope.yaml]\n"})
    refuse_remote_references(root / "app", root)
