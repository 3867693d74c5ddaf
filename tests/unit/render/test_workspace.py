"""Private copies of an artifact: writable, without .git, never a way out of the repository."""

from __future__ import annotations

from pathlib import Path

from gitsail.render._workspace import copy_artifact


def test_copy_leaves_out_git_and_links_that_escape_and_rewrites_absolute_links(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref")
    (root / "base").mkdir()
    (root / "base" / "a.yaml").write_text("a")
    (root / "base" / "a.yaml").chmod(0o444)
    (tmp_path / "secret").write_text("s")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "relative").symlink_to("base/a.yaml")
    (root / "absolute").symlink_to(root / "base")

    dest = tmp_path / "copy"
    copy_artifact(root, dest)

    assert not (dest / ".git").exists()
    assert not (dest / "escape").exists()
    assert (dest / "relative").read_text() == "a"
    assert (dest / "absolute").resolve() == (dest / "base").resolve()
    (dest / "base" / "a.yaml").write_text("changed")  # the copy is writable
    assert (root / "base" / "a.yaml").read_text() == "a"
