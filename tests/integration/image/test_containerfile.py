"""The Containerfile (Docker/Podman) and build.sh (no runtime) make the same image: the same
Debian packages, tool pins, user, entry point and labels."""

from __future__ import annotations

import re
from pathlib import Path

from gitsail.toolchain import RELEASE_PINS

IMAGE = Path(__file__).resolve().parents[3] / "packaging" / "image"


def _packages_txt() -> list[str]:
    lines = (IMAGE / "packages.txt").read_text().splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _containerfile() -> str:
    return (IMAGE / "Containerfile").read_text()


def _final_stage() -> str:
    text = _containerfile()
    return text[text.rindex("\nFROM ") :]


def test_debian_packages_are_the_same() -> None:
    installs = re.findall(
        r"apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?)\s*(?:\\|&&|$)",
        _final_stage(),
        re.MULTILINE,
    )
    assert len(installs) == 1, installs
    assert sorted(installs[0].split()) == _packages_txt()
    assert "python3" in _packages_txt()


def test_same_suite_user_entrypoint_and_labels() -> None:
    build = (IMAGE / "build.sh").read_text()
    stage = _final_stage()
    suite = re.search(r'suite="\$\{DEBIAN_SUITE:-(\w+)\}"', build)
    assert suite is not None
    assert f"ARG DEBIAN_SUITE={suite.group(1)}" in _containerfile()
    assert re.search(r"^uid=65532$", build, re.MULTILINE)
    assert "USER 65532:65532" in stage
    assert "--config.entrypoint /usr/local/bin/gitsail --config.cmd controller" in build
    assert 'ENTRYPOINT ["/usr/local/bin/gitsail"]' in stage
    assert 'CMD ["controller"]' in stage
    labels_sh = set(re.findall(r"org\.opencontainers\.image\.[a-z.]+(?==)", build))
    labels_cf = set(re.findall(r"org\.opencontainers\.image\.[a-z.]+(?==)", stage))
    # `created` only where a build time is known reproducibly (SOURCE_DATE_EPOCH).
    assert labels_sh - {"org.opencontainers.image.created"} == labels_cf
    assert "/usr/local/lib/python3.11/dist-packages" in build
    assert "/usr/local/lib/python3.11/dist-packages" in stage


def test_same_tools_from_the_same_pins() -> None:
    build = (IMAGE / "build.sh").read_text()
    assert "toolchain.RELEASE_PINS" in build
    text = _containerfile()
    assert f"dev tools build {' '.join(RELEASE_PINS)}" in text
    for tool in RELEASE_PINS:
        assert f"/usr/local/bin/{tool}" in build or tool in text
