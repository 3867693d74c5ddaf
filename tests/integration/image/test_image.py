"""The container image: how it is made (user, labels, reproducible digest) and what it runs
(its entry point in a chroot of its unpacked filesystem: version, renders with the bundled
helm and kustomize)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gitsail import __version__
from gitsail.toolchain import RELEASE_PINS
from tests.integration.image.conftest import REPO, Image, build_image, image_config, in_image

pytestmark = [pytest.mark.integration, pytest.mark.image]


def test_config_runs_as_non_root_with_oci_labels(image: Image) -> None:
    config = image_config(image)
    runtime = config["config"]
    assert isinstance(runtime, dict)
    assert runtime["User"] == "65532:65532"
    assert runtime["Entrypoint"] == ["/usr/local/bin/gitsail"]
    assert runtime["Cmd"] == ["controller"]
    labels = runtime["Labels"]
    revision = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert image.version == __version__


def test_filesystem_has_no_compiler_and_a_non_root_home(image: Image, rootfs: Path) -> None:
    for compiler in ("gcc", "cc", "g++", "go", "pip", "pip3", "apt-get"):
        assert not (rootfs / "usr" / "bin" / compiler).exists(), compiler
    home = rootfs / "home" / "gitsail"
    assert (home.stat().st_uid, home.stat().st_gid) == (65532, 65532)
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert "gitsail:x:65532:65532:" in passwd


def test_version_and_bundled_tools_from_inside(rootfs: Path) -> None:
    proc = in_image(rootfs, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gitsail {__version__}"
    proc = in_image(rootfs, "version", "--tools", "-o", "yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tools = {row["tool"]: row for row in yaml.safe_load(proc.stdout)["tools"]}
    for name, pinned in RELEASE_PINS.items():
        assert tools[name]["path"] == f"/usr/local/bin/{name}"
        assert tools[name]["version"] == pinned
        assert tools[name]["status"] == "ok"


def _copy_in(rootfs: Path, source: Path, name: str) -> str:
    target = rootfs / "tmp" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    subprocess.run(["chown", "-R", "65532:65532", str(target)], check=True)
    return f"/tmp/{name}"


def test_renders_kustomize_and_helm_with_the_bundled_binaries(rootfs: Path) -> None:
    repo = _copy_in(rootfs, REPO / "examples" / "gitops-repo", "gitops-repo")
    proc = in_image(rootfs, "render", f"{repo}/apps/overlays/production", "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(proc.stdout) if d}
    assert ("Deployment", "prod-myapp") in kinds or any(k == "Deployment" for k, _ in kinds)
    chart = _copy_in(rootfs, REPO / "examples" / "charts" / "redis", "redis")
    proc = in_image(rootfs, "render", chart, "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    kinds_h = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert "ConfigMap" in kinds_h


def test_two_builds_have_the_same_digest(image: Image, tmp_path: Path) -> None:
    """(With GITSAIL_TEST_IMAGE_DIR, that image must have been built from this commit.)"""
    again = build_image(tmp_path / "image-b")
    print(f"\nsecond build in {again.seconds:.0f}s: {again.digest}")
    assert again.digest == image.digest


def test_push_to_the_pinned_registry_keeps_the_digest(image: Image) -> None:
    from gitsail.dev.registry import Registry

    with Registry() as registry:
        proc = subprocess.run(
            [str(REPO / "packaging" / "image" / "push.sh"), str(image.out), registry.host],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        inspect = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--tls-verify=false",
                "--raw",
                f"docker://{registry.host}/gitsail:{image.version}",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )

        assert "sha256:" + hashlib.sha256(inspect.stdout).hexdigest() == image.digest
