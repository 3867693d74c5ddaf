"""Which files of a GitRepository's checkout are in its artifact: Flux's ignore rules.

source-controller leaves files out of the artifact with ``.gitignore``-format rules
(source-controller ``docs/spec/v1/gitrepositories.md``, "Excluding files"):

- always: ``.git/``, ``.gitignore``, ``.gitmodules``, ``.gitattributes``;
- by default: images and archives (``*.jpg``, ``*.jpeg``, ``*.gif``, ``*.png``, ``*.wmv``,
  ``*.flv``, ``*.tar.gz``, ``*.zip``), CI configuration (``.github/``, ``.circleci/``,
  ``.travis.yml``, ``.gitlab-ci.yml``, ``appveyor.yml``, ``.drone.yml``, ``cloudbuild.yaml``,
  ``codeship-services.yml``, ``codeship-steps.yml``) and ``**/.goreleaser.yml``,
  ``**/.sops.yaml``, ``**/.flux.yaml``;
- a ``.sourceignore`` file in any directory, its rules relative to that directory;
- ``spec.ignore``: when set, it replaces the default list (not the ``.git`` rules) and comes
  last, so it may re-include (``!pattern``) what a ``.sourceignore`` excluded.

Matching follows ``.gitignore``: the last matching rule wins; ``!`` negates; a trailing
``/`` matches directories only; a rule with a ``/`` elsewhere is anchored to its directory,
otherwise it matches a name at any depth; ``*`` and ``?`` stay within one path segment,
``**`` spans segments. A file below an excluded directory is excluded (as in git, it cannot
be re-included). ``included_files`` walks a tree with these rules, never following a
symbolic link into a directory.

The Kustomization reconciler applies these rules to the checkout it fetched itself, so what
it renders is what Flux's artifact would hold.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_RULES", "VCS_RULES", "IgnoreRule", "included_files", "parse_rules"]

VCS_RULES = ".git/\n.gitignore\n.gitmodules\n.gitattributes\n"
DEFAULT_RULES = (
    "*.jpg\n*.jpeg\n*.gif\n*.png\n*.wmv\n*.flv\n*.tar.gz\n*.zip\n"
    ".github/\n.circleci/\n.travis.yml\n.gitlab-ci.yml\nappveyor.yml\n.drone.yml\n"
    "cloudbuild.yaml\ncodeship-services.yml\ncodeship-steps.yml\n"
    "**/.goreleaser.yml\n**/.sops.yaml\n**/.flux.yaml\n"
)
SOURCEIGNORE = ".sourceignore"
_MAX_RULES_BYTES = 1024 * 1024


@dataclass(frozen=True)
class IgnoreRule:
    """One ``.gitignore`` line, compiled; ``base`` is the directory it is relative to."""

    base: str  # "" for the root, else "a/b"
    pattern: re.Pattern[str]
    negate: bool
    directory_only: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.directory_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1 :]
        return self.pattern.fullmatch(rel) is not None


def _translate(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_rules(text: str, base: str = "") -> list[IgnoreRule]:
    """The rules of one ``.gitignore``-format text, relative to directory ``base``."""
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if raw.endswith("\\ "):
            line += " "
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate or line.startswith(("\\!", "\\#")):
            line = line[1:]
        directory_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        regex = _translate(line)
        if not anchored:
            regex = "(?:.*/)?" + regex
        try:
            pattern = re.compile(regex, re.DOTALL)
        except re.error:
            continue  # git ignores a rule it cannot read; so does Flux's matcher
        rules.append(IgnoreRule(base, pattern, negate, directory_only))
    return rules


def _ignored(rules: Sequence[IgnoreRule], rel: str, is_dir: bool) -> bool:
    result = False
    for rule in rules:
        if rule.matches(rel, is_dir):
            result = not rule.negate
    return result


def _read_sourceignore(path: Path) -> str:
    try:
        if path.is_symlink() or path.stat().st_size > _MAX_RULES_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def included_files(root: Path, ignore: str | None) -> list[Path]:
    """The files (and symbolic links) under ``root`` that Flux's artifact would hold.

    ``ignore`` is ``GitRepository.spec.ignore`` (``None``: the default exclusions apply).
    """
    rules = parse_rules(VCS_RULES)
    if ignore is None:
        rules += parse_rules(DEFAULT_RULES)
    last = parse_rules(ignore) if ignore is not None else []
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        base = here.relative_to(root).as_posix()
        base = "" if base == "." else base
        if SOURCEIGNORE in files:
            rules += parse_rules(_read_sourceignore(here / SOURCEIGNORE), base)
        # spec.ignore comes last wherever the walk is, so it wins over .sourceignore files.
        active = rules + last
        dirs.sort()
        for name in list(dirs):
            rel = f"{base}/{name}" if base else name
            if (here / name).is_symlink():
                dirs.remove(name)
                files.append(name)  # a link is copied as a link (render checks its target)
            elif _ignored(active, rel, True):
                dirs.remove(name)
        for name in sorted(files):
            rel = f"{base}/{name}" if base else name
            if not _ignored(active, rel, False):
                found.append(here / name)
    return found
