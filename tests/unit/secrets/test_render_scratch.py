"""``Renderer.render(scratch=...)``: the render's temporary copy is made in the given private
workspace instead of the renderer's work directory, and the workspace's paths are made
repository-relative in errors (as work_dir paths are). Runs the pinned kustomize."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from gitsail.model import Artifact
from gitsail.render import Renderer, RenderError, RenderOptions, _renderer


def artifact(root: Path) -> Artifact:
    return Artifact("https://git.example/r.git", "c0ffee", "HEAD", root, "app", "")


async def test_a_scratch_render_copies_into_the_scratch_and_scrubs_its_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app/kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (root / "app/cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    scratch = tmp_path / "private"
    scratch.mkdir(mode=0o700)
    renderer = Renderer(work_dir=tmp_path / "work")
    copies: list[Path] = []
    real_copy = _renderer.copy_artifact

    def recording_copy(src: Path, dest: Path, only: Sequence[Path] | None = None) -> None:
        copies.append(dest)
        real_copy(src, dest, only)

    monkeypatch.setattr(_renderer, "copy_artifact", recording_copy)
    rendered = await renderer.render(artifact(root), RenderOptions(), scratch=scratch)
    assert rendered.manifests[0]["metadata"]["name"] == "a"
    [copy] = copies
    assert scratch in copy.parents  # not under the renderer's work directory

    (root / "app/kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RenderError) as err:
        await renderer.render(artifact(root), RenderOptions(), scratch=scratch)
    message = str(err.value)
    assert "missing.yaml" in message
    assert str(scratch) not in message
    assert "render-" not in message
    assert list(scratch.iterdir()) == []  # the render's copy is removed
    assert not any((tmp_path / "work").glob("render-*"))
