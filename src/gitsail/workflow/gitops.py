"""The user's own git, run in their checkout: commit an edit, push it, open a branch.

These commands run where a developer or CI runs ``git`` by hand, with their configuration and
credentials (the controller's hardened git in ``gitsail.source`` is for fetching tenants'
repositories; here the repository is the user's). What is still enforced:

- argv lists only, never a shell; every value from the command line is checked before it is
  put in an argv: branch names by git's own ``check-ref-format`` on ``refs/heads/NAME`` (never
  the ``--branch`` form, which expands ``@{-1}``), remote names by a strict pattern, revisions
  by ``rev-parse --verify --end-of-options``; paths go after ``--``;
- nothing starting with ``-`` is accepted as a name, so no value can become an option;
- a timeout on every command; the error says which git command failed and git's last lines.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GitError",
    "Repo",
    "check_branch_name",
    "check_remote_name",
]

_TIMEOUT = 120.0
_REMOTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class GitError(RuntimeError):
    """A git command failed, or a name was refused before running one."""


def _run(
    argv: Sequence[str], cwd: Path, *, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full = dict(os.environ)
    full.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})})
    try:
        done = subprocess.run(
            ["git", *argv], cwd=cwd, capture_output=True, timeout=_TIMEOUT, env=full, check=False
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {argv[0]} took longer than {_TIMEOUT:.0f}s; stopped it") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if check and done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise GitError(f"git {argv[0]} failed: {tail}")
    return done


def check_branch_name(name: str, cwd: Path) -> str:
    """``name`` if git accepts it as a branch name; GitError otherwise."""
    if not name or name.startswith("-") or "@{" in name or any(ord(c) < 0x21 for c in name):
        raise GitError(f"{name!r} is not a valid branch name")
    if _run(["check-ref-format", f"refs/heads/{name}"], cwd, check=False).returncode != 0:
        raise GitError(f"{name!r} is not a valid branch name (git check-ref-format)")
    return name


def check_remote_name(name: str) -> str:
    if not _REMOTE.match(name):
        raise GitError(f"{name!r} is not a remote name (letters, digits, '.', '_', '-')")
    return name


@dataclass(frozen=True)
class Repo:
    """A git work tree (``root`` is its top level)."""

    root: Path

    @classmethod
    def at(cls, path: Path) -> Repo:
        """The work tree that contains ``path``."""
        start = path if path.is_dir() else path.parent
        done = _run(["rev-parse", "--show-toplevel"], start.resolve(), check=False)
        if done.returncode != 0:
            raise GitError(f"{path} is not inside a git checkout")
        return cls(Path(done.stdout.decode().strip()).resolve())

    def git(self, *argv: str) -> str:
        return _run(argv, self.root).stdout.decode(errors="replace")

    def resolve(self, revision: str) -> str:
        """The commit a revision names (validated by git, never read as an option)."""
        if not revision or revision.startswith("-") or any(ord(c) < 0x20 for c in revision):
            raise GitError(f"{revision!r} is not a revision")
        done = _run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"],
            self.root,
            check=False,
        )
        if done.returncode != 0:
            raise GitError(f"{revision!r} does not name a commit in {self.root}")
        return done.stdout.decode().strip()

    def current_branch(self) -> str:
        done = _run(["symbolic-ref", "--quiet", "--short", "HEAD"], self.root, check=False)
        if done.returncode != 0:
            raise GitError("HEAD is detached; give --branch NAME to commit on a branch")
        return done.stdout.decode().strip()

    def dirty(self, paths: Sequence[Path]) -> list[str]:
        """Paths among ``paths`` with changes not yet committed."""
        rel = [self.relative(p) for p in paths]
        out = self.git("status", "--porcelain", "--", *rel)
        return [line[3:] for line in out.splitlines() if line.strip()]

    def relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise GitError(f"{path} is outside the checkout {self.root}") from None

    def branch_exists(self, name: str) -> bool:
        check_branch_name(name, self.root)
        done = _run(
            ["show-ref", "--verify", "--quiet", f"refs/heads/{name}"], self.root, check=False
        )
        return done.returncode == 0

    def switch_new(self, name: str) -> None:
        check_branch_name(name, self.root)
        if self.branch_exists(name):
            raise GitError(f"branch {name!r} exists already; choose another --branch")
        self.git("switch", "--quiet", "-c", name)

    def commit(self, paths: Sequence[Path], message: str) -> str:
        """Commit exactly ``paths`` (nothing else staged is included); the new commit."""
        rel = [self.relative(p) for p in paths]
        self.git("add", "--", *rel)
        self.git("commit", "--quiet", "-m", message, "--only", "--", *rel)
        return self.git("rev-parse", "HEAD").strip()

    def remote_url(self, remote: str) -> str:
        check_remote_name(remote)
        return self.git("remote", "get-url", "--", remote).strip()

    def push(self, remote: str, branch: str) -> None:
        check_remote_name(remote)
        check_branch_name(branch, self.root)
        self.git("push", "--quiet", "--", remote, f"HEAD:refs/heads/{branch}")

    def export(self, revision: str, target: Path) -> str:
        """The tree of ``revision`` written under ``target``; returns the commit.

        Through a private index file (``GIT_INDEX_FILE``): ``read-tree`` then
        ``checkout-index --prefix``, git's own fast path; the checkout's index, work tree
        and branches are not touched."""
        commit = self.resolve(revision)
        target.mkdir(parents=True, exist_ok=True)
        index = target.parent / f".{target.name}.index"
        try:
            env = {"GIT_INDEX_FILE": str(index)}
            _run(["read-tree", "--end-of-options", commit], self.root, env=env)
            _run(["checkout-index", "--all", f"--prefix={target.resolve()}/"], self.root, env=env)
        finally:
            index.unlink(missing_ok=True)
        return commit
