"""How an installed package (no tools/ checkout) finds helm, kustomize and jsonnet."""

import stat
from pathlib import Path

import pytest

from gitsail import toolchain

REPO_TOOLS = Path(__file__).resolve().parents[3] / "tools"


def test_release_pins_equal_the_go_mod_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITSAIL_TOOLS_DIR", str(REPO_TOOLS))
    for tool in toolchain.TOOLS:
        if tool.name in toolchain.RELEASE_PINS:
            assert toolchain.RELEASE_PINS[tool.name] == tool.version, tool.name


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed package: no tools/ dir, an empty PATH, a private user cache."""
    monkeypatch.setenv("GITSAIL_TOOLS_DIR", str(tmp_path / "no-checkout"))
    monkeypatch.setenv("GITSAIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.delenv("GITSAIL_BIN_HELM", raising=False)
    (tmp_path / "path").mkdir()
    return tmp_path


def _script(path: Path, output: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_tool_error_names_the_tool_its_pin_and_the_ways_to_provide_it(
    installed: Path,
) -> None:
    with pytest.raises(FileNotFoundError) as err:
        toolchain.find_binary("helm")
    message = str(err.value)
    assert "helm not found" in message
    assert toolchain.RELEASE_PINS["helm"] in message
    assert "PATH" in message
    assert "GITSAIL_BIN_HELM" in message
    assert str(installed / "cache" / "bin" / f"helm-{toolchain.RELEASE_PINS['helm']}") in message


def test_user_cache_is_used_when_path_has_none(installed: Path) -> None:
    cached = _script(
        installed / "cache" / "bin" / f"helm-{toolchain.RELEASE_PINS['helm']}" / "helm", "x"
    )
    assert toolchain.find_binary("helm") == cached


def test_path_comes_before_the_user_cache_and_explicit_before_both(
    installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(installed / "cache" / "bin" / f"helm-{toolchain.RELEASE_PINS['helm']}" / "helm", "x")
    on_path = _script(installed / "path" / "helm", "x")
    assert toolchain.find_binary("helm") == on_path
    explicit = _script(installed / "elsewhere" / "helm", "x")
    monkeypatch.setenv("GITSAIL_BIN_HELM", str(explicit))
    assert toolchain.find_binary("helm") == explicit


def test_runtime_tools_reports_version_and_mismatch(installed: Path) -> None:
    pins = toolchain.RELEASE_PINS
    _script(installed / "path" / "helm", f"{pins['helm']}+gabc")
    _script(installed / "path" / "kustomize", "v0.0.1")
    rows = {row["tool"]: row for row in toolchain.runtime_tools()}
    assert rows["helm"]["status"] == "ok"
    assert rows["helm"]["version"] == pins["helm"]
    assert rows["kustomize"]["status"] == "version mismatch"
    assert rows["kustomize"]["version"] == "v0.0.1"
    assert rows["jsonnet"]["status"] == "missing"
    assert "jsonnet not found" in rows["jsonnet"]["error"]
