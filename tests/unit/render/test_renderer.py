"""The Renderer's cache, on plain directories (no subprocess needed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gitsail.model import Artifact
from gitsail.render import (
    HelmOptions,
    KustomizeOptions,
    Renderer,
    RenderError,
    RenderOptions,
    RenderStats,
    cache_key,
)


def _artifact(root: Path, digest: str = "sha256:aaa", path: str = "app") -> Artifact:
    return Artifact(
        url="https://git.example/repo.git",
        revision="abc123",
        requested="main",
        root=root,
        path=path,
        digest=digest,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
    )
    return tmp_path


def test_cache_key_is_stable_and_covers_every_input() -> None:
    opts = RenderOptions(app_name="a", kustomize=KustomizeOptions(name_prefix="p-"))
    base = cache_key("sha256:1", "kustomize", opts, tool_version="v5.8.1")
    assert base == cache_key("sha256:1", "kustomize", opts, tool_version="v5.8.1")
    assert len(base) == 64
    variants = {
        cache_key("sha256:2", "kustomize", opts, tool_version="v5.8.1"),
        cache_key("sha256:1", "directory", opts, tool_version="v5.8.1"),
        cache_key("sha256:1", "kustomize", opts, tool_version="v5.8.2"),
        cache_key(
            "sha256:1",
            "kustomize",
            RenderOptions(app_name="a", kustomize=KustomizeOptions(name_prefix="q-")),
            tool_version="v5.8.1",
        ),
    }
    assert base not in variants
    assert len(variants) == 4


def test_capabilities_only_count_for_helm_and_their_order_does_not() -> None:
    opts = RenderOptions(helm=HelmOptions())
    a = cache_key("d", "helm", opts, kube_version="v1.36.3", api_versions=["b/v1", "a/v1"])
    b = cache_key("d", "helm", opts, kube_version="v1.36.3", api_versions=["a/v1", "b/v1"])
    c = cache_key("d", "helm", opts, kube_version="v1.35.0", api_versions=["a/v1", "b/v1"])
    assert a == b != c
    k = RenderOptions()
    assert cache_key("d", "kustomize", k, kube_version="v1") == cache_key(
        "d", "kustomize", k, kube_version="v2"
    )


async def test_second_render_of_the_same_digest_is_a_cache_hit(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    first = await renderer.render(_artifact(repo), RenderOptions())
    (repo / "app" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    second = await renderer.render(_artifact(repo), RenderOptions())
    assert second.manifests == first.manifests  # same digest: the file is not read again
    assert second.key == first.key
    assert renderer.stats == RenderStats(hits=1, misses=1)
    third = await renderer.render(_artifact(repo, digest="sha256:bbb"), RenderOptions())
    assert third.manifests[0]["metadata"]["name"] == "b"
    assert renderer.stats == RenderStats(hits=1, misses=2)


async def test_cached_manifests_cannot_be_corrupted_by_a_caller(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    first = await renderer.render(_artifact(repo), RenderOptions())
    first.manifests[0]["data"]["k"] = "mutated"
    again = await renderer.render(_artifact(repo), RenderOptions())
    assert again.manifests[0]["data"]["k"] == "v"


async def test_artifact_without_digest_is_never_cached(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    await renderer.render(_artifact(repo, digest=""), RenderOptions())
    await renderer.render(_artifact(repo, digest=""), RenderOptions())
    assert renderer.stats == RenderStats(hits=0, misses=2)


async def test_lru_is_bounded(repo: Path) -> None:
    renderer = Renderer(cache_size=2, work_dir=repo / ".work")
    for digest in ("sha256:1", "sha256:2", "sha256:3", "sha256:1"):
        await renderer.render(_artifact(repo, digest=digest), RenderOptions())
    assert renderer.stats == RenderStats(hits=0, misses=4)


async def test_concurrent_renders_of_one_key_share_the_work(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    results = await asyncio.gather(
        *(renderer.render(_artifact(repo), RenderOptions()) for _ in range(5))
    )
    assert renderer.stats.misses == 1
    assert all(r.manifests == results[0].manifests for r in results)


async def test_errors_name_the_app_path_and_are_not_cached(repo: Path) -> None:
    (repo / "app" / "bad.yaml").write_text("kind: Thing\n")
    renderer = Renderer(work_dir=repo / ".work")
    with pytest.raises(RenderError, match=r"^app \(directory\): app/bad\.yaml: document 1"):
        await renderer.render(_artifact(repo), RenderOptions())
    with pytest.raises(RenderError):
        await renderer.render(_artifact(repo), RenderOptions())
    assert renderer.stats == RenderStats(hits=0, misses=2)


async def test_missing_app_path_is_an_error(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    with pytest.raises(RenderError, match="'nope' is not a directory in the repository"):
        await renderer.render(_artifact(repo, path="nope"), RenderOptions())


async def test_path_escaping_the_root_is_an_error(repo: Path) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    with pytest.raises(RenderError, match="not a directory in the repository"):
        await renderer.render(_artifact(repo / "app", path=".."), RenderOptions())


async def test_the_cache_is_bounded_by_the_bytes_of_its_text_too(repo: Path) -> None:
    one = len(
        json.dumps(
            (
                await Renderer(work_dir=repo / ".w").render(_artifact(repo), RenderOptions())
            ).manifests,
            separators=(",", ":"),
        )
    )
    renderer = Renderer(cache_bytes=2 * one, work_dir=repo / ".work")
    for digest in ("sha256:1", "sha256:2", "sha256:3", "sha256:2", "sha256:1"):
        await renderer.render(_artifact(repo, digest=digest), RenderOptions())
    # Two renders fit: 3 pushes out 1, the later 2 is a hit, the later 1 a miss again.
    assert renderer.stats == RenderStats(hits=1, misses=4)


async def test_a_cache_hit_does_not_look_at_the_directory_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = Renderer(work_dir=repo / ".work")
    first = await renderer.render(_artifact(repo), RenderOptions())

    def walked(*_a: object, **_kw: object) -> bool:
        raise AssertionError("the directory of a known digest is walked again")

    monkeypatch.setattr("gitsail.render._renderer.uses_jsonnet", walked)
    monkeypatch.setattr("gitsail.render._renderer.detect_tool", walked)
    again = await renderer.render(_artifact(repo), RenderOptions())
    assert again.manifests == first.manifests
    assert renderer.stats == RenderStats(hits=1, misses=1)
    # Another path (or digest) is looked at: a missing one is still an error.
    with pytest.raises(RenderError, match="not a directory"):
        await renderer.render(_artifact(repo, path="nope"), RenderOptions())
