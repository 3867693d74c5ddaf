"""The artifact store: deterministic archives, Flux's exclusion rules, bounds, retention."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from gitsail.policy import Policy
from gitsail.source.artifacts import ArtifactStore, IgnoreRules, Include
from gitsail.source.errors import InvalidSource

BASE = "http://gitsail-controller.gitsail.svc.cluster.local."


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def content(path: Path, name: str) -> str:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read().decode()


def store(tmp_path: Path, **policy: int) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", base_url=BASE, policy=Policy(**policy))  # type: ignore[arg-type]


def archive(s: ArtifactStore, tree: Path, ignore: str | None = None, name: str = "app"):  # type: ignore[no-untyped-def]
    rules = IgnoreRules.load(tree, ignore)
    return s.archive(
        "gitrepository", "flux-system", name, tree, revision="main@sha1:x", ignore=rules
    )


FILES = {"deploy/app.yaml": "kind: ConfigMap\n", "README.md": "hello\n", "bin/run.sh": "echo\n"}


def test_same_files_give_the_same_bytes_whatever_their_mtime_owner_or_order(
    tmp_path: Path,
) -> None:
    one = make_tree(tmp_path / "one", FILES)
    two = make_tree(tmp_path / "two", dict(reversed(list(FILES.items()))))
    os.utime(two / "README.md", (1, 1))
    (one / "bin/run.sh").chmod(0o700)
    (two / "bin/run.sh").chmod(0o755)
    first = archive(store(tmp_path / "a"), one)
    second = archive(store(tmp_path / "b"), two)
    assert first.digest == second.digest
    assert first.digest.startswith("sha256:")
    data = (tmp_path / "a" / "store" / first.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == first.digest.removeprefix("sha256:")
    assert first.size == len(data)


def test_archive_entries_are_sorted_and_normalized(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", FILES)
    (tree / "bin/run.sh").chmod(0o700)
    s = store(tmp_path)
    stored = archive(s, tree)
    path = s.root / stored.path
    entries = members(path)
    assert list(entries) == ["README.md", "bin/run.sh", "deploy/app.yaml"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in entries.values()} == {
        (0, 0, 0, "", "")
    }
    assert entries["bin/run.sh"].mode == 0o755
    assert entries["README.md"].mode == 0o644
    header = path.read_bytes()[:10]
    assert header[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    assert gzip.decompress(path.read_bytes())  # a valid gzip stream


def test_record_describes_the_file_as_flux_status_does(tmp_path: Path) -> None:
    s = store(tmp_path)
    stored = archive(s, make_tree(tmp_path / "t", FILES))
    hexdigest = stored.digest.removeprefix("sha256:")
    assert stored.path == f"gitrepository/flux-system/app/{hexdigest}.tar.gz"
    assert stored.url == f"{BASE}/{stored.path}"
    assert stored.to_status("2026-01-01T00:00:00Z") == {
        "digest": stored.digest,
        "lastUpdateTime": "2026-01-01T00:00:00Z",
        "path": stored.path,
        "revision": "main@sha1:x",
        "size": stored.size,
        "url": stored.url,
    }
    assert s.exists(stored.path)


def test_different_content_gives_a_different_digest(tmp_path: Path) -> None:
    s = store(tmp_path)
    tree = make_tree(tmp_path / "t", FILES)
    first = archive(s, tree)
    (tree / "README.md").write_text("changed\n")
    assert archive(s, tree).digest != first.digest


def test_default_exclusions_leave_out_git_ci_and_binary_files(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path / "t",
        {
            **FILES,
            ".github/workflows/ci.yml": "on: push\n",
            ".gitignore": "x\n",
            "docs/logo.png": "png",
            "sub/.sops.yaml": "creation_rules: []\n",
            "release.tar.gz": "gz",
            ".git/config": "[core]\n",
        },
    )
    s = store(tmp_path)
    assert set(members(s.root / archive(s, tree).path)) == set(FILES)


def test_sourceignore_is_anchored_at_its_directory_and_may_overrule_defaults(
    tmp_path: Path,
) -> None:
    tree = make_tree(
        tmp_path / "t",
        {
            **FILES,
            ".sourceignore": "README.md\n!docs/logo.png\n",
            "docs/logo.png": "png",
            "deploy/.sourceignore": "*.txt\n/local.yaml\n",
            "deploy/notes.txt": "n",
            "deploy/deep/notes.txt": "n",
            "deploy/local.yaml": "l",
            "deploy/deep/local.yaml": "kept: only the directory's own local.yaml is anchored",
            "notes.txt": "outside deploy/, not excluded",
        },
    )
    s = store(tmp_path)
    names = set(members(s.root / archive(s, tree).path))
    assert names == {
        "bin/run.sh",
        "deploy/app.yaml",
        "docs/logo.png",
        "deploy/.sourceignore",
        ".sourceignore",
        "deploy/deep/local.yaml",
        "notes.txt",
    }


def test_spec_ignore_replaces_the_defaults_and_comes_last(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path / "t",
        {**FILES, "deploy/notes.md": "n", "deploy/x/more.md": "m", ".sourceignore": "deploy/\n"},
    )
    # The documented example: exclude all, include deploy/, exclude its markdown.
    rules = "# exclude all\n/*\n# include deploy dir\n!/deploy\n/deploy/**/*.md\n"
    s = store(tmp_path)
    assert set(members(s.root / archive(s, tree, ignore=rules).path)) == {"deploy/app.yaml"}
    github = make_tree(tmp_path / "g", {**FILES, ".github/ci.yml": "on: push\n"})
    assert ".github/ci.yml" in members(s.root / archive(s, github, ignore="", name="g").path)


def test_rules_are_gitignore_rules_where_the_last_match_decides() -> None:
    rules = IgnoreRules(["*.yaml", "!keep.yaml", "deploy/"])
    assert rules.ignored("a.yaml")
    assert not rules.ignored("x/keep.yaml")
    assert rules.ignored("deploy/keep.yaml")
    assert not rules.ignored("README.md")


def test_only_the_newest_archives_are_kept(tmp_path: Path) -> None:
    s = store(tmp_path, artifacts_kept=2)
    tree = make_tree(tmp_path / "t", FILES)
    stored = []
    for i in range(3):
        (tree / "README.md").write_text(f"v{i}\n")
        stored.append(archive(s, tree))
        os.utime(s.root / stored[-1].path, (i + 1, i + 1))
    assert archive(s, tree) == stored[2]  # the same content again: the same file
    assert not s.exists(stored[0].path)
    assert s.exists(stored[1].path)
    assert s.exists(stored[2].path)


def test_a_source_over_the_bounds_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", FILES)
    with pytest.raises(InvalidSource, match="GITSAIL_ARTIFACT_FILES"):
        archive(store(tmp_path / "f", artifact_files=2), tree)
    with pytest.raises(InvalidSource, match="GITSAIL_ARTIFACT_BYTES"):
        archive(store(tmp_path / "b", artifact_bytes=10), tree)
    assert not (tmp_path / "f" / "store").exists()
    assert not (tmp_path / "b" / "store").exists()


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "filename"),
    [
        ("gitrepository", "..", "app", "a" * 64 + ".tar.gz"),
        ("gitrepository", "ns", "app", "../../etc/passwd"),
        ("gitrepository", "ns", "app", "a" * 63 + ".tar.gz"),
        ("gitrepository", "ns", "App", "a" * 64 + ".tar.gz"),
        ("Git/../x", "ns", "app", "a" * 64 + ".tar.gz"),
        ("gitrepository", "ns", "app", "a" * 64 + ".tar.gz"),  # well-formed, absent
    ],
)
def test_file_is_none_for_anything_but_an_existing_archive(
    tmp_path: Path, kind: str, namespace: str, name: str, filename: str
) -> None:
    assert store(tmp_path).file(kind, namespace, name, filename) is None


def test_a_symlinked_archive_is_never_served(tmp_path: Path) -> None:
    s = store(tmp_path)
    directory = s.object_dir("gitrepository", "ns", "app")
    directory.mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (directory / ("a" * 64 + ".tar.gz")).symlink_to(tmp_path / "secret")
    assert s.file("gitrepository", "ns", "app", "a" * 64 + ".tar.gz") is None


def test_includes_copy_from_path_of_another_artifact_to_path(tmp_path: Path) -> None:
    s = store(tmp_path)
    other = archive(
        s,
        make_tree(tmp_path / "o", {"deploy/k8s/a.yaml": "a", "deploy/k8s/b/c.yaml": "c"}),
        name="other",
    )
    tree = make_tree(tmp_path / "t", FILES)
    rules = IgnoreRules.load(tree, None)
    stored = s.archive(
        "gitrepository",
        "flux-system",
        "app",
        tree,
        revision="main@sha1:x",
        ignore=rules,
        includes=[Include(s.root / other.path, "deploy/k8s", "base/app")],
    )
    path = s.root / stored.path
    assert set(members(path)) == {*FILES, "base/app/a.yaml", "base/app/b/c.yaml"}
    assert content(path, "base/app/b/c.yaml") == "c"


def test_remove_deletes_every_archive_of_the_object(tmp_path: Path) -> None:
    s = store(tmp_path)
    stored = archive(s, make_tree(tmp_path / "t", FILES))
    keep = archive(s, make_tree(tmp_path / "k", FILES), name="other")
    s.remove("gitrepository", "flux-system", "app")
    assert not s.exists(stored.path)
    assert not (s.root / "gitrepository/flux-system/app").exists()
    assert s.exists(keep.path)
    s.remove("gitrepository", "flux-system", "app")  # idempotent


def test_symlinks_inside_the_tree_are_kept_as_links(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", FILES)
    (tree / "link.yaml").symlink_to("deploy/app.yaml")
    (tree / "linked-dir").symlink_to("deploy")
    s = store(tmp_path)
    entries = members(s.root / archive(s, tree).path)
    assert entries["link.yaml"].issym()
    assert entries["link.yaml"].linkname == "deploy/app.yaml"
    assert entries["linked-dir"].issym()
    assert not any(n.startswith("linked-dir/") for n in entries)


def test_archive_is_readable_by_tarfile_extract(tmp_path: Path) -> None:
    s = store(tmp_path)
    stored = archive(s, make_tree(tmp_path / "t", FILES))
    data = (s.root / stored.path).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(tmp_path / "out", filter="data")
    assert (tmp_path / "out/deploy/app.yaml").read_text() == "kind: ConfigMap\n"


def test_absolute_links_become_relative_and_links_leaving_the_tree_are_left_out(
    tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path / "t", FILES)
    (tree / "abs.yaml").symlink_to(tree / "deploy/app.yaml")
    (tree / "escape").symlink_to(tmp_path)
    (tree / "deploy/up.yaml").symlink_to("../../outside.yaml")
    s = store(tmp_path)
    entries = members(s.root / archive(s, tree).path)
    assert entries["abs.yaml"].linkname == "deploy/app.yaml"
    assert "escape" not in entries
    assert "deploy/up.yaml" not in entries


def test_extract_unpacks_an_artifact_for_a_consumer_in_this_process(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", FILES)
    (tree / "link.yaml").symlink_to("deploy/app.yaml")
    s = store(tmp_path)
    stored = archive(s, tree)
    out = s.extract(stored.path, tmp_path / "out")
    assert (out / "deploy/app.yaml").read_text() == "kind: ConfigMap\n"
    assert (out / "link.yaml").read_text() == "kind: ConfigMap\n"
    with pytest.raises(InvalidSource, match="not in the store"):
        s.extract("gitrepository/flux-system/app/" + "0" * 64 + ".tar.gz", tmp_path / "x")
    small = ArtifactStore(s.root, base_url=BASE, policy=Policy(artifact_bytes=3))
    with pytest.raises(InvalidSource, match="GITSAIL_ARTIFACT_BYTES"):
        small.extract(stored.path, tmp_path / "y")


def test_put_file_stores_bytes_as_is_under_their_digest(tmp_path: Path) -> None:
    s = store(tmp_path, artifacts_kept=2)
    data = b"\x1f\x8b chart bytes"
    stored = s.put_file("helmchart", "ns", "redis", data, revision="17.3.2", suffix=".tgz")
    hexdigest = hashlib.sha256(data).hexdigest()
    assert stored.path == f"helmchart/ns/redis/{hexdigest}.tgz"
    assert stored.url == f"{BASE}/{stored.path}"
    assert stored.digest == f"sha256:{hexdigest}"
    assert (stored.revision, stored.size) == ("17.3.2", len(data))
    local = s.local_path(stored.path)
    assert local is not None
    assert local.read_bytes() == data
    assert s.put_file("helmchart", "ns", "redis", data, revision="17.3.2", suffix=".tgz") == stored
    os.utime(local, (1, 1))  # the oldest
    for i in range(2):
        s.put_file("helmchart", "ns", "redis", b"v%d" % i, revision=f"v{i}", suffix=".tgz")
    assert s.local_path(stored.path) is None  # only the newest two are kept


def test_put_file_refuses_a_strange_suffix_or_too_many_bytes(tmp_path: Path) -> None:
    with pytest.raises(InvalidSource, match="suffix"):
        store(tmp_path).put_file("helmchart", "ns", "a", b"x", revision="1", suffix="/../x")
    with pytest.raises(InvalidSource, match="GITSAIL_ARTIFACT_BYTES"):
        store(tmp_path, artifact_bytes=3).put_file(
            "helmchart", "ns", "a", b"four", revision="1", suffix=".tgz"
        )
    assert store(tmp_path).local_path("helmchart/ns/a") is None
