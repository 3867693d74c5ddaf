from __future__ import annotations

import pytest

from gitsail.policy import DEFAULT_POLICY, Policy, PolicyError


def test_defaults_refuse_file_urls_and_metadata_networks() -> None:
    assert DEFAULT_POLICY.allow_file_urls is False
    assert "169.254.0.0/16" in DEFAULT_POLICY.denied_networks


def test_environment_overrides_each_type() -> None:
    policy = Policy.from_env(
        {
            "GITSAIL_ALLOW_FILE_URLS": "true",
            "GITSAIL_YAML_ALIASES": "50",
            "GITSAIL_RENDER_TIMEOUT": "2.5",
            "GITSAIL_DENIED_NETWORKS": "10.0.0.0/8, 192.168.0.0/16",
        }
    )
    assert policy.allow_file_urls is True
    assert policy.yaml_aliases == 50
    assert policy.render_timeout == 2.5
    assert policy.denied_networks == ("10.0.0.0/8", "192.168.0.0/16")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GITSAIL_ALLOW_FILE_URLS", "maybe"),
        ("GITSAIL_YAML_ALIASES", "many"),
        ("GITSAIL_RENDER_TIMEOUT", "-1"),
    ],
)
def test_unreadable_settings_refuse(name: str, value: str) -> None:
    with pytest.raises(PolicyError, match=name):
        Policy.from_env({name: value})


def test_every_setting_is_documented_with_its_variable() -> None:
    import dataclasses
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    missing = [
        f.name for f in dataclasses.fields(Policy) if f"`GITSAIL_{f.name.upper()}`" not in doc
    ]
    assert missing == []
