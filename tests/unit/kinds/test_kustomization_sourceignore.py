"""Flux's ignore rules for a GitRepository's checkout (``.gitignore`` format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.kinds.flux_sourceignore import included_files, parse_rules


def tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return root


def names(root: Path, ignore: str | None = None) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in included_files(root, ignore))


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.png", "a/b/logo.png", False, True),
        ("*.png", "a/b/logo.pngx", False, False),
        ("/top.yaml", "top.yaml", False, True),
        ("/top.yaml", "sub/top.yaml", False, False),
        ("docs/", "docs", True, True),
        ("docs/", "docs", False, False),
        ("a/*.yaml", "a/x.yaml", False, True),
        ("a/*.yaml", "a/b/x.yaml", False, False),
        ("a/**/x.yaml", "a/b/c/x.yaml", False, True),
        ("**/.flux.yaml", "deep/er/.flux.yaml", False, True),
        ("file?.txt", "file1.txt", False, True),
        ("file[0-9].txt", "filex.txt", False, False),
    ],
)
def test_gitignore_patterns_match_as_git_does(
    pattern: str, path: str, is_dir: bool, ignored: bool
) -> None:
    rules = parse_rules(pattern)
    assert any(rule.matches(path, is_dir) for rule in rules) is ignored


def test_default_exclusions_and_vcs_files_are_left_out(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        [
            "apps/a.yaml",
            "apps/logo.png",
            ".github/workflows/ci.yaml",
            ".gitignore",
            "apps/.sops.yaml",
            ".git/config",
        ],
    )
    assert names(root) == ["apps/a.yaml"]


def test_spec_ignore_replaces_the_defaults_but_not_the_vcs_rules(tmp_path: Path) -> None:
    root = tree(tmp_path, ["apps/a.yaml", "apps/logo.png", "drafts/x.yaml", ".git/config"])
    assert names(root, "/drafts/\n") == ["apps/a.yaml", "apps/logo.png"]


def test_sourceignore_files_apply_below_their_directory(tmp_path: Path) -> None:
    root = tree(tmp_path, ["apps/values.yaml", "apps/a.yaml", "other/values.yaml"])
    (root / "apps" / ".sourceignore").write_text("# comment\nvalues.yaml\n")
    assert names(root) == ["apps/.sourceignore", "apps/a.yaml", "other/values.yaml"]


def test_spec_ignore_can_reinclude_what_a_sourceignore_excluded(tmp_path: Path) -> None:
    root = tree(tmp_path, ["apps/values.yaml", "apps/a.yaml"])
    (root / "apps" / ".sourceignore").write_text("values.yaml\n")
    assert "apps/values.yaml" in names(root, "!values.yaml\n")


def test_a_file_below_an_ignored_directory_cannot_be_reincluded(tmp_path: Path) -> None:
    root = tree(tmp_path, ["drafts/keep.yaml", "apps/a.yaml"])
    assert names(root, "drafts/\n!drafts/keep.yaml\n") == ["apps/a.yaml"]
