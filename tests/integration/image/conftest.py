"""The image built once per session by packaging/image/build.sh, and its filesystem unpacked
by umoci, to run its entry point in a chroot (no container runtime on these machines).

The build needs root (mmdebstrap --mode=root, chroot), Debian's archive, mmdebstrap, umoci
and skopeo (`make image-deps`) and the wheelhouse (`make wheelhouse`); `make test-image`
provides them all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
WHEELHOUSE = REPO / "build" / "wheelhouse"


@dataclass(frozen=True)
class Image:
    out: Path
    version: str
    digest: str
    seconds: float

    @property
    def ref(self) -> str:
        """``path:tag`` as umoci names an image in a layout."""
        return f"{self.out / 'oci'}:{self.version}"


def build_image(out: Path) -> Image:
    for tool in ("mmdebstrap", "umoci", "skopeo"):
        assert shutil.which(tool), f"{tool} is missing: run `make image-deps`"
    assert list(WHEELHOUSE.glob("gitsail-*.whl")), "no wheelhouse: run `make wheelhouse`"
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "packaging" / "image" / "build.sh"), str(WHEELHOUSE), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    sys.stderr.write(proc.stderr)
    return Image(
        out=out,
        version=(out / "version").read_text().strip(),
        digest=(out / "digest").read_text().strip(),
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Built once per session; GITSAIL_TEST_IMAGE_DIR=build/image reuses `make image`'s
    output instead (a quicker local loop; CI builds it here)."""
    reuse = os.environ.get("GITSAIL_TEST_IMAGE_DIR")
    if reuse:
        out = Path(reuse).resolve()
        return Image(
            out=out,
            version=(out / "version").read_text().strip(),
            digest=(out / "digest").read_text().strip(),
            seconds=0.0,
        )
    built = build_image(tmp_path_factory.mktemp("image-a"))
    print(f"\nimage built in {built.seconds:.0f}s: {built.digest}")
    return built


@pytest.fixture(scope="session")
def rootfs(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image's filesystem as `umoci unpack` lays it out (root, as the runtime would)."""
    bundle = tmp_path_factory.mktemp("bundle") / "b"
    subprocess.run(
        ["umoci", "unpack", "--image", image.ref, str(bundle)], check=True, capture_output=True
    )
    devices(bundle / "rootfs")
    yield bundle / "rootfs"
    shutil.rmtree(bundle, ignore_errors=True)


def devices(rootfs: Path) -> None:
    """The device nodes a runtime gives every container (the image has none): every test
    that runs something in the rootfs needs /dev/null, whatever ran before it."""
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("random", 1, 8), ("urandom", 1, 9)):
        node = rootfs / "dev" / name
        if not node.exists():
            os.mknod(node, 0o20666, os.makedev(major, minor))
            node.chmod(0o666)


def image_config(image: Image) -> dict[str, object]:
    proc = subprocess.run(
        ["umoci", "stat", "--image", image.ref, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    stat = json.loads(proc.stdout)
    assert isinstance(stat, dict)
    blobs = image.out / "oci" / "blobs" / "sha256"
    manifest = json.loads((blobs / image.digest.removeprefix("sha256:")).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_text())
    assert isinstance(config, dict)
    return config


def in_image(
    rootfs: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the image's entry point with ``args`` in a chroot of its filesystem, as its user
    with the image's environment (what a runtime does, less the namespaces)."""
    return subprocess.run(
        [
            "chroot",
            "--userspec=65532:65532",
            str(rootfs),
            "/usr/bin/env",
            "-i",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "HOME=/home/gitsail",
            *[f"{k}={v}" for k, v in (env or {}).items()],
            "/usr/local/bin/gitsail",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )
