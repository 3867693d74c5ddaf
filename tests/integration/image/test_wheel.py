"""The Python package: the wheel installed offline into a fresh venv (as `pipx install` does)
runs, finds helm/kustomize on PATH or in the user cache, and names a missing one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitsail import __version__
from gitsail.toolchain import RELEASE_PINS, find_binary
from tests.integration.image.conftest import REPO, WHEELHOUSE

pytestmark = [pytest.mark.integration, pytest.mark.image]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = sorted(WHEELHOUSE.glob("gitsail-*.whl"))
    assert wheels, "no wheel: run `make wheelhouse`"
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=600)
    subprocess.run(
        [
            str(root / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            "gitsail",
        ],
        check=True,
        timeout=600,
    )
    return root


def _run(
    venv: Path, home: Path, *args: str, path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "gitsail"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=home,
        env={"PATH": path, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
    )


def _checkout(tmp_path: Path) -> Path:
    """The example apps in a Git work tree (what bounds an overlay's reach to its base)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "gitops-repo", repo)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo / "apps"


def test_installed_package_metadata_and_version(venv: Path, tmp_path: Path) -> None:
    proc = _run(venv, tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gitsail {__version__}"
    meta = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json; d = m.metadata('gitsail'); "
            "print(json.dumps({k: d[k] for k in ('Version', 'License-Expression', "
            "'Requires-Python')}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(meta) == {
        "Version": __version__,
        "License-Expression": "Apache-2.0",
        "Requires-Python": ">=3.11",
    }
    # The CRDs are package data: `install --print` works from the installed wheel.
    printed = _run(venv, tmp_path, "install", "--crds-only", "--print")
    assert printed.returncode == 0, printed.stderr
    assert "applications.argoproj.io" in printed.stdout


def test_missing_kustomize_is_named_with_its_pin(venv: Path, tmp_path: Path) -> None:
    app = _checkout(tmp_path)
    proc = _run(venv, tmp_path, "render", str(app / "overlays" / "production"))
    assert proc.returncode != 0
    assert "kustomize not found" in proc.stderr
    assert RELEASE_PINS["kustomize"] in proc.stderr


def test_renders_with_tools_from_the_user_cache_and_from_path(venv: Path, tmp_path: Path) -> None:
    app = _checkout(tmp_path)
    # The user cache a source checkout's `gitsail dev tools build` fills.
    entry = tmp_path / ".cache" / "gitsail" / "bin" / f"kustomize-{RELEASE_PINS['kustomize']}"
    entry.mkdir(parents=True)
    shutil.copy(find_binary("kustomize"), entry / "kustomize")
    proc = _run(venv, tmp_path, "render", str(app / "overlays" / "production"))
    assert proc.returncode == 0, proc.stderr
    assert any(d["kind"] == "Deployment" for d in yaml.safe_load_all(proc.stdout) if d)
    shutil.rmtree(entry)
    # PATH, and `version --tools` says which binary and version it uses.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in RELEASE_PINS:
        shutil.copy(find_binary(tool), bindir / tool)
    path = f"{bindir}:/usr/bin:/bin"
    proc = _run(venv, tmp_path, "render", str(app / "overlays" / "production"), path=path)
    assert proc.returncode == 0, proc.stderr
    chart = tmp_path / "redis"
    shutil.copytree(REPO / "examples" / "charts" / "redis", chart)
    proc = _run(venv, tmp_path, "render", str(chart), path=path)
    assert proc.returncode == 0, proc.stderr
    proc = _run(venv, tmp_path, "version", "--tools", "-o", "yaml", path=path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["tool"]: r for r in yaml.safe_load(proc.stdout)["tools"]}
    for tool, pinned in RELEASE_PINS.items():
        assert rows[tool]["path"] == str(bindir / tool)
        assert rows[tool]["version"] == pinned
