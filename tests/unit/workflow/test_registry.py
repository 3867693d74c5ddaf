"""verify_image: a tag or digest is looked up with one manifest request, index included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitsail.workflow.imageref import parse_image
from gitsail.workflow.registry import RegistryCheck, docker_credentials, verify_image
from tests.unit.source.test_oci import OCI_INDEX, FakeRegistry, client

HOST = "registry.test"


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    one = reg.push("team/app", "", {"schemaVersion": 2, "layers": []})
    two = reg.push("team/app", "", {"schemaVersion": 2, "layers": [], "annotations": {"a": "b"}})
    # a multi-platform image: an index of two manifests (what `docker push` of a
    # multi-arch build makes); it exists, even though it is not one artifact
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"digest": one, "size": 1}, {"digest": two, "size": 1}],
    }
    reg.push("team/app", "1.2.0", index)
    return reg


def test_existing_tag_and_digest(registry: FakeRegistry) -> None:
    oci = client(registry)
    digest = verify_image(parse_image(f"{HOST}/team/app:1.2.0"), client=oci)
    assert digest == registry.tags["team/app"]["1.2.0"]
    assert verify_image(parse_image(f"{HOST}/team/app@{digest}"), client=oci) == digest
    assert verify_image(parse_image(f"{HOST}/team/app:1.2.0@{digest}"), client=oci) == digest


def test_missing_tag_is_refused_with_the_way_out(registry: FakeRegistry) -> None:
    with pytest.raises(RegistryCheck, match=r"does not exist.*--no-verify"):
        verify_image(parse_image(f"{HOST}/team/app:1.3.0"), client=client(registry))


def test_tag_and_digest_that_disagree_are_refused(registry: FakeRegistry) -> None:
    other = registry.push("team/app", "", {"schemaVersion": 2, "layers": [], "x": 1})
    with pytest.raises(RegistryCheck, match="points at"):
        verify_image(parse_image(f"{HOST}/team/app:1.2.0@{other}"), client=client(registry))


def test_docker_credentials_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"registry.test": {"auth": "Ym90OnMzY3JldA=="}}}))
    creds = docker_credentials("registry.test", config)
    assert creds is not None
    assert (creds.username, creds.password) == ("bot", "s3cret")
    assert docker_credentials("elsewhere.test", config) is None
    assert docker_credentials("registry.test", tmp_path / "missing.json") is None
