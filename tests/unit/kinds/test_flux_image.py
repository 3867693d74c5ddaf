"""Flux image automation specs and ImagePolicy tag selection."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_image import (
    parse_image_policy,
    parse_image_repository,
    parse_image_update_automation,
    select_tag,
)

API = "image.toolkit.fluxcd.io/v1"


def _obj(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": "app", "namespace": "flux-system", "generation": 1},
        "spec": spec,
    }


def _policy(policy: dict[str, Any], **extra: Any) -> Any:
    spec = {"imageRepositoryRef": {"name": "app"}, "policy": policy, **extra}
    return parse_image_policy(_obj("ImagePolicy", spec))


def test_image_repository_defaults_and_exclusions() -> None:
    repo = parse_image_repository(
        _obj("ImageRepository", {"image": "127.0.0.1:5000/team/app", "interval": "1m"})
    )
    assert (repo.image, repo.interval, repo.timeout) == ("127.0.0.1:5000/team/app", 60.0, 60.0)
    assert repo.keep(["1.0.0", "sha256-abc.sig", "2.0.0"]) == ["1.0.0", "2.0.0"]
    custom = parse_image_repository(
        _obj(
            "ImageRepository",
            {"image": "ghcr.io/org/app", "interval": "5m", "exclusionList": ["^dev-"]},
        )
    )
    assert custom.keep(["dev-1", "x.sig", "1.0"]) == ["x.sig", "1.0"]


@pytest.mark.parametrize(
    "spec",
    [
        {"image": "ghcr.io/org/app:1.0", "interval": "1m"},
        {"image": "oci://ghcr.io/org/app", "interval": "1m"},
        {"image": "ghcr.io/org/app"},
        {"image": "ghcr.io/org/app", "interval": "1m", "exclusionList": ["("]},
        {"image": "ghcr.io/org/app", "interval": "1m", "exclusionList": ["x"] * 26},
        {"image": "ghcr.io/org/app", "interval": "1m", "unknown": 1},
    ],
)
def test_image_repository_refuses_bad_specs(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_image_repository(_obj("ImageRepository", spec))


TAGS = ["1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1", "latest", "1.10.0"]


def test_semver_range_picks_the_highest_in_range() -> None:
    assert select_tag(_policy({"semver": {"range": ">=1.0.0 <2.0.0"}}), TAGS) == "1.10.0"
    assert select_tag(_policy({"semver": {"range": ">=3.0.0"}}), TAGS) is None


def test_semver_range_follows_new_tags_as_they_are_pushed() -> None:
    policy = _policy({"semver": {"range": ">=1.0.0 <2.0.0"}})
    assert select_tag(policy, ["1.2.0"]) == "1.2.0"
    assert select_tag(policy, ["1.2.0", "2.0.0"]) == "1.2.0"
    assert select_tag(policy, ["1.2.0", "2.0.0", "1.3.0"]) == "1.3.0"


def test_alphabetical_and_numerical_orders() -> None:
    stamps = ["RELEASE.2024-01-02", "RELEASE.2024-03-01", "RELEASE.2023-12-31"]
    assert select_tag(_policy({"alphabetical": {}}), stamps) == "RELEASE.2024-03-01"
    assert select_tag(_policy({"alphabetical": {"order": "desc"}}), stamps) == "RELEASE.2023-12-31"
    numbers = ["9", "10", "100", "x"]
    assert select_tag(_policy({"numerical": {"order": "asc"}}), numbers) == "100"
    assert select_tag(_policy({"numerical": {"order": "desc"}}), numbers) == "9"


def test_filter_tags_pattern_and_extract() -> None:
    tags = ["main-abc123-100", "main-def456-99", "feature-x-200", "main-0a0a0a-101"]
    policy = _policy(
        {"numerical": {"order": "asc"}},
        filterTags={"pattern": r"^main-[a-f0-9]+-(?P<ts>[0-9]+)", "extract": "$ts"},
    )
    assert select_tag(policy, tags) == "main-0a0a0a-101"
    semver = _policy(
        {"semver": {"range": "^1.x"}},
        filterTags={"pattern": r"^v(?P<v>.*)-prod$", "extract": "${v}"},
    )
    assert select_tag(semver, ["v1.2.0-prod", "v1.4.0-staging", "v1.3.0-prod"]) == "v1.3.0-prod"


@pytest.mark.parametrize(
    ("policy", "extra"),
    [
        ({}, {}),
        ({"semver": {"range": "1.x"}, "numerical": {}}, {}),
        ({"alphabetical": {"order": "up"}}, {}),
        ({"semver": {"range": "1.x"}}, {"filterTags": {"pattern": "(unclosed"}}),
        ({"semver": {"range": "1.x"}}, {"digestReflectionPolicy": "Always"}),
    ],
)
def test_image_policy_refuses_bad_specs(policy: dict[str, Any], extra: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        _policy(policy, **extra)


def _automation(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "1m",
        "sourceRef": {"kind": "GitRepository", "name": "gitops"},
        "git": {
            "checkout": {"ref": {"branch": "main"}},
            "commit": {
                "author": {"name": "fluxbot", "email": "flux@example.invalid"},
                "messageTemplate": "chore: update images",
            },
            "push": {"branch": "main"},
        },
        "update": {"path": "./apps/overlays/staging", "strategy": "Setters"},
    }
    spec.update(overrides)
    return _obj("ImageUpdateAutomation", spec)


def test_image_update_automation_as_users_write_it() -> None:
    auto = parse_image_update_automation(_automation())
    assert (auto.source_name, auto.source_namespace) == ("gitops", "flux-system")
    assert (auto.checkout_branch, auto.push_branch) == ("main", "main")
    assert (auto.author_name, auto.author_email) == ("fluxbot", "flux@example.invalid")
    assert auto.update_path == "apps/overlays/staging"


@pytest.mark.parametrize(
    "overrides",
    [
        {"update": {"path": "../outside"}},
        {"update": {"strategy": "Regex"}},
        {"sourceRef": {"kind": "OCIRepository", "name": "x"}},
        {"git": {"commit": {}}},
    ],
)
def test_image_update_automation_refuses_bad_specs(overrides: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_image_update_automation(_automation(**overrides))


def test_signing_keys_are_refused_as_not_implemented() -> None:
    obj = _automation()
    obj["spec"]["git"]["commit"]["signingKey"] = {"secretRef": {"name": "gpg"}}
    with pytest.raises(UnsupportedField):
        parse_image_update_automation(obj)


@pytest.mark.parametrize(
    ("semver_range", "chosen"),
    [
        (">=1.0.0 <2.0.0", "1.10.0"),
        ("~1.2", "1.2.9"),
        ("^1", "1.10.0"),
        ("1.x", "1.10.0"),
        ("1.2.0", "1.2.0"),  # a version alone is "= version", as Masterminds reads it
        ("<1.0.0", "0.9.1"),
        ("1.2.x", "1.2.9"),  # and the 1.3.0-rc.1 pre-release is never chosen
    ],
)
def test_semver_ranges_as_flux_reads_them(semver_range: str, chosen: str) -> None:
    tags = ["0.9.1", "1.0.0", "1.2.0", "1.2.9", "1.3.0-rc.1", "1.10.0", "2.0.0", "latest"]
    assert select_tag(_policy({"semver": {"range": semver_range}}), tags) == chosen


@pytest.mark.parametrize("semver_range", ["garbage", "1.2.x.y", ">= <"])
def test_a_semver_range_that_does_not_parse_is_refused(semver_range: str) -> None:
    with pytest.raises(SpecError, match="not a semver range"):
        _policy({"semver": {"range": semver_range}})


def test_filter_tags_with_numbered_groups_and_no_match() -> None:
    policy = _policy(
        {"alphabetical": {}}, filterTags={"pattern": r"^build-(\d{8})$", "extract": "$1"}
    )
    assert select_tag(policy, ["build-20240101", "build-20231231", "other"]) == "build-20240101"
    assert select_tag(policy, ["other", "latest"]) is None


def test_alphabetical_sorts_by_extracted_value_not_tag() -> None:
    policy = _policy(
        {"alphabetical": {"order": "asc"}},
        filterTags={"pattern": r"^(?P<env>[a-z]+)-(?P<ts>\d+)$", "extract": "$ts"},
    )
    assert select_tag(policy, ["zeta-100", "alpha-200", "beta-150"]) == "alpha-200"
