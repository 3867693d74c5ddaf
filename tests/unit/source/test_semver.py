"""Semver constraints as Argo CD (Masterminds/semver v3) reads targetRevision."""

from __future__ import annotations

import pytest

from gitsail.source import is_semver_constraint, resolve_semver

TAGS = [
    "v0.1.0",
    "v0.1.5",
    "v0.2.0",
    "v1.0.0",
    "v1.2.0",
    "v1.2.5",
    "v1.3.0-rc.1",
    "1.3.0",
    "v1.4.0-beta",
    "v2.0.0",
    "release-3",
    "latest",
]


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ("1.2.*", "v1.2.5"),
        ("1.2.x", "v1.2.5"),
        ("1.x", "1.3.0"),
        ("~1.2", "v1.2.5"),
        ("~1.2.0", "v1.2.5"),
        ("~1", "1.3.0"),
        ("^1.2", "1.3.0"),
        ("^0.1", "v0.1.5"),
        ("^0.1.0", "v0.1.5"),
        ("^0.0.3", None),
        (">=1.0.0 <2.0.0", "1.3.0"),
        (">=1.0.0, <1.3.0", "v1.2.5"),
        (">= 1.0.0 < 1.3.0", "v1.2.5"),
        ("<1.0.0 || >=2.0.0", "v2.0.0"),
        ("<0.2.0 || >3", "v0.1.5"),
        ("1.0 - 1.2", "v1.2.5"),
        (">1.2", "v2.0.0"),
        ("!=2.0.0", "1.3.0"),
        ("*", "v2.0.0"),
        (">=3.0.0", None),
        # prereleases only when the constraint asks for them
        (">=1.4.0-0 <2.0.0-0", "v1.4.0-beta"),
        (">=1.3.0-rc.0 <1.3.0-rc.9", "v1.3.0-rc.1"),
        # ... and each constraint must ask: "<2.0.0" keeps the betas out
        (">=1.4.0-0 <2.0.0", None),
        (">=1.3.0 <2.0.0", "1.3.0"),
    ],
)
def test_resolve_semver(constraint: str, expected: str | None) -> None:
    assert resolve_semver(constraint, TAGS) == expected


@pytest.mark.parametrize(
    ("revision", "is_constraint"),
    [
        ("1.2.*", True),
        ("1.x", True),
        ("~1.2", True),
        ("^1.2", True),
        (">=1.0.0 <2.0.0", True),
        ("<1 || >2", True),
        ("*", True),
        ("1.2.3", False),  # a plain version names a tag
        ("v1.2.3", False),
        ("v1", False),
        ("main", False),
        ("HEAD", False),
        ("", False),
        ("feature/x", False),
        ("0123456789abcdef0123456789abcdef01234567", False),
        (">=banana", False),
    ],
)
def test_is_semver_constraint(revision: str, is_constraint: bool) -> None:
    assert is_semver_constraint(revision) is is_constraint


def test_invalid_constraint_matches_nothing() -> None:
    assert resolve_semver(">=x.y.z.w", TAGS) is None


def test_non_version_strings_are_skipped() -> None:
    assert resolve_semver("*", ["latest", "main", "v1.0.0"]) == "v1.0.0"
