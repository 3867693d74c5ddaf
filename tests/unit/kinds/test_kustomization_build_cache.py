"""The Flux build with a BuildCache: a build whose inputs did not change is reused (no
fetch, no copy, no kustomize), any changed input builds again, and a build copies only the
files it reads. The source, the Git fetch and the renderer are in-memory fakes; the
workspace and the ignore rules are real."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds import parse_kustomization
from gitsail.kinds.flux_kustomization_build import (
    BUILD_FAILED,
    Build,
    BuildCache,
    build,
    objects_digest,
)
from gitsail.kinds.status import Stalled
from gitsail.model import Artifact, Obj
from gitsail.render import Rendered, RenderOptions

SHA = "a" * 40
OTHER = "b" * 40


class FakeKube:
    def __init__(self, *objects: Obj) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.gets = 0
        for obj in objects:
            self.put(obj)

    def put(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        self.gets += 1
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None


class FakeGit:
    """Every commit is the same local tree ``root``; counts fetches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fetches: list[tuple[str, str]] = []

    async def fetch(self, url: str, sha: str, path: str, creds: object = None) -> Artifact:
        self.fetches.append((sha, path))
        return Artifact(url=url, revision=sha, requested=sha, root=self.root, path=path, digest="")


class FakeRenderer:
    """Records the files each render saw in its workspace; emits one ConfigMap per YAML
    file listed in the kustomization (its name from the file)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.seen: list[list[str]] = []

    async def render(
        self, artifact: Artifact, options: RenderOptions, scratch: Path | None = None
    ) -> Rendered:
        root = artifact.root
        self.seen.append(sorted(p.relative_to(root).as_posix() for p in root.rglob("*")))
        objects = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "apps"},
                "data": {"value": "${value:=none}"},
            }
        ]
        return Rendered(manifests=tuple(objects), tool="kustomize", key="")


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    write(
        root,
        {
            "apps/a/cm.yaml": CM.format("a"),
            "apps/a/nested/kustomization.yaml": "resources:\n- ../../../base/extra.yaml\n",
            "apps/b/cm.yaml": CM.format("b"),
            "apps/c/kustomization.yaml": "resources:\n- ../../base\n",
            "base/kustomization.yaml": "resources:\n- cm.yaml\n",
            "base/cm.yaml": CM.format("base"),
            "base/extra.yaml": CM.format("extra"),
            "base/unused.yaml": CM.format("unused"),
            "docs/big.txt": "x" * 1000,
            "apps/a/skip.zip": "not in the artifact (default ignore rules)",
        },
    )
    return root


def git_repository(revision: str = f"main@sha1:{SHA}", **spec: Any) -> Obj:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "repo", "namespace": "flux"},
        "spec": {"interval": "1m", "url": "https://git.example/repo.git", **spec},
        "status": {"artifact": {"revision": revision}},
    }


def kustomization(path: str = "./apps/a", **spec: Any) -> Obj:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux", "generation": 1},
        "spec": {
            "interval": "1m",
            "prune": True,
            "path": path,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **spec,
        },
    }


def configmap(name: str, value: str, rv: str = "1") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "flux", "resourceVersion": rv},
        "data": {"value": value},
    }


class Setup:
    def __init__(self, tmp_path: Path, repo: Path, *objects: Obj) -> None:
        self.kube = FakeKube(git_repository(), *objects)
        self.git = FakeGit(repo)
        self.renderer = FakeRenderer(tmp_path / "work")
        self.renderer.work_dir.mkdir()
        self.cache = BuildCache()

    async def build(self, obj: Obj) -> Build:
        return await build(
            self.kube,  # type: ignore[arg-type]
            parse_kustomization(obj),
            git=self.git,  # type: ignore[arg-type]
            renderer=self.renderer,  # type: ignore[arg-type]
            cache=self.cache,
        )


async def test_an_unchanged_pass_reuses_the_build_without_fetch_copy_or_render(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo)
    first = await s.build(kustomization())
    second = await s.build(kustomization())
    assert len(s.git.fetches) == 1
    assert len(s.renderer.seen) == 1
    assert second.objects == first.objects
    assert second.reused
    assert not first.reused
    assert second.digest == first.digest == objects_digest(first.objects)
    assert s.cache.hits == 1


async def test_a_new_revision_a_changed_spec_or_ignore_rule_builds_again(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo)
    await s.build(kustomization())
    s.kube.put(git_repository(f"main@sha1:{OTHER}"))
    await s.build(kustomization())
    assert [sha for sha, _ in s.git.fetches] == [SHA, OTHER]
    await s.build(kustomization(targetNamespace="other"))
    assert len(s.renderer.seen) == 3
    s.kube.put(git_repository(f"main@sha1:{OTHER}", ignore="*.txt\n"))
    await s.build(kustomization(targetNamespace="other"))
    assert len(s.renderer.seen) == 4
    await s.build(kustomization(targetNamespace="other"))
    assert len(s.renderer.seen) == 4  # and then reused


async def test_changed_substitution_values_build_again_and_equal_values_do_not(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo, configmap("vars", "one"))
    spec = {"postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}}
    first = await s.build(kustomization(**spec))
    assert first.objects[0]["data"] == {"value": "one"}
    s.kube.put(configmap("vars", "one", rv="2"))  # written again, same values: reused
    assert (await s.build(kustomization(**spec))).reused
    s.kube.put(configmap("vars", "two", rv="3"))
    second = await s.build(kustomization(**spec))
    assert second.objects[0]["data"] == {"value": "two"}
    assert not second.reused
    assert len(s.renderer.seen) == 2


async def test_a_missing_substitution_source_fails_even_after_a_cached_build(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo, configmap("vars", "one"))
    spec = {"postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}}
    await s.build(kustomization(**spec))
    del s.kube.objects[("ConfigMap", "flux", "vars")]
    with pytest.raises(Exception, match="not found"):
        await s.build(kustomization(**spec))


async def test_a_generated_build_copies_its_directory_and_what_nested_kustomizations_read(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo)
    await s.build(kustomization("./apps/a"))
    files = [f for f in s.renderer.seen[0] if "." in f.rpartition("/")[2]]
    # apps/b, docs/, base's unused files and the ignored archive are not copied.
    assert files == [
        "apps/a/cm.yaml",
        "apps/a/kustomization.yaml",  # generated in the private copy
        "apps/a/nested/kustomization.yaml",
        "base/extra.yaml",
    ]


async def test_a_kustomization_copies_only_what_it_references(tmp_path: Path, repo: Path) -> None:
    s = Setup(tmp_path, repo)
    await s.build(kustomization("./apps/c"))
    files = [f for f in s.renderer.seen[0] if "." in f.rpartition("/")[2]]
    assert files == ["apps/c/kustomization.yaml", "base/cm.yaml", "base/kustomization.yaml"]


async def test_an_ignored_file_is_not_copied_even_when_referenced(
    tmp_path: Path, repo: Path
) -> None:
    s = Setup(tmp_path, repo)
    s.kube.put(git_repository(ignore="base/cm.yaml\n"))
    await s.build(kustomization("./apps/c"))
    assert "base/cm.yaml" not in s.renderer.seen[0]


async def test_a_reference_outside_the_repository_is_refused(tmp_path: Path, repo: Path) -> None:
    write(repo, {"apps/evil/kustomization.yaml": "resources:\n- ../../../outside.yaml\n"})
    write(tmp_path, {"outside.yaml": CM.format("host")})
    s = Setup(tmp_path, repo)
    with pytest.raises(Stalled) as caught:
        await s.build(kustomization("./apps/evil"))
    assert caught.value.reason == BUILD_FAILED
    assert s.renderer.seen == []


async def test_a_symbolic_link_brings_its_target_inside_the_checkout(
    tmp_path: Path, repo: Path
) -> None:
    (repo / "apps" / "linked").mkdir()
    (repo / "apps" / "linked" / "shared").symlink_to("../../base")
    (repo / "apps" / "linked" / "kustomization.yaml").write_text("resources:\n- shared\n")
    s = Setup(tmp_path, repo)
    await s.build(kustomization("./apps/linked"))
    assert {"base/cm.yaml", "base/kustomization.yaml"} <= set(s.renderer.seen[0])


def one_build(size: int) -> Build:
    return Build(revision="r", objects=({"x": "y" * size},), digest="d")


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = BuildCache(max_entries=2, max_bytes=100)
    cache.put(("ns", "a"), "k", one_build(1), 10)
    cache.put(("ns", "b"), "k", one_build(1), 10)
    assert cache.get(("ns", "a"), "k") is not None  # a is now the most recent
    cache.put(("ns", "c"), "k", one_build(1), 10)
    assert cache.get(("ns", "b"), "k") is None
    assert len(cache) == 2
    cache.put(("ns", "d"), "k", one_build(1), 95)  # over the bytes: the oldest go
    assert len(cache) == 1
    assert cache.get(("ns", "d"), "k") is not None
    cache.put(("ns", "e"), "k", one_build(1), 101)  # larger than the bound: not kept
    assert cache.get(("ns", "e"), "k") is None
    assert cache.get(("ns", "d"), "other-key") is None  # another key is a miss


def test_one_entry_per_kustomization_and_forget() -> None:
    cache = BuildCache()
    cache.put(("ns", "a"), "k1", one_build(1), 10)
    cache.put(("ns", "a"), "k2", one_build(1), 10)
    assert len(cache) == 1
    assert cache.get(("ns", "a"), "k1") is None
    cache.forget(("ns", "a"))
    assert len(cache) == 0
