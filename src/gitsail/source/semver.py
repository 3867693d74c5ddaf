"""Semantic-version constraints with the syntax and semantics of Masterminds/semver v3.

Argo CD matches a ``targetRevision`` such as ``1.2.*`` or ``>=1.0.0 <2.0.0`` against the
repository's tags (and a Helm ``targetRevision`` against chart versions) with that Go
library, so gitsail accepts exactly its language:

- comparisons ``=`` (or none), ``!=``, ``>``, ``<``, ``>=``/``=>``, ``<=``/``=<``;
  ``~``/``~>`` (same minor, or same major when only a major is given), ``^`` (same major;
  for ``0.y`` same minor; for ``0.0.z`` that exact patch); wildcards ``x``/``X``/``*`` and
  missing parts (``1.2`` = ``1.2.x``); hyphen ranges ``1.2 - 1.4.5``;
- whitespace or ``,`` separate constraints that must all hold (AND), ``||`` separates
  alternatives (OR);
- versions may start with ``v``; a pre-release version only matches constraints that
  themselves carry a pre-release (``>=1.0.0-0``), the library's rule to keep betas out of
  ordinary ranges. Build metadata is ignored when comparing.

A plain version (``1.2.3``, ``v1``) is *not* a constraint: as in Argo CD, it names a tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["Version", "is_semver_constraint", "parse_version", "resolve_semver"]

_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(
    rf"^v?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?(?:\.(?P<patch>[0-9]+))?"
    rf"(?:-(?P<pre>{_IDENT}))?(?:\+(?P<meta>{_IDENT}))?$"
)
_PART = r"[0-9xX*]+"
_CVERSION = rf"v?{_PART}(?:\.{_PART})?(?:\.{_PART})?(?:-{_IDENT})?(?:\+{_IDENT})?"
_OPS = r"!=|>=|=>|<=|=<|~>|>|<|=|~|\^"
_ONE = re.compile(rf"(?P<op>{_OPS})?\s*(?P<ver>{_CVERSION})")
_GROUP = re.compile(
    rf"^\s*(?:{_OPS})?\s*{_CVERSION}\s*(?:(?:\s+|,\s*)(?:{_OPS})?\s*{_CVERSION}\s*)*$"
)
_HYPHEN = re.compile(rf"\s*({_CVERSION})\s+-\s+({_CVERSION})\s*")
_CPARTS = re.compile(
    rf"^v?(?P<major>{_PART})(?:\.(?P<minor>{_PART}))?(?:\.(?P<patch>{_PART}))?"
    rf"(?:-(?P<pre>{_IDENT}))?(?:\+{_IDENT})?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: str = ""
    original: str = ""

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key() and self.prerelease == other.prerelease

    def __hash__(self) -> int:
        return hash((self._key(), self.prerelease))

    def __lt__(self, other: Version) -> bool:
        if self._key() != other._key():
            return self._key() < other._key()
        return _compare_prerelease(self.prerelease, other.prerelease) < 0


def _compare_prerelease(a: str, b: str) -> int:
    """SemVer 2.0 precedence of pre-release strings ("" = a release, which sorts last)."""
    if a == b:
        return 0
    if not a:
        return 1
    if not b:
        return -1
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x == y:
            continue
        x_num, y_num = x.isdigit(), y.isdigit()
        if x_num and y_num:
            return -1 if int(x) < int(y) else 1
        if x_num != y_num:
            return -1 if x_num else 1
        return -1 if x < y else 1
    return -1 if len(a.split(".")) < len(b.split(".")) else 1


def parse_version(text: str) -> Version | None:
    """A (loose) semantic version: ``v`` prefix and missing minor/patch allowed."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    return Version(
        int(match["major"]),
        int(match["minor"] or 0),
        int(match["patch"] or 0),
        match["pre"] or "",
        text,
    )


@dataclass(frozen=True)
class _Constraint:
    op: str
    con: Version
    dirty: bool  # some part was a wildcard or missing
    minor_dirty: bool
    patch_dirty: bool

    def allows(self, v: Version) -> bool:
        if v.prerelease and not self.con.prerelease:
            return False
        return _CHECKS[self.op](v, self)


