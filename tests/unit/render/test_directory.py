"""Plain directories: Argo CD's recurse/include/exclude rules and a stable file order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.render import DirectoryOptions, RenderError
from gitsail.render._directory import glob_match, manifest_files, render_directory


def _cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "sub" / "deeper").mkdir(parents=True)
    (app / "b.yaml").write_text(_cm("b"))
    (app / "a.yml").write_text(_cm("a"))
    (app / "c.json").write_text(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}'
    )
    (app / "README.md").write_text("not a manifest")
    (app / "sub" / "d.yaml").write_text(_cm("d"))
    (app / "sub" / "deeper" / "e.yaml").write_text(_cm("e"))
    return tmp_path


def _names(repo: Path, **kw: object) -> list[str]:
    objs = render_directory(repo / "app", repo, DirectoryOptions(**kw))  # type: ignore[arg-type]
    return [o["metadata"]["name"] for o in objs]


def test_non_recursive_by_default_reads_yaml_yml_json_in_lexical_order(repo: Path) -> None:
    assert _names(repo) == ["a", "b", "c"]


def test_recurse_walks_subdirectories_in_walk_order(repo: Path) -> None:
    assert _names(repo, recurse=True) == ["a", "b", "c", "d", "e"]


def test_include_and_exclude_match_relative_paths_and_exclude_wins(repo: Path) -> None:
    assert _names(repo, recurse=True, include="*.yaml") == ["b", "d", "e"]
    assert _names(repo, recurse=True, include="sub/*") == ["d", "e"]
    assert _names(repo, recurse=True, include="{a.yml,c.json}") == ["a", "c"]
    assert _names(repo, recurse=True, exclude="sub/deeper/*") == ["a", "b", "c", "d"]
    assert _names(repo, recurse=True, include="*.yaml", exclude="{b,sub/d}.yaml") == ["e"]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "sub/a.yaml", True),
        ("?.yaml", "a.yaml", True),
        ("?.yaml", "ab.yaml", False),
        ("[ab].yaml", "b.yaml", True),
        ("[!ab].yaml", "b.yaml", False),
        ("{config.json,deployment.yaml}", "deployment.yaml", True),
        ("{config.json,deployment.yaml}", "service.yaml", False),
        ("prod/{a,b{1,2}}.yaml", "prod/b2.yaml", True),
        ("a.yaml", "xa.yaml", False),
    ],
)
def test_glob_match(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches


def test_bad_glob_is_an_error() -> None:
    with pytest.raises(RenderError, match="bad glob"):
        glob_match("{a,b", "a")


def test_symlink_outside_the_repository_is_refused(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.yaml"
    outside.write_text(_cm("secret"))
    (repo / "app" / "z.yaml").symlink_to(outside)
    with pytest.raises(RenderError, match=r"z\.yaml is a symlink that points outside"):
        manifest_files(repo / "app", repo, DirectoryOptions())


def test_a_symlinked_directory_outside_the_repository_is_never_read(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.yaml").write_text(_cm("secret"))
    (repo / "app" / "linked").symlink_to(outside, target_is_directory=True)
    files = manifest_files(repo / "app", repo, DirectoryOptions(recurse=True))
    assert all("linked" not in f.parts for f in files)
    assert all(f.resolve().is_relative_to(repo.resolve()) for f in files)


def test_an_app_directory_that_is_a_symlink_outside_is_refused(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.yaml").write_text(_cm("secret"))
    (repo / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RenderError, match="app directory is a symlink that points outside"):
        manifest_files(repo / "escape", repo, DirectoryOptions())


def test_a_symlink_inside_the_repository_is_read(repo: Path) -> None:
    (repo / "shared.yaml").write_text(_cm("shared"))
    (repo / "app" / "link.yaml").symlink_to(repo / "shared.yaml")
    names = [f.name for f in manifest_files(repo / "app", repo, DirectoryOptions())]
    assert "link.yaml" in names


def test_bad_manifest_names_the_file_relative_to_the_repository(repo: Path) -> None:
    (repo / "app" / "bad.yaml").write_text("apiVersion: v1\nkind: A\n  x: : y\n")
    with pytest.raises(RenderError, match=r"app/bad\.yaml:3"):
        render_directory(repo / "app", repo, None)