def _is_x(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


def _parse_one(op: str, text: str) -> _Constraint:
    m = _CPARTS.match(text)
    if m is None:
        raise ValueError(f"improper constraint: {text}")
    pre = m["pre"] or ""
    major, minor, patch = m["major"], m["minor"], m["patch"]
    dirty = minor_dirty = patch_dirty = False
    if _is_x(major):
        dirty, major, minor, patch = True, "0", "0", "0"
    elif _is_x(minor):
        dirty = minor_dirty = True
        minor, patch = "0", "0"
    elif _is_x(patch):
        dirty = patch_dirty = True
        patch = "0"
    if not (major.isdigit() and str(minor).isdigit() and str(patch).isdigit()):
        raise ValueError(f"improper constraint: {text}")
    con = Version(int(major), int(minor or 0), int(patch or 0), pre, text)
    return _Constraint(op or "=", con, dirty, minor_dirty, patch_dirty)


def _tilde(v: Version, c: _Constraint) -> bool:
    if v < c.con:
        return False
    if c.con._key() == (0, 0, 0) and not c.minor_dirty and not c.patch_dirty:
        return True
    if v.major != c.con.major:
        return False
    return c.minor_dirty or v.minor == c.con.minor


def _equal(v: Version, c: _Constraint) -> bool:
    return _tilde(v, c) if c.dirty else v == c.con


def _not_equal(v: Version, c: _Constraint) -> bool:
    if not c.dirty:
        return v != c.con
    if v.major != c.con.major:
        return True
    if c.minor_dirty:
        return False
    if v.minor != c.con.minor:
        return True
    if c.patch_dirty:
        return False
    return v != c.con


def _greater(v: Version, c: _Constraint) -> bool:
    if not c.dirty:
        return v > c.con
    if v.major != c.con.major:
        return v.major > c.con.major
    if c.minor_dirty:
        return False
    if c.patch_dirty:
        return v.minor > c.con.minor
    return v > c.con


def _less_equal(v: Version, c: _Constraint) -> bool:
    if not c.dirty:
        return v <= c.con
    if v.major > c.con.major:
        return False
    return not (v.major == c.con.major and v.minor > c.con.minor and not c.minor_dirty)


def _caret(v: Version, c: _Constraint) -> bool:
    if v < c.con:
        return False
    if c.con.major > 0 or c.minor_dirty:
        return v.major == c.con.major
    if v.major > 0:
        return False
    if c.con.minor > 0 or c.patch_dirty:
        return v.minor == c.con.minor
    if v.minor > 0:
        return False
    return v.patch == c.con.patch


_CHECKS: dict[str, Callable[[Version, _Constraint], bool]] = {
    "=": _equal,
    "!=": _not_equal,
    ">": _greater,
    "<": lambda v, c: v < c.con,
    ">=": lambda v, c: v >= c.con,
    "=>": lambda v, c: v >= c.con,
    "<=": _less_equal,
    "=<": _less_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


def _parse_constraints(text: str) -> list[list[_Constraint]]:
    text = _HYPHEN.sub(lambda m: f" >= {m.group(1)}, <= {m.group(2)} ", text)
    alternatives: list[list[_Constraint]] = []
    for group in text.split("||"):
        if not group.strip():
            raise ValueError("empty alternative in constraint")
        if not _GROUP.match(group):
            raise ValueError(f"improper constraint: {group.strip()}")
        alternatives.append([_parse_one(m["op"] or "", m["ver"]) for m in _ONE.finditer(group)])
    return alternatives


def is_semver_constraint(revision: str) -> bool:
    """True when ``revision`` is a semver range rather than a plain version or ref name."""
    text = revision.strip()
    if not text or parse_version(text) is not None:
        return False
    try:
        _parse_constraints(text)
    except ValueError:
        return False
    return True


def resolve_semver(constraint: str, versions: Iterable[str]) -> str | None:
    """The highest of ``versions`` (returned as given) that satisfies ``constraint``.

    Strings that are not versions are skipped. An invalid constraint matches nothing.
    """
    try:
        alternatives = _parse_constraints(constraint.strip() or "*")
    except ValueError:
        return None
    best: Version | None = None
    for text in versions:
        version = parse_version(text)
        if version is None:
            continue
        if any(all(c.allows(version) for c in group) for group in alternatives) and (
            best is None or version > best
        ):
            best = version
    return best.original if best is not None else None
